"""SIGHUP: the policies, the signing keys, the authorisation table and the
log level, all or nothing.

A reload reads everything first: the policy files, the signing keys file, the
authorisation file and the configuration files (for ``[logging] level``, the
one option that changes without a restart). If anything is broken, every
problem is logged and the running set of all of them stays as it was; only
when all of them load are they put in force together. Options that only a
restart applies are named in a warning when the files changed them.

The values set over the files at start (``set_override``: the command line's
``--os-cloud`` and ``--transport-url``, or their environment variables) hold
over the files read again too, as they did at start: the reloaded configuration
has the same overrides, so an unchanged file asks for no restart, and an option
changed in the files but overridden is named as such (``settings.overridden``),
since the running value stays in force.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from oslo_config import cfg

from nova_autopilot import settings
from nova_autopilot.bus.connection import register_oslo_options
from nova_autopilot.errors import PolicyError
from nova_autopilot.logs import get_logger, set_level
from nova_autopilot.policies import PolicySet, load_policies
from nova_autopilot.security.authorization import (
    Authorization,
    AuthorizationError,
    Grant,
    load_grants,
)
from nova_autopilot.security.signing import KeyFileError, Verifier, load_keys

__all__ = ["Fresh", "Reloader"]

log = get_logger(__name__)


class Policies(Protocol):
    """Where the policies in force are held (the daemon's PolicyHolder)."""

    path: str

    def replace(self, fresh: PolicySet) -> None: ...


@dataclass(frozen=True, slots=True)
class Fresh:
    """Everything a reload puts in force, read and checked."""

    policies: PolicySet
    keys: dict[str, str] | None
    level: str
    conf: cfg.ConfigOpts
    #: The authorisation table (None: the daemon has none).
    grants: dict[str, Grant] | None = None
    #: What the files now say of each overridden option, by ``(group, option)``.
    from_files: dict[tuple[str, str], Any] | None = None


class Reloader:
    def __init__(
        self,
        *,
        conf: cfg.ConfigOpts,
        policies: Policies,
        verifier: Verifier | None,
        authorization: Authorization | None = None,
        apply_level: Callable[[str], None] = set_level,
    ) -> None:
        self._conf = conf
        self._policies = policies
        self._verifier = verifier
        self._authorization = authorization
        self._apply_level = apply_level
        self._level = str(conf.logging.level).upper()
        #: The values set over the files at start, by ``(group, option)``, and what
        #: the files said of those options when last read (None: not known).
        self._overrides = overrides(conf)
        self._from_files = self._files_now() if self._overrides else {}

    def reload(self) -> bool:
        """Read everything again; put it in force only if all of it is good."""
        fresh, problems = self.load()
        if fresh is None:
            for what, problem in problems:
                log.error(f"{what}.reload_refused", problem=problem)
            log.error(
                "daemon.reload_refused",
                problems=len(problems),
                kept="the running policies, signing keys, authorisation table and log level",
            )
            return False
        self._warn_restart_needed(fresh)
        self._policies.replace(fresh.policies)
        if self._verifier is not None and fresh.keys is not None:
            self._verifier.use_keys(fresh.keys)
        if self._authorization is not None and fresh.grants is not None:
            self._authorization.use_grants(fresh.grants)
        if fresh.level != self._level:
            self._apply_level(fresh.level)
            self._level = fresh.level
        log.info(
            "daemon.reloaded",
            policies=len(fresh.policies),
            key_ids=None if self._verifier is None else self._verifier.key_ids,
            level=self._level,
        )
        return True

    def load(self) -> tuple[Fresh | None, list[tuple[str, str]]]:
        """Read them all; ``(Fresh, [])``, or ``(None, [(what, problem)...])``."""
        problems: list[tuple[str, str]] = []
        policies = keys = conf = grants = None
        try:
            policies = load_policies(self._policies.path)
        except PolicyError as exc:
            problems += [("policies", str(problem)) for problem in exc.problems]
        if self._verifier is not None:
            try:
                keys = load_keys(self._conf.requests.signing_keys_file)
            except KeyFileError as exc:
                problems.append(("signing_keys", str(exc)))
        path = None if self._authorization is None else self._authorization.path
        if path is not None:
            try:
                grants = load_grants(path)
            except AuthorizationError as exc:
                problems.append(("authorization", str(exc)))
        from_files = None
        try:
            conf = self._read_files()
            from_files = _put_over(conf, self._overrides)
        except settings.SettingsError as exc:
            problems.append(("settings", str(exc)))
        except UnicodeDecodeError as exc:
            conf = None
            problems.append(("settings", f"a configuration file is not UTF-8 text: {exc.reason}"))
        if problems or policies is None or conf is None:
            return None, problems
        level = str(conf.logging.level).upper()
        return Fresh(policies, keys, level, conf, grants, from_files), []

    def _read_files(self) -> cfg.ConfigOpts:
        """The configuration files the daemon started with, read again (nothing over them)."""
        return settings.load(
            config_files=list(self._conf.config_file or ()),
            config_dirs=list(self._conf.config_dir or ()),
        )

    def _files_now(self) -> dict[tuple[str, str], Any] | None:
        """What the files say of the overridden options now (None: they cannot be read)."""
        try:
            return _files_say(self._read_files(), self._overrides)
        except (settings.SettingsError, UnicodeDecodeError):
            return None

    def _warn_restart_needed(self, fresh: Fresh) -> None:
        changed = list(_changed_options(self._conf, fresh.conf))
        if changed:
            log.warning("settings.restart_needed", options=changed)
        before, self._from_files = self._from_files, fresh.from_files
        if before is None or fresh.from_files is None:
            return
        overridden = [
            _name(key)
            for key in self._overrides
            if key in before and key in fresh.from_files and before[key] != fresh.from_files[key]
        ]
        if overridden:
            log.warning(
                "settings.overridden",
                options=overridden,
                note="changed in the files, but the value set over them at start (the command "
                "line's) stays in force",
            )


def overrides(conf: cfg.ConfigOpts) -> dict[tuple[str, str], Any]:
    """The values set over the files of ``conf`` (``set_override``), by ``(group,
    option)``, group ``DEFAULT`` for [DEFAULT]."""
    found: dict[tuple[str, str], Any] = {}
    for key in conf:
        value = conf[key]
        if isinstance(value, cfg.ConfigOpts.GroupAttr):
            for name in value:
                if _overridden(conf, name, key):
                    found[(key, name)] = value[name]
        elif _overridden(conf, key, None):
            found[("DEFAULT", key)] = value
    return found


def _overridden(conf: cfg.ConfigOpts, name: str, group: str | None) -> bool:
    where = conf.get_location(name, group)
    return where is not None and where.location is cfg.Locations.set_override


def _put_over(
    conf: cfg.ConfigOpts, values: dict[tuple[str, str], Any]
) -> dict[tuple[str, str], Any]:
    """Set ``values`` over the files of ``conf``, as they were set over the running
    configuration; returns what the files say of each of them."""
    from_files = _files_say(conf, values)
    for group, name in from_files:
        conf.set_override(name, values[(group, name)], group=None if group == "DEFAULT" else group)
    return from_files


def _files_say(conf: cfg.ConfigOpts, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], Any]:
    """The values of ``conf`` (read from its files) of the options ``keys``, by
    ``(group, option)``. oslo.messaging's options (the broker URLs) are registered
    first when one of them is wanted, as the daemon registers them on the running
    configuration; an option ``conf`` still does not have is left out."""
    keys = list(keys)
    if any(not _registered(conf, *key) for key in keys):
        register_oslo_options(conf)
    return {key: _value(conf, *key) for key in keys if _registered(conf, *key)}


def _registered(conf: cfg.ConfigOpts, group: str, name: str) -> bool:
    if group == "DEFAULT":
        return name in conf
    return group in conf and name in conf[group]


def _name(key: tuple[str, str]) -> str:
    return f"[{key[0]}] {key[1]}"


def _changed_options(old: cfg.ConfigOpts, new: cfg.ConfigOpts) -> Iterator[str]:
    """``[group] option`` for each option a restart would change (never its value)."""
    for group, opts in settings.list_opts():
        for opt in opts:
            if opt.mutable:
                continue
            if _value(old, group, opt.dest) != _value(new, group, opt.dest):
                yield f"[{group}] {opt.dest}"


def _value(conf: cfg.ConfigOpts, group: str, name: str) -> Any:
    return conf[name] if group == "DEFAULT" else conf[group][name]
