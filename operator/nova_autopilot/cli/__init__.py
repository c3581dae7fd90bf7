"""The ``nova-autopilot`` command.

Exit status (docs/operations.md, "Exit codes"): 0 success, 1 the thing checked is
wrong (invalid policies, a malformed event, an unexpected demo outcome, a refused
request, a broker or journal that refuses what is configured), 2 wrong usage or
unreadable input or configuration, 3 a service it needs (broker, journal
database, Nova) cannot be reached now, 4 ``--wait`` got no answer in time, 130
interrupted, 141 the output closed early (``| head``). Every failure but invalid
policies is said in one line, never with a traceback.

=====================  ==========================================================
``parser``             the argparse tree: every command, its options and help
``common``             exit codes, the usage error, configuration, input, JSON
``policies``           ``check``, ``explain``, ``replay``, ``sweep --dry-run``
``requests``           ``send``, ``approve``, ``reject``: signed requests on the bus
``journal_views``      ``history``, ``pending``, ``refusals``, ``breaker``
``running``            ``run``, ``demo``, ``status``
``output``             the one renderer of the listings: ``-f``, ``-c`` (cliff's formatters)
=====================  ==========================================================
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings
from collections.abc import Callable, Sequence

from nova_autopilot.cli import output, parser
from nova_autopilot.cli.common import (
    EXIT_BROKEN_PIPE,
    EXIT_INVALID,
    EXIT_NO_ANSWER,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    NoAnswer,
    UsageError,
)
from nova_autopilot.cli.requests import decision_body, request_body
from nova_autopilot.errors import (
    EXIT_INTERRUPTED,
    AutopilotError,
    PolicyError,
    SettingsError,
    TemporaryError,
)

__all__ = ["decision_body", "main", "request_body"]

Command = Callable[[argparse.Namespace], int]


def _command(module: str, name: str) -> Command:
    """The function ``name`` of ``nova_autopilot.cli.<module>``, imported when its
    command runs: each command loads only what it needs (a listing of the journal
    no openstacksdk, ``send`` no SQLAlchemy, ``--help`` neither)."""

    def run(args: argparse.Namespace) -> int:
        command: Command = getattr(importlib.import_module(f"{__name__}.{module}"), name)
        return command(args)

    return run


_COMMANDS: dict[str, Command] = {
    "check": _command("policies", "check"),
    "explain": _command("policies", "explain"),
    "replay": _command("policies", "replay"),
    "sweep": _command("policies", "sweep"),
    "demo": _command("running", "demo"),
    "run": _command("running", "run"),
    "send": _command("requests", "send"),
    "history": _command("journal_views", "history"),
    "status": _command("running", "status"),
    "approve": _command("requests", "decide"),
    "reject": _command("requests", "decide"),
    "pending": _command("journal_views", "pending"),
    "breaker": _command("journal_views", "breaker"),
    "refusals": _command("journal_views", "refusals"),
}


def main(argv: Sequence[str] | None = None) -> int:
    # oslo.messaging's dependencies announce eventlet's deprecation on import; it is not ours.
    warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
    args = parser.build().parse_args(argv)
    try:
        output.check(args)
        return int(_COMMANDS[args.command](args))
    except BrokenPipeError:  # `| head` stopped reading: stop writing, quietly
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except PolicyError as exc:
        print(exc, file=sys.stderr)
        return EXIT_INVALID
    except (UsageError, SettingsError) as exc:  # a configuration mistake wherever found
        return _say(exc, EXIT_USAGE)
    except NoAnswer as exc:
        return _say(exc, EXIT_NO_ANSWER)
    except TemporaryError as exc:  # the broker, the journal's database or Nova: not now
        return _say(exc, EXIT_UNAVAILABLE)
    except AutopilotError as exc:  # a start-up problem: say it plainly, no traceback
        return _say(exc, EXIT_INVALID)
    except KeyboardInterrupt:  # Ctrl-C: stop quietly, with the shell's code for SIGINT
        print("nova-autopilot: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _silence_stdout() -> None:
    """Send what is left of stdout (Python flushes it at exit) to /dev/null, so that
    a closed pipe is not reported once more at exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no real file descriptor (captured in a test)
        pass
    finally:
        os.close(devnull)


def _say(error: Exception, code: int) -> int:
    """``error`` on stderr in one line; ``code``."""
    text = " ".join(str(error).split()) or type(error).__name__
    print(f"nova-autopilot: {text}", file=sys.stderr)
    return code
