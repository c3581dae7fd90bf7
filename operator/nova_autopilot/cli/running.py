"""The commands about the daemon itself: ``run`` it, show it through its flows in a
``demo``, ask it how it is (``status``)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from nova_autopilot import logs
from nova_autopilot.cli.common import EXIT_INVALID, EXIT_OK, UsageError, load_conf, print_json
from nova_autopilot.demo import flows as demo_flows
from nova_autopilot.errors import AutopilotError


def run(args: argparse.Namespace) -> int:
    conf = load_conf(args)
    logs.configure(level=conf.logging.level, fmt=conf.logging.format)
    from nova_autopilot.daemon.wiring import Daemon  # the daemon's imports are heavy: only here

    return Daemon.from_conf(conf).run()


_CLOUD_ONLY = (
    "image",
    "flavor",
    "resize_flavor",
    "network",
    "fail_reboot_metadata",
    "fail_spawn_metadata",
)


def demo(args: argparse.Namespace) -> int:
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
        if args.json:
            print_json(
                {
                    "answered": False,
                    "error": str(silent),
                    "journal": {"unfinished": operations, "error": unreadable},
                }
            )
        else:
            print(daemon_status.render_journal(str(silent), operations or []))
            if unreadable:
                print(unreadable, file=sys.stderr)
        return EXIT_INVALID
    if args.json:
        print_json(document)
    else:
        print(daemon_status.render(document))
    return EXIT_OK
