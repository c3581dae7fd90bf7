"""Operator request messages to :class:`Event`.

An operator request is a JSON object; ``docs/requests.md`` is its reference.
The schema is strict: unknown fields are refused, so a typo never silently
changes what a request means::

    {
      "version": 1,
      "type": "quota.request.approved",
      "id": "req-2026-0042",
      "timestamp": "2026-11-25T20:30:46Z",
      "server": {"id": "178b0921-8f85-4257-88b6-2e743b5a975c"},
      "project_id": "6f70656e737461636b20342065766572",
      "flavor": "m1.large",
      "requested_by": "alice",
      "approved_by": "bob",
      "reason": "ticket OPS-1234",
      "parameters": {"rescue_image": "rescue-2026.11"}
    }

``operation.approve`` and ``operation.reject`` name an ``operation_id`` (a
decision awaiting approval) instead of a server.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from nova_autopilot.errors import BadMessage
from nova_autopilot.events.model import Event
from nova_autopilot.events.wire import parse_timestamp

REQUEST_SCHEMA_VERSION = 1
_TYPE_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$")
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,127}$")
_UUID_RE = re.compile(
    r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$"
)
MAX_PARAMETERS = 32


def _text(limit: int) -> Callable[[str, Any], str]:
    def check(name: str, value: Any) -> str:
        if not isinstance(value, str) or not value.strip() or len(value) > limit:
            raise BadMessage(
                "bad_request", f"{name} must be a non-empty string of at most {limit} characters"
            )
        return value

    return check


def _pattern(regex: re.Pattern[str], what: str) -> Callable[[str, Any], str]:
    def check(name: str, value: Any) -> str:
        if not isinstance(value, str) or not regex.match(value):
            raise BadMessage("bad_request", f"{name} must be {what}, got {value!r}")
        return value

    return check


def _version(name: str, value: Any) -> int:
    if value != REQUEST_SCHEMA_VERSION or isinstance(value, bool):
        raise BadMessage(
            "unsupported_version", f"{name} must be {REQUEST_SCHEMA_VERSION}, got {value!r}"
        )
    return REQUEST_SCHEMA_VERSION


def _server(name: str, value: Any) -> dict[str, str]:
    """``"<uuid or name>"`` or ``{"id": ...}`` / ``{"name": ...}`` (or both)."""
    if isinstance(value, str):
        value = {"id": value} if _UUID_RE.match(value) else {"name": value}
    if not isinstance(value, dict) or not value or set(value) - {"id", "name"}:
        raise BadMessage("bad_request", f"{name} must be a server id, a name, or {{id, name}}")
    return {key: _text(255)(f"{name}.{key}", item) for key, item in value.items()}


def _parameters(name: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or len(value) > MAX_PARAMETERS:
        raise BadMessage("bad_request", f"{name} must be an object of at most {MAX_PARAMETERS}")
    for key, item in value.items():
        if not re.match(r"^[a-z][a-z0-9_]{0,63}$", key):
            raise BadMessage("bad_request", f"{name} key {key!r} must be a lower_snake name")
        ok = item is None or isinstance(item, (str, int, float, bool))
        if not ok or (isinstance(item, str) and len(item) > 1024):
            raise BadMessage("bad_request", f"{name}.{key} must be a scalar (strings <= 1024)")
    return dict(value)


_FIELDS: dict[str, Callable[[str, Any], Any]] = {
    "version": _version,
    "type": _pattern(_TYPE_RE, "a dotted lower-case name such as quota.request.approved"),
    "id": _pattern(_ID_RE, "1-128 characters of letters, digits and ._:@/-"),
    "timestamp": _text(40),
    "server": _server,
    "project_id": _text(255),
    "flavor": _text(255),
    "requested_by": _text(255),
    "approved_by": _text(255),
    "reason": _text(1024),
    "parameters": _parameters,
    "operation_id": _pattern(_ID_RE, "an operation id (1-128 letters, digits and ._:@/-)"),
}
REQUIRED_FIELDS = ("type", "id", "timestamp", "server")
#: Request types the engine answers itself, before any policy: an operator's
#: decision on an operation awaiting approval. They name ``operation_id``
#: instead of a server (``server`` is optional and must then match).
OPERATION_TYPES = ("operation.approve", "operation.reject")
OPERATION_REQUIRED_FIELDS = ("type", "id", "timestamp", "operation_id")


def is_request(message: dict[str, Any]) -> bool:
    return "type" in message and "event_type" not in message


def parse_request(message: dict[str, Any]) -> Event:
    """Validate an operator request and build its Event."""
    unknown = sorted(set(message) - set(_FIELDS))
    if unknown:
        raise BadMessage("unknown_field", f"request has unknown field(s): {', '.join(unknown)}")
    on_operation = message.get("type") in OPERATION_TYPES
    required = OPERATION_REQUIRED_FIELDS if on_operation else REQUIRED_FIELDS
    missing = [name for name in required if name not in message]
    if missing:
        raise BadMessage("missing_field", f"request lacks required field(s): {', '.join(missing)}")
    if "operation_id" in message and not on_operation:
        raise BadMessage(
            "bad_request", f"operation_id belongs to {' and '.join(OPERATION_TYPES)} requests only"
        )
    body = {name: _FIELDS[name](name, value) for name, value in message.items()}
    body.setdefault("version", REQUEST_SCHEMA_VERSION)
    server = body.get("server", {})
    server_id = server.get("id")
    return Event(
        source="request",
        format="request",
        event_type=body["type"],
        payload=body,
        message_id=body["id"],
        instance_id=server_id,
        project_id=body.get("project_id"),
        timestamp=parse_timestamp(body["timestamp"], field="timestamp"),
        request_id=body["id"],
        raw=message,
    )
