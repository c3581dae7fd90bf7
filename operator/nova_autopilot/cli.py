"""The ``nova-autopilot`` command.

Exit status: 0 success, 1 the thing checked is wrong (invalid policies, a
malformed event, an unexpected demo outcome), 2 wrong usage or unreadable
input.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from nova_autopilot import __version__, demo, settings, workbench
from nova_autopilot.errors import BadMessage, PolicyError
from nova_autopilot.events import parse_message
from nova_autopilot.policies import PolicySet, load_policies

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2


class _UsageError(Exception):
    pass


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nova-autopilot",
        description="Event-driven, confirmed operations on OpenStack Nova.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--config-file",
        action="append",
        default=[],
        metavar="FILE",
        help="an oslo.config file (repeatable; default: /etc/nova-autopilot/nova-autopilot.conf)",
    )
    parser.add_argument(
        "--config-dir",
        action="append",
        default=[],
        metavar="DIR",
        help="a directory of *.conf files read after the config files (repeatable)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def policies_option(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--policies",
            metavar="PATH",
            help="a policy file or directory (default: [policies] path of the configuration)",
        )

    check = commands.add_parser("check", help="validate policies; print every mistake")
    policies_option(check)

    explain = commands.add_parser(
        "explain", help="show how one event is normalized and why each policy fires or not"
    )
    policies_option(explain)
    explain.add_argument("--event", required=True, metavar="FILE", help="the message ('-': stdin)")
    explain.add_argument("--json", action="store_true", help="print JSON for scripts")

    replay = commands.add_parser(
        "replay", help="run a recorded stream (one message a line) through the policies"
    )
    policies_option(replay)
    replay.add_argument("stream", metavar="STREAM.jsonl", help="the stream ('-': stdin)")
    replay.add_argument("--json", action="store_true", help="print JSON for scripts")
    replay.add_argument(
        "--against", metavar="PATH", help="other policies: show what changes (backtesting)"
    )

    commands.add_parser("demo", help="play the embedded demo; needs no broker and no cloud")
    return parser


def _read(path: str) -> str:
    try:
        return sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _UsageError(f"cannot read {path}: {exc}") from None


def _policies_path(args: argparse.Namespace) -> str:
    if args.policies:
        return str(args.policies)
    try:
        conf = settings.load(config_files=args.config_file, config_dirs=args.config_dir)
    except settings.SettingsError as exc:
        raise _UsageError(str(exc)) from None
    return str(conf.policies.path)


def _load(path: str) -> PolicySet:
    return load_policies(path)


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True, default=str))


def _check(args: argparse.Namespace) -> int:
    path = _policies_path(args)
    policies = _load(path)
    enabled = sum(1 for p in policies.policies if p.enabled)
    print(f"{path}: {len(policies)} policies valid ({enabled} enabled)")
    return EXIT_OK


def _explain(args: argparse.Namespace) -> int:
    policies = _load(_policies_path(args))
    text = _read(args.event)
    try:
        event = parse_message(text)
    except BadMessage as exc:
        if args.json:
            _print_json({"error": {"reason": exc.reason, "detail": exc.detail}})
        else:
            print(f"{args.event}: not an event: {exc.detail}", file=sys.stderr)
        return EXIT_INVALID
    result = workbench.explain(policies, event)
    if args.json:
        _print_json(result)
    else:
        print(workbench.render_explain(result))
    return EXIT_OK


def _replay(args: argparse.Namespace) -> int:
    policies = _load(_policies_path(args))
    other = _load(args.against) if args.against else None
    lines = list(workbench.read_stream(_read(args.stream).splitlines()))
    result = workbench.decide(policies, lines)
    if other is not None:
        result = workbench.compare(result, workbench.decide(other, lines))
        render = workbench.render_comparison
    else:
        render = workbench.render_replay
    if args.json:
        _print_json(result)
    else:
        print(render(result))
    return EXIT_OK


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "check": _check,
    "explain": _explain,
    "replay": _replay,
    "demo": lambda _args: demo.run(),
}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return int(_COMMANDS[args.command](args))
    except PolicyError as exc:
        print(exc, file=sys.stderr)
        return EXIT_INVALID
    except _UsageError as exc:
        print(f"nova-autopilot: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
