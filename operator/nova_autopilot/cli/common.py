"""What every command shares: exit codes, the usage error, the configuration,
input files and JSON output."""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
from pathlib import Path
from typing import Any

from nova_autopilot import settings

#: The exit codes of every command (README.md, "Exit codes"): 0 done; 1 the thing
#: checked is wrong, or refused; 2 wrong usage, unreadable input or configuration;
#: 3 a service it needs (broker, journal database, Nova) cannot be reached now;
#: 4 ``--wait`` got no answer within ``--timeout``. Ctrl-C: 130 (errors.EXIT_INTERRUPTED).
EXIT_OK, EXIT_INVALID, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_NO_ANSWER = 0, 1, 2, 3, 4
#: The output was closed before the command finished writing (``| head``): the shell's
#: code for SIGPIPE.
EXIT_BROKEN_PIPE = 141


class UsageError(Exception):
    """Wrong usage or unreadable input: said in one line, exit status 2."""


class NoAnswer(Exception):
    """``--wait`` waited ``--timeout`` seconds for nothing: one line, exit status 4."""


def load_conf(args: argparse.Namespace, *, required: bool = False) -> Any:
    """The configuration the ``--config-file`` and ``--config-dir`` options name.
    ``required``: a usage error when no file at all was found (the defaults would
    name a broker on localhost, which is no operator's intention)."""
    try:
        conf = settings.load(config_files=args.config_file, config_dirs=args.config_dir)
    except settings.SettingsError as exc:
        raise UsageError(str(exc)) from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"{_not_utf8(args)} is not UTF-8 text: {exc.reason}") from None
    if required and not conf.config_file and not conf.config_dir:
        raise UsageError(
            "no configuration file: give --config-file FILE (none found in the default "
            "places, e.g. /etc/nova-autopilot/nova-autopilot.conf); nothing was sent"
        )
    return conf


def _not_utf8(args: argparse.Namespace) -> str:
    """The first configuration file that does not decode, for the error message."""
    paths = list(args.config_file)
    for directory in args.config_dir:
        paths.extend(sorted(glob.glob(os.path.join(os.path.expanduser(directory), "*.conf"))))
    for path in paths:
        try:
            Path(path).expanduser().read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            return f"configuration file {path}"
        except OSError:
            continue
    return "a configuration file"


def read_input(path: str) -> str:
    """A file's text, or stdin's for ``-``."""
    try:
        return sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None


def policies_path(args: argparse.Namespace) -> str:
    """The ``--policies`` option, or the configuration's ``[policies] path``."""
    if args.policies:
        return str(args.policies)
    return str(load_conf(args).policies.path)


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True, default=str))
