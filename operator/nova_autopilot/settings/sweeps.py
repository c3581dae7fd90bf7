"""[sweeps]: the periodic look at Nova's server states, so that a lost
notification loses nothing (docs/sweeps.md)."""

from __future__ import annotations

from oslo_config import cfg

from nova_autopilot.settings.kinds import Group, seconds


def sweeps() -> Group:
    """Whether sweeps run, and how often."""
    return cfg.OptGroup("sweeps", title="Sweeps of Nova's server states"), [
        cfg.BoolOpt(
            "enabled",
            default=True,
            help="Sweep: list the servers in VERIFY_RESIZE, RESCUE or ERROR (after launch) "
            "now and then and hand each to the policies as an event of source sweep, so "
            "that a lost notification loses nothing (docs/sweeps.md). A sweep asks Nova "
            "nothing while no enabled policy listens to a sweep event type.",
        ),
        seconds(
            "interval",
            300,
            "Seconds between two sweeps; the first one runs when the daemon has started.",
            minimum=10,
        ),
    ]
