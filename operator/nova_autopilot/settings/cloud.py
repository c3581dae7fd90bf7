"""[cloud]: how the daemon reaches Nova through openstacksdk, and how many
operation steps call it at the same moment."""

from __future__ import annotations

from oslo_config import cfg

from nova_autopilot.settings.kinds import Group, seconds


def cloud() -> Group:
    """The clouds.yaml entry, time-outs, workers, polling and the rescue image."""
    return cfg.OptGroup("cloud", title="Connection to Nova (openstacksdk)"), [
        cfg.StrOpt(
            "cloud",
            default="nova-autopilot",
            help="Name of the cloud in clouds.yaml used to reach Nova. Empty: the "
            "OS_* environment variables are used instead.",
        ),
        cfg.StrOpt(
            "region_name",
            default="",
            help="Region of the Nova endpoint. Empty: the region of the cloud entry.",
        ),
        seconds(
            "api_timeout",
            60,
            "Seconds to wait for a response to one API call before it fails.",
        ),
        cfg.IntOpt(
            "workers",
            default=10,
            min=1,
            help="Threads carrying out operation steps (each step makes Nova calls): how "
            "many operations can make progress at the same moment. Waiting operations "
            "hold none. How many may be unfinished is [guards] max_concurrent_operations.",
        ),
        seconds(
            "poll_interval",
            10,
            "Seconds between two batched polls of server states, used when an "
            "expected notification does not arrive.",
        ),
        cfg.StrOpt(
            "rescue_image",
            default="",
            help="Image ID or name booted when rescuing a server. Empty: Nova's default "
            "(the server's own image).",
        ),
    ]
