"""What the daemon tells about itself: its log lines ([logging]) and its HTTP
endpoints for metrics and health ([metrics])."""

from __future__ import annotations

from oslo_config import cfg

from nova_autopilot.settings.kinds import Group, seconds


def logging() -> Group:
    """The level and format of the log lines on stdout."""
    return cfg.OptGroup("logging", title="Logging"), [
        cfg.StrOpt(
            "level",
            default="INFO",
            ignore_case=True,
            mutable=True,
            choices=[
                ("DEBUG", "everything, including the libraries' own debug messages"),
                ("INFO", "every decision and operation step"),
                ("WARNING", "only problems"),
                ("ERROR", "only failures"),
            ],
            help="Lowest level logged (case-insensitive). Unless it is DEBUG, the "
            "libraries (oslo.messaging, kombu, amqp, openstacksdk) only log warnings "
            "and errors. SIGHUP applies a new value, together with the policies and the "
            "signing keys.",
        ),
        cfg.StrOpt(
            "format",
            default="auto",
            ignore_case=True,
            choices=[
                ("auto", "json when stdout is not a terminal, console otherwise"),
                ("json", "one JSON object per line"),
                ("console", "human-readable key=value lines"),
            ],
            help="Log output format on stdout.",
        ),
    ]


def metrics() -> Group:
    """Where /metrics, /healthz, /readyz and /status are served, and how often
    Nova's reachability is checked for /readyz."""
    return cfg.OptGroup("metrics", title="Metrics and health endpoints (HTTP)"), [
        cfg.BoolOpt(
            "enabled",
            default=True,
            help="Serve /metrics (Prometheus), /healthz, /readyz and /status over HTTP "
            "(docs/metrics.md).",
        ),
        cfg.HostAddressOpt(
            "bind_host",
            default="127.0.0.1",
            help="Address the HTTP endpoints listen on. The endpoints have no "
            "authentication: keep them on loopback or a management network.",
        ),
        cfg.PortOpt(
            "port",
            default=9464,
            help="Port of the HTTP endpoints. 0: a free port chosen at start, logged "
            "as endpoints.listening (`nova-autopilot status` then cannot find it).",
        ),
        seconds(
            "cloud_check_interval",
            30,
            "Seconds between two background requests to Nova that tell /readyz whether "
            "the cloud is reachable; it counts as reachable while its last answer is "
            "younger than three intervals. Probes never call Nova themselves.",
        ),
    ]
