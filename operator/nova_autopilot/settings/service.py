"""[DEFAULT]: the service process itself: where it keeps its state, how long it
takes to stop, and when systemd's watchdog should restart it."""

from __future__ import annotations

from oslo_config import cfg

from nova_autopilot.settings.kinds import Group, seconds


def default() -> Group:
    """Options of [DEFAULT], which is the None group of oslo.config."""
    return None, [
        cfg.StrOpt(
            "state_dir",
            default="/var/lib/nova-autopilot",
            help="Directory holding the runtime state of the daemon, including the SQLite "
            "journal when [journal] connection is empty. Must be writable by the service.",
        ),
        seconds(
            "stop_timeout",
            30,
            "Seconds the daemon takes at most to stop on SIGTERM: it stops taking messages "
            "(the broker keeps what was not handled), lets running steps end and leaves "
            "waiting operations in the journal, where the next start resumes them.",
        ),
        seconds(
            "wedged_after",
            20,
            "Seconds after which a message still in a handler (for example a journal write "
            "blocked on a database lock), or an operation worker pool that has not run a "
            "trivial task, counts as wedged. While anything is wedged the daemon stops "
            "sending WATCHDOG=1 to systemd, which restarts it after WatchdogSec; keep it "
            "below the unit's WatchdogSec.",
        ),
    ]
