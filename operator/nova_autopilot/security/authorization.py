"""Which signing key may ask for what: the authorisation table.

A signature proves which key signed a request; this table says what that key
may ask for. It lives in its own YAML file (``[requests] authorization_file``),
which, like the keys file, group and others must not be able to read::

    keys:
      team-a-2026-11:
        types: [quota.request.approved, server.repair.done]   # or "*"
        projects: [6f70656e737461636b20342065766572]          # or "*"
        actions: [resize, unrescue]                           # or "*"
        flavors:                                              # or "*"
          names: [m1.large, m1.xlarge]       # optional
          max_vcpus: 8                       # optional
          max_ram_mb: 16384                  # optional
          max_disk_gb: 160                   # optional

Every entry names all four; a key without an entry may do nothing. Two checks:

* at intake (:meth:`Authorization.check_request`, no I/O): the request's type,
  and the project it claims, must be granted to its key; otherwise it is
  dead-lettered as ``not_authorized``;
* before the decision is recorded (:meth:`Authorization.check_operation`): the
  action the matched policy would perform, the flavor it would resize to (its
  size looked up in Nova, cached) and the project the server really belongs to
  (asked of Nova, whatever the request claims). The engine refuses the whole
  request when any of its decisions is refused there: it is dead-lettered as
  ``not_authorized`` with the reason, nothing is recorded as decided and
  nothing is sent to Nova. A server or flavor Nova does not know is such a
  refusal; Nova failing to answer (down, 5xx, time-out) is not: the error
  propagates and the bus retries the request.

Without a table (no ``authorization_file``) every valid signature may ask for
everything, as before the table existed. SIGHUP reads the file again
(:mod:`nova_autopilot.daemon.reload`, all or nothing with the other files).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from nova_autopilot.cloud import FlavorInfo, ServerState
from nova_autopilot.errors import (
    BadMessage,
    CloudError,
    NotFound,
    PermanentError,
    TemporaryError,
)
from nova_autopilot.events import Event
from nova_autopilot.security.signing import read_private_file

__all__ = [
    "ANY",
    "Authorization",
    "AuthorizationError",
    "FlavorRule",
    "Grant",
    "load_grants",
]


#: Matches every value of a field ("*" in the file).
ANY = None
_ENTRY_FIELDS = ("types", "projects", "actions", "flavors")
_FLAVOR_LIMITS = {"max_vcpus": "vcpus", "max_ram_mb": "ram", "max_disk_gb": "disk"}


class AuthorizationError(PermanentError):
    """The authorisation file cannot be used (missing, too open, malformed)."""


class Lookup(Protocol):
    """The part of :class:`~nova_autopilot.cloud.Cloud` the checks read."""

    def find_server(self, ref: str | Mapping[str, str]) -> ServerState: ...
    def flavor(self, ref: str) -> FlavorInfo: ...


@dataclass(frozen=True, slots=True)
class FlavorRule:
    """Flavors a key may resize to: named ones (None: any name) within limits."""

    names: frozenset[str] | None = None
    max_vcpus: int | None = None
    max_ram_mb: int | None = None
    max_disk_gb: int | None = None

    @property
    def needs_size(self) -> bool:
        return any(v is not None for v in (self.max_vcpus, self.max_ram_mb, self.max_disk_gb))

    def refusal(self, ref: str, flavor: FlavorInfo | None) -> str | None:
        """Why ``ref`` (looked up as ``flavor`` when sizes matter) is not allowed."""
        if self.names is not None and not {ref, *_names(flavor)} & self.names:
            return f"flavor {ref} is not among {', '.join(sorted(self.names))}"
        if flavor is None:
            return None
        for limit, field in _FLAVOR_LIMITS.items():
            maximum = getattr(self, limit)
            size = getattr(flavor, field)
            if maximum is not None and (size is None or size > maximum):
                return f"flavor {ref} has {field} {size}, more than {limit} {maximum}"
        return None


def _names(flavor: FlavorInfo | None) -> tuple[str, ...]:
    return () if flavor is None else (flavor.id, flavor.name)


@dataclass(frozen=True, slots=True)
class Grant:
    """What one key may ask for; None in a field means any (``"*"``)."""

    types: frozenset[str] | None
    projects: frozenset[str] | None
    actions: frozenset[str] | None
    flavors: FlavorRule | None


def _names_or_any(key_id: str, field: str, value: Any) -> frozenset[str] | None:
    if value == "*":
        return ANY
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise AuthorizationError(
            f"authorisation entry {key_id!r}: {field} must be '*' or a list of names"
        )
    return frozenset(value)


def _flavor_rule(key_id: str, value: Any) -> FlavorRule | None:
    if value == "*":
        return None
    allowed = {"names", *_FLAVOR_LIMITS}
    if not isinstance(value, dict) or not value or set(value) - allowed:
        raise AuthorizationError(
            f"authorisation entry {key_id!r}: flavors must be '*' or a mapping of "
            f"{', '.join(sorted(allowed))}"
        )
    limits: dict[str, int | None] = {}
    for limit in _FLAVOR_LIMITS:
        number = value.get(limit)
        if number is not None and (not isinstance(number, int) or isinstance(number, bool)):
            raise AuthorizationError(f"authorisation entry {key_id!r}: {limit} must be a number")
        if number is not None and number < 0:
            raise AuthorizationError(f"authorisation entry {key_id!r}: {limit} is negative")
        limits[limit] = number
    names = value.get("names")
    return FlavorRule(
        names=None if names is None else _names_or_any(key_id, "flavors.names", names),
        **limits,
    )


def load_grants(path: str | os.PathLike[str]) -> dict[str, Grant]:
    """Read the authorisation file; refuse one group or others may read."""
    data = read_private_file(path, what="authorisation file", error=AuthorizationError)
    entries = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(data, dict) or set(data) != {"keys"} or not isinstance(entries, dict):
        raise AuthorizationError(f"authorisation file {path} needs one 'keys' mapping")
    grants: dict[str, Grant] = {}
    for key_id, entry in entries.items():
        if not isinstance(key_id, str) or not isinstance(entry, dict):
            raise AuthorizationError(f"authorisation file {path}: each key id maps to an entry")
        missing = [name for name in _ENTRY_FIELDS if name not in entry]
        unknown = sorted(set(entry) - set(_ENTRY_FIELDS))
        if missing or unknown:
            raise AuthorizationError(
                f"authorisation entry {key_id!r} must name exactly "
                f"{', '.join(_ENTRY_FIELDS)} (missing: {', '.join(missing) or 'none'}; "
                f"unknown: {', '.join(unknown) or 'none'})"
            )
        grants[key_id] = Grant(
            types=_names_or_any(key_id, "types", entry["types"]),
            projects=_names_or_any(key_id, "projects", entry["projects"]),
            actions=_names_or_any(key_id, "actions", entry["actions"]),
            flavors=_flavor_rule(key_id, entry["flavors"]),
        )
    return grants


def _server_ref(params: Mapping[str, Any], server_id: str | None, name: str | None) -> Any:
    if server_id:
        return {"id": server_id}
    if name:
        return {"name": name}
    return params.get("server")


def _shown(ref: Any) -> str:
    """A server reference as the request gave it: its id or its name."""
    if isinstance(ref, Mapping):
        return str(ref.get("id") or ref.get("name") or dict(ref))
    return str(ref)


def _not_found(what: str, ref: str, exc: CloudError) -> str:
    if isinstance(exc, NotFound):
        return f"{what} {ref} not found in Nova"
    return f"{what} {ref} cannot be looked up in Nova ({exc.status}: {exc.message})"


class Authorization:
    """The table in force (None: no table, everything allowed).

    Build it with :meth:`from_file` (or give ``grants``); a reload reads
    :attr:`path` again and puts the new table in force with :meth:`use_grants`."""

    def __init__(
        self,
        grants: Mapping[str, Grant] | None,
        *,
        cloud: Lookup | None = None,
        path: str | os.PathLike[str] | None = None,
    ) -> None:
        self._grants = None if grants is None else dict(grants)
        self._cloud = cloud
        #: The file the table came from (None: given, or no table).
        self.path = path

    @classmethod
    def from_file(cls, path: str | os.PathLike[str] | None, *, cloud: Lookup) -> Authorization:
        """The table of ``path``; no path (``""``): no table."""
        if not path:
            return cls(None, cloud=cloud)
        return cls(load_grants(path), cloud=cloud, path=path)

    @property
    def enforced(self) -> bool:
        return self._grants is not None

    def use_grants(self, grants: Mapping[str, Grant]) -> None:
        """Check with ``grants`` from now on (a reload); a check in progress
        ends with the table it started with."""
        self._grants = dict(grants)

    def _grant(self, event: Event) -> Grant | str | None:
        """The key's grant, None when nothing is enforced, or why nothing is allowed."""
        grants = self._grants  # one read: a reload swaps the whole mapping
        if grants is None or event.source != "request":
            return None
        if event.key_id is None:
            return "an unsigned request cannot be authorised"
        grant = grants.get(event.key_id)
        if grant is None:
            return f"key {event.key_id} has no entry in the authorisation table"
        return grant

    # -- at intake ----------------------------------------------------------

    def check_request(self, event: Event) -> None:
        """Refuse (``BadMessage("not_authorized")``) a request whose type, or
        claimed project, its key may not send."""
        grant = self._grant(event)
        if isinstance(grant, str):
            raise BadMessage("not_authorized", grant)
        if grant is None:
            return
        if grant.types is not ANY and event.event_type not in grant.types:
            raise BadMessage(
                "not_authorized", f"key {event.key_id} may not send {event.event_type} requests"
            )
        claim = event.project_id
        if claim is not None and grant.projects is not ANY and claim not in grant.projects:
            raise BadMessage("not_authorized", f"key {event.key_id} may not act on project {claim}")

    # -- before the decision ------------------------------------------------

    def check_operation(
        self,
        event: Event,
        *,
        action: str,
        params: Mapping[str, Any],
        server_id: str | None,
        server_name: str | None,
    ) -> str | None:
        """Why the key may not have ``action`` done with ``params``, or None.
        Reads the server (and the flavor's size) from Nova: one Nova does not
        have (404, or another final 4xx answer) is a refusal; a temporary
        failure there (:class:`~nova_autopilot.errors.CloudUnavailable`)
        propagates, so the request is retried."""
        grant = self._grant(event)
        if grant is None or isinstance(grant, str):
            return grant
        who = f"key {event.key_id}"
        if grant.actions is not ANY and action not in grant.actions:
            return f"{who} may not {action}"
        if grant.projects is not ANY or event.project_id is not None:
            refusal = self._project_refusal(grant, event, who, params, server_id, server_name)
            if refusal is not None:
                return refusal
        flavor = params.get("flavor")
        if grant.flavors is not None and flavor is not None:
            return self._flavor_refusal(grant.flavors, str(flavor), who)
        return None

    def _lookup(self) -> Lookup:
        if self._cloud is None:
            raise RuntimeError("the authorisation table needs the cloud to check servers")
        return self._cloud

    def _project_refusal(
        self,
        grant: Grant,
        event: Event,
        who: str,
        params: Mapping[str, Any],
        server_id: str | None,
        server_name: str | None,
    ) -> str | None:
        ref = _server_ref(params, server_id, server_name)
        if not ref:
            return f"{who}: the request names no server whose project could be checked"
        try:
            server = self._lookup().find_server(ref)
        except CloudError as exc:
            if isinstance(exc, TemporaryError):
                raise
            return f"{who}: {_not_found('server', _shown(ref), exc)}, its project cannot be checked"
        real = server.project_id
        if event.project_id is not None and event.project_id != real:
            return f"the request claims project {event.project_id}, server {server.id} is in {real}"
        if grant.projects is not ANY and real not in grant.projects:
            return f"{who} may not act on project {real} (server {server.id})"
        return None

    def _flavor_refusal(self, rule: FlavorRule, ref: str, who: str) -> str | None:
        info: FlavorInfo | None = None
        if rule.needs_size:
            try:
                info = self._lookup().flavor(ref)
            except CloudError as exc:
                if isinstance(exc, TemporaryError):
                    raise
                return f"{who}: {_not_found('flavor', ref, exc)}"
        refusal = rule.refusal(ref, info)
        return None if refusal is None else f"{who}: {refusal}"
