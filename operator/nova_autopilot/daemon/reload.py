"""SIGHUP: the policies, the signing keys, the authorisation table and the
log level, all or nothing.

A reload reads everything first: the policy files, the signing keys file, the
authorisation file and the configuration files (for ``[logging] level``, the
one option that changes without a restart). If anything is broken, every
problem is logged and the running set of all of them stays as it was; only
when all of them load are they put in force together. Options that only a
restart applies are named in a warning when the files changed them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from oslo_config import cfg

from nova_autopilot import settings
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
        self._warn_restart_needed(fresh.conf)
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
        try:
            conf = settings.load(
                config_files=list(self._conf.config_file or ()),
                config_dirs=list(self._conf.config_dir or ()),
            )
        except settings.SettingsError as exc:
            problems.append(("settings", str(exc)))
        if problems or policies is None or conf is None:
            return None, problems
        return Fresh(policies, keys, str(conf.logging.level).upper(), conf, grants), []

    def _warn_restart_needed(self, fresh: cfg.ConfigOpts) -> None:
        changed = list(_changed_options(self._conf, fresh))
        if changed:
            log.warning("settings.restart_needed", options=changed)


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
