"""``GET /servers`` and ``/servers/detail``: filters, tenancy, sorting and paging as Nova does them.

- ``changes-since`` / ``changes-before`` (ISO 8601) compare with ``updated``
  (to the second, as Nova's database keeps it) and bring back deleted
  servers, with status DELETED.
- ``name`` is a regular expression searched in the name; ``status`` maps
  to vm_state (and task_state) as Nova maps it; an unknown status is a 400.
- Without ``all_tenants`` a caller sees its own project; ``all_tenants`` is
  for administrators, who may then narrow with ``project_id``/``tenant_id``.
- Administrators may also filter on ``uuid``, ``vm_state``, ``task_state``,
  ``host`` and ``deleted``; other callers' unknown filters are ignored.
- Newest first (``created_at`` then creation order, descending), then
  ``marker`` and ``limit`` (at most ``max_limit``), with a ``next`` link
  when the page is full.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from nova_autopilot.sandbox import errors, states
from nova_autopilot.sandbox.context import RequestContext
from nova_autopilot.sandbox.microversion import Version
from nova_autopilot.sandbox.model import Server

Query = Mapping[str, Sequence[str]]

_SORT_KEYS: dict[str, Callable[[Server], object]] = {
    "created_at": lambda s: (s.created_at, s.internal_id),
    "updated_at": lambda s: (s.updated_at, s.internal_id),
    "display_name": lambda s: (s.name, s.internal_id),
    "uuid": lambda s: s.id,
    "vm_state": lambda s: (s.vm_state, s.internal_id),
}


@dataclass(frozen=True)
class Page:
    servers: list[Server]
    next_marker: str | None
    """The marker of the next page, when this page is full."""


def parse_time(name: str, value: str) -> datetime:
    text = value.strip()
    try:
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise errors.bad_request(
            f"Invalid input for query parameters {name}. Value: {value}. "
            f"'{value}' is not a 'date-time'"
        ) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=timezone.utc)


def _last(query: Query, name: str) -> str | None:
    values = query.get(name)
    return values[-1] if values else None


def _truthy(value: str) -> bool:
    return value.strip().lower() in ("1", "t", "true", "on", "y", "yes")


def _name_matcher(pattern: str) -> Callable[[str], bool]:
    try:
        compiled = re.compile(pattern)
    except re.error:
        compiled = re.compile(re.escape(pattern))
    return lambda name: compiled.search(name) is not None


def _int(name: str, value: str) -> int:
    if not value.strip().isdigit():
        raise errors.bad_request(
            f"Invalid input for query parameters {name}. Value: {value}. "
            f"'{value}' does not match '^[0-9]*$'"
        )
    return int(value)


def list_servers(
    servers: Sequence[Server],
    query: Query,
    *,
    ctx: RequestContext,
    version: Version,
    max_limit: int,
) -> Page:
    """The page of ``servers`` that ``query`` asks for."""
    filters: list[Callable[[Server], bool]] = []

    since_text, before_text = _last(query, "changes-since"), _last(query, "changes-before")
    since = parse_time("changes-since", since_text) if since_text is not None else None
    before = parse_time("changes-before", before_text) if before_text is not None else None
    if since is not None and before is not None and before < since:
        raise errors.bad_request(
            "The value of changes-since must be less than or equal to changes-before."
        )
    if since is not None:
        filters.append(lambda s: s.updated_at >= since)
    if before is not None:
        filters.append(lambda s: s.updated_at <= before)

    deleted_text = _last(query, "deleted") if ctx.is_admin else None
    if deleted_text is not None:
        wanted_deleted = _truthy(deleted_text)
        filters.append(lambda s: s.deleted == wanted_deleted)
    elif since is None and before is None:
        filters.append(lambda s: not s.deleted)

    statuses = list(query.get("status", []))
    if statuses:
        vm_states, task_states = states.states_for_statuses(statuses)
        if not vm_states:
            if version.at_least("2.38"):
                raise errors.bad_request("Invalid status value")
            return Page([], None)
        filters.append(lambda s: s.vm_state in vm_states)
        if None not in task_states:
            filters.append(lambda s: s.task_state in task_states)

    name = _last(query, "name")
    if name is not None:
        matches = _name_matcher(name)
        filters.append(lambda s: matches(s.name))

    all_tenants_text = _last(query, "all_tenants")
    all_tenants = all_tenants_text is not None and (
        all_tenants_text == "" or _truthy(all_tenants_text)
    )
    if all_tenants and not ctx.is_admin:
        raise errors.ApiError(
            403,
            "Policy doesn't allow os_compute_api:servers:detail:get_all_tenants to be performed.",
        )
    if all_tenants:
        project = _last(query, "project_id") or _last(query, "tenant_id")
        if project is not None:
            filters.append(lambda s: s.project_id == project)
    else:
        own = ctx.project_id
        filters.append(lambda s: s.project_id == own)

    if ctx.is_admin:
        for param, field in (
            ("uuid", "id"),
            ("vm_state", "vm_state"),
            ("task_state", "task_state"),
            ("host", "host"),
        ):
            wanted = set(query.get(param, []))
            if wanted:
                filters.append(lambda s, f=field, w=wanted: getattr(s, f) in w)  # type: ignore[misc]
    locked = _last(query, "locked")
    if locked is not None and version.at_least("2.73"):
        wanted_locked = _truthy(locked)
        filters.append(lambda s: s.locked == wanted_locked)
    flavor = _last(query, "flavor")
    if flavor is not None:
        filters.append(lambda s: s.flavor.id == flavor)

    chosen = [s for s in servers if all(f(s) for f in filters)]
    return _page(chosen, query, max_limit)


def _page(chosen: list[Server], query: Query, max_limit: int) -> Page:
    keys = list(query.get("sort_key", [])) or ["created_at"]
    dirs = list(query.get("sort_dir", [])) or ["desc"]
    for index in range(len(keys) - 1, -1, -1):
        key = _SORT_KEYS.get(keys[index], _SORT_KEYS["created_at"])
        direction = dirs[index] if index < len(dirs) else dirs[-1]
        chosen.sort(key=key, reverse=direction.lower() != "asc")  # type: ignore[arg-type]

    marker = _last(query, "marker")
    if marker is not None:
        ids = [s.id for s in chosen]
        if marker not in ids:
            raise errors.bad_request(f"marker [{marker}] not found")
        chosen = chosen[ids.index(marker) + 1 :]

    limit_text = _last(query, "limit")
    limit = max_limit if limit_text is None else min(_int("limit", limit_text), max_limit)
    page = chosen[:limit]
    full = limit > 0 and len(page) == limit
    return Page(page, page[-1].id if full else None)
