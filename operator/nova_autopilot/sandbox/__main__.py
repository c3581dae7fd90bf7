"""``python -m nova_autopilot.sandbox``: run a simulated Nova until interrupted.

Prints the compute endpoint (the ``/v2.1`` URL) on the first line of
standard output, then serves until SIGINT or SIGTERM::

    $ python -m nova_autopilot.sandbox --port 0 --flavor small:1:512:10 --server web-1:small
    http://127.0.0.1:41871/v2.1

With ``--print-clouds-yaml`` it prints the ``clouds.yaml`` that reaches the
sandbox at ``--host`` and ``--port`` (cloud ``--cloud-name``, ``sandbox``), and
exits without serving::

    $ python -m nova_autopilot.sandbox --port 8774 --print-clouds-yaml > clouds.yaml
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from nova_autopilot.sandbox.cell import Settings
from nova_autopilot.sandbox.clouds import DEFAULT_CLOUD, clouds_yaml, endpoint
from nova_autopilot.sandbox.durations import Durations
from nova_autopilot.sandbox.errors import ApiError
from nova_autopilot.sandbox.sandbox import Sandbox


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m nova_autopilot.sandbox",
        description="A simulated Nova: the compute API, Nova's states and its notifications.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=0, help="port (0: any free port)")
    parser.add_argument(
        "--transport-url",
        help="publish versioned notifications through oslo.messaging (rabbit://...)",
    )
    parser.add_argument(
        "--resize-confirm-window",
        type=float,
        default=0.0,
        help="seconds after which a resize is confirmed automatically (0: never)",
    )
    parser.add_argument(
        "--slow", type=float, default=1.0, help="multiply every phase's duration by this"
    )
    parser.add_argument(
        "--flavor",
        action="append",
        default=[],
        metavar="NAME:VCPUS:RAM:DISK",
        help="create a flavor (repeatable)",
    )
    parser.add_argument(
        "--server",
        action="append",
        default=[],
        metavar="NAME:FLAVOR[:STATE]",
        help="place a server (STATE: ACTIVE, SHUTOFF, ERROR, RESCUE; repeatable)",
    )
    parser.add_argument("--verbose", action="store_true", help="log every request")
    parser.add_argument(
        "--print-clouds-yaml",
        action="store_true",
        help="print the clouds.yaml that reaches this sandbox (at --host and --port, which "
        "must not be 0) for openstacksdk and the daemon, and exit without serving",
    )
    parser.add_argument(
        "--cloud-name",
        default=DEFAULT_CLOUD,
        metavar="NAME",
        help="the cloud's name in the printed clouds.yaml (default: %(default)s)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.print_clouds_yaml:
        if args.port == 0:
            parser.error("--print-clouds-yaml needs the --port the sandbox will serve on")
        print(clouds_yaml(endpoint(args.host, args.port), name=args.cloud_name), end="")
        return 0
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    sandbox = Sandbox(
        host=args.host,
        port=args.port,
        transport_url=args.transport_url,
        durations=Durations().scaled(args.slow),
        settings=Settings(resize_confirm_window=args.resize_confirm_window),
    )
    try:
        for spec in args.flavor:
            name, vcpus, ram, disk = spec.split(":")
            sandbox.add_flavor(name, vcpus=int(vcpus), ram=int(ram), disk=int(disk))
        for spec in args.server:
            name, flavor, *state = spec.split(":")
            sandbox.add_server(name, flavor, state=state[0] if state else "ACTIVE")
    except (ValueError, ApiError) as exc:
        print(f"bad --flavor or --server: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    with sandbox:
        print(sandbox.url, flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
