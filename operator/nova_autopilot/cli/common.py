"""What every command shares: exit codes, the usage error, the configuration (with
the command line's ``--os-cloud`` and ``--transport-url`` over it), input files and
JSON output."""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
from pathlib import Path
from typing import Any

from nova_autopilot.errors import SettingsError

#: The exit codes of every command (docs/operations.md, "Exit codes"): 0 done; 1 the thing
#: checked is wrong, or refused; 2 wrong usage, unreadable input or configuration;
#: 3 a service it needs (broker, journal database, Nova) cannot be reached now;
#: 4 ``--wait`` got no answer within ``--timeout``. Ctrl-C: 130 (errors.EXIT_INTERRUPTED).
EXIT_OK, EXIT_INVALID, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_NO_ANSWER = 0, 1, 2, 3, 4
#: The output was closed before the command finished writing (``| head``): the shell's
#: code for SIGPIPE.
EXIT_BROKEN_PIPE = 141

#: The environment variables ``--os-cloud`` and ``--transport-url`` fall back on.
OS_CLOUD, TRANSPORT_URL = "OS_CLOUD", "NOVA_AUTOPILOT_TRANSPORT_URL"


class UsageError(Exception):
    """Wrong usage or unreadable input: said in one line, exit status 2."""


class NoAnswer(Exception):
    """``--wait`` waited ``--timeout`` seconds for nothing: one line, exit status 4."""


def load_conf(args: argparse.Namespace, *, required: bool = False) -> Any:
    """The configuration the ``--config-file`` and ``--config-dir`` options name, with
    the command's ``--os-cloud`` and ``--transport-url`` over it (:func:`override`).
    ``required``: a usage error when no file at all was found and no
    ``--transport-url`` names the broker (the defaults would name a broker on
    localhost, which is no operator's intention)."""
    from nova_autopilot import settings  # oslo.config: only for the commands that read it

    try:
        conf = settings.load(config_files=args.config_file, config_dirs=args.config_dir)
    except SettingsError as exc:
        raise UsageError(str(exc)) from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"{_not_utf8(args)} is not UTF-8 text: {exc.reason}") from None
    broker = override(conf, args)[1]
    if required and not conf.config_file and not conf.config_dir and broker is None:
        raise UsageError(
            "no configuration file: give --config-file FILE (none found in the default "
            "places, e.g. /etc/nova-autopilot/nova-autopilot.conf); nothing was sent"
        )
    return conf


def given(args: argparse.Namespace, option: str, variable: str) -> tuple[str, str] | None:
    """The value of a command's ``option`` (its dest), else of the environment
    ``variable`` when set and not empty, with where it came from (``--os-cloud``,
    ``OS_CLOUD``); None when neither is, or when the command has no such option."""
    if not hasattr(args, option):
        return None
    value = getattr(args, option)
    if value is not None:
        return str(value), "--" + option.replace("_", "-")
    value = os.environ.get(variable, "")
    return (value, variable) if value else None


def override(conf: Any, args: argparse.Namespace) -> tuple[str | None, str | None]:
    """Put the command line over the configuration ``conf`` (``set_override``, so that
    everything reading it sees one value): ``--os-cloud`` (else ``$OS_CLOUD``) over
    ``[cloud] cloud``; ``--transport-url`` (else ``$NOVA_AUTOPILOT_TRANSPORT_URL``)
    over every broker URL, ``[DEFAULT] transport_url``,
    ``[oslo_messaging_notifications] transport_url`` and ``[requests] broker_url``.
    Returns where each came from, None for what was not given.

    The brokers the command will use are then read (:func:`_check_brokers`): a URL
    of the configuration that is not one is a usage error naming its option."""
    cloud = given(args, "os_cloud", OS_CLOUD)
    if cloud is not None:
        conf.set_override("cloud", cloud[0], group="cloud")
    broker = given(args, "transport_url", TRANSPORT_URL)
    if broker is not None:
        _check_url(conf, *broker)
        conf.set_override("transport_url", broker[0])
        conf.set_override("transport_url", broker[0], group="oslo_messaging_notifications")
        conf.set_override("broker_url", broker[0], group="requests")
    _check_brokers(conf, args)
    return (None if cloud is None else cloud[1]), (None if broker is None else broker[1])


def _check_brokers(conf: Any, args: argparse.Namespace) -> None:
    """A usage error for a broker URL the command would use but could not connect
    with (an unknown scheme, a port above 65535...), naming its option: the request
    broker for the commands that talk to the broker (``send``, ``approve``,
    ``reject``), the notification broker too for ``run`` and for ``check``, which
    checks what ``run`` reads."""
    command = getattr(args, "command", None)
    if not hasattr(args, "transport_url") and command != "check":
        return
    from nova_autopilot.bus.connection import notification_broker, request_broker

    try:
        request_broker(conf)
        if command in ("run", "check"):
            notification_broker(conf)
    except SettingsError as exc:
        raise UsageError(str(exc)) from None


def _check_url(conf: Any, url: str, source: str) -> None:
    """A usage error for a broker URL given on the command line (or in its variable)
    that no connection could be made from, as for one of the configuration."""
    from nova_autopilot.bus.connection import check_url, register_oslo_options

    register_oslo_options(conf)
    try:
        check_url(conf, url, source)
    except SettingsError as exc:
        raise UsageError(str(exc)) from None


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
