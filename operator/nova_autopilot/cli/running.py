"""The commands about the daemon itself: ``run`` it, show it through its flows in a
``demo``, ask it how it is (``status``)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from nova_autopilot.cli.common import EXIT_INVALID, EXIT_OK, UsageError, load_conf
from nova_autopilot.cli.output import Columns, Listing, chosen_format, emit
from nova_autopilot.errors import AutopilotError


def run(args: argparse.Namespace) -> int:
    from nova_autopilot import logs

    conf = load_conf(args)
    logs.configure(level=conf.logging.level, fmt=conf.logging.format)
    from nova_autopilot.daemon.wiring import Daemon  # the daemon's imports are heavy: only here

    return Daemon.from_conf(conf).run()


#: The rows of ``status``: the operations in flight (``waiting``, ``attempts``: the
#: daemon's), or, when it does not answer, the journal's unfinished ones (``policy``).
STATUS = Columns(
    names=(
        "operation_id",
        "action",
        "server_id",
        "phase",
        "policy",
        "waiting",
        "attempts",
        "started_at",
        "age_s",
    ),
    shown=("operation_id", "action", "server_id", "phase", "started_at", "age_s"),
)

_CLOUD_ONLY = (
    "image",
    "flavor",
    "resize_flavor",
    "network",
    "fail_reboot_metadata",
    "fail_spawn_metadata",
)


def demo(args: argparse.Namespace) -> int:
    from nova_autopilot.demo import flows as demo_flows  # the sandbox and openstacksdk: only here

    cloud = None
    if args.cloud:
        cloud = demo_flows.CloudOptions(
            args.cloud, **{name: getattr(args, name) for name in _CLOUD_ONLY}
        )
    else:
        given = [f"--{name.replace('_', '-')}" for name in _CLOUD_ONLY if getattr(args, name)]
        if given:
            raise UsageError(f"{', '.join(given)}: only with --cloud")
    try:
        return demo_flows.run(broker=args.broker, cloud=cloud)
    except demo_flows.UsageError as exc:
        raise UsageError(f"demo: {exc}") from None


def status(args: argparse.Namespace) -> int:
    """The running daemon's status; when it does not answer, the journal's unfinished
    operations and exit status 1. Its rows are the operations (in flight, or unfinished)."""
    from nova_autopilot.reports import status as daemon_status

    conf = load_conf(args)
    try:
        document = daemon_status.ask(daemon_status.endpoint(conf), timeout=args.timeout)
    except daemon_status.DaemonSilent as silent:
        try:
            operations: list[dict[str, Any]] | None = daemon_status.unfinished(
                daemon_status.journal_url(conf)
            )
            unreadable = None
        except (AutopilotError, ValueError) as exc:
            operations, unreadable = None, f"cannot read the journal: {exc}"
        listing = Listing(
            columns=STATUS,
            rows=operations or [],
            text=daemon_status.render_journal(str(silent), operations or []),
            document={
                "answered": False,
                "error": str(silent),
                "journal": {"unfinished": operations, "error": unreadable},
            },
        )
        fmt = chosen_format(args)
        whole = fmt in ("json", "yaml") and not args.column  # the document says it all
        if fmt != "text" and not whole:  # only rows on stdout: what they are, on stderr
            print(
                f"nova-autopilot: the daemon does not answer: {silent}; the operations "
                "listed are the journal's unfinished ones",
                file=sys.stderr,
            )
        emit(listing, args)
        if unreadable and not whole:
            print(unreadable, file=sys.stderr)
        return EXIT_INVALID
    rows = document.get("operations")
    listing = Listing(
        columns=STATUS,
        rows=rows if isinstance(rows, list) else [],
        text=daemon_status.render(document),
        document=document,
    )
    emit(listing, args)
    return EXIT_OK
