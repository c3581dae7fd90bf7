"""What every command shares: exit codes, the usage error, the configuration,
input files and JSON output."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from nova_autopilot import settings

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Wrong usage or unreadable input: said in one line, exit status 2."""


def load_conf(args: argparse.Namespace) -> Any:
    """The configuration the ``--config-file`` and ``--config-dir`` options name."""
    try:
        return settings.load(config_files=args.config_file, config_dirs=args.config_dir)
    except settings.SettingsError as exc:
        raise UsageError(str(exc)) from None


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
