"""Nova notifications (versioned and legacy) to :class:`Event`.

Versioned payloads are ``nova_object`` trees: every
``{"nova_object.name": ..., "nova_object.data": {...}}`` is replaced by its
data, recursively, so policies see plain dicts. Legacy ``compute.instance.*``
payloads are plain dicts already.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from nova_autopilot.errors import BadMessage
from nova_autopilot.events.model import Event
from nova_autopilot.events.wire import LOOKED_AT, as_stdlib, parse_timestamp, plain_float

NOVA_OBJECT_DATA = "nova_object.data"
_EVENT_TYPE_RE = re.compile(r"^[A-Za-z0-9_.-]{1,255}$")
#: Context keys oslo.messaging packs into a message that are safe to keep;
#: everything else (auth tokens, service catalog) is dropped on intake.
_SAFE_CONTEXT_KEYS = ("request_id", "global_request_id", "user_id", "project_id")
_CONTEXT_PREFIX = "_context_"
_SAFE_CONTEXT = frozenset(_CONTEXT_PREFIX + key for key in _SAFE_CONTEXT_KEYS)
#: What JSON decodes to besides objects and arrays: left as it is by :func:`_unwrap`.
_SCALARS = frozenset({str, int, float, bool, type(None)})
#: The same but floats, which :func:`unwrap_decoded` looks at.
_PLAIN = frozenset({str, int, bool, type(None)})


class Unsure(Exception):
    """:func:`unwrap_decoded` cannot vouch for a payload: it is read the careful way."""


def _unwrap(value: Any, depth: int, max_depth: int) -> Any:
    """Unwrap nova_object layers and check nesting in the same single walk."""
    kind = type(value)  # JSON gives exact types: checked first, this walk is hot
    if kind is not dict and kind is not list:
        if not isinstance(value, (dict, list)):
            return value
        kind = dict if isinstance(value, dict) else list
    if depth > max_depth:
        raise BadMessage("too_deep", f"payload is nested deeper than {max_depth} levels")
    deeper = depth + 1
    if kind is list:
        return [
            item if type(item) in _SCALARS else _unwrap(item, deeper, max_depth) for item in value
        ]
    if NOVA_OBJECT_DATA in value:
        data = value[NOVA_OBJECT_DATA]
        if not isinstance(data, dict):
            raise BadMessage("bad_payload", "nova_object.data must be an object")
        value = data
    return {
        k: v if type(v) in _SCALARS else _unwrap(v, deeper, max_depth) for k, v in value.items()
    }


def unwrap_decoded(value: Any, depth: int, max_depth: int) -> Any:
    """:func:`_unwrap` of orjson's value of a text whose nesting was not scanned,
    copying only the containers that hold a nova_object (the value is the
    decoder's own: what needs no change is shared, read-only like the rest).

    ``depth`` is the text's own (a nova_object's data is one level below it), and
    :class:`Unsure` is raised where the standard library's reading of the text
    could differ or would be refused: a container deeper than ``max_depth``
    (anywhere, in the wrappers' other members too), a float orjson may have read
    from an integer beyond 64 bits, a nova_object.data that is not an object."""
    kind = type(value)
    if kind is float:
        if plain_float(value):
            return value
        raise Unsure
    if depth > max_depth:
        raise Unsure
    deeper = depth + 1
    if kind is list:
        return _unwrap_members(value, enumerate(value), deeper, max_depth)
    if NOVA_OBJECT_DATA in value:
        data = value[NOVA_OBJECT_DATA]
        if type(data) is not dict:
            raise Unsure
        room = max_depth - depth  # a member at depth + 1 has this many levels
        for key, item in value.items():
            if type(item) in LOOKED_AT and key != NOVA_OBJECT_DATA and not as_stdlib(item, room):
                raise Unsure
        if deeper > max_depth:
            raise Unsure
        value = data
        deeper += 1
    return _unwrap_members(value, value.items(), deeper, max_depth)


def _unwrap_members(
    container: Any, members: Iterable[tuple[Any, Any]], depth: int, max_depth: int
) -> Any:
    """``container`` with its ``members`` unwrapped (at ``depth``): itself when none
    changed, else a copy with the changed ones."""
    changed = None
    for key, item in members:
        if type(item) not in _PLAIN:
            new = unwrap_decoded(item, depth, max_depth)
            if new is not item:
                if changed is None:
                    changed = container.copy()
                changed[key] = new
    return container if changed is None else changed


def _optional_str(message: dict[str, Any], key: str) -> str | None:
    value = message.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 255:
        raise BadMessage("bad_field", f"{key} must be a string of at most 255 characters")
    return value


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _safe_raw(message: dict[str, Any]) -> dict[str, Any]:
    """The message without oslo.messaging's packed context, except its ids."""
    return {
        key: value
        for key, value in message.items()
        if not key.startswith(_CONTEXT_PREFIX) or key in _SAFE_CONTEXT
    }


def is_notification(message: dict[str, Any]) -> bool:
    return "event_type" in message and "payload" in message


def parse_notification(
    message: dict[str, Any], *, max_depth: int, payload: dict[str, Any] | None = None
) -> Event:
    """Build an Event from one notification dict (envelope already removed);
    ``payload``: its payload already unwrapped (:func:`unwrap_decoded`)."""
    event_type = message.get("event_type")
    if not isinstance(event_type, str) or not _EVENT_TYPE_RE.match(event_type):
        raise BadMessage("bad_event_type", f"event_type must be a dotted name, got {event_type!r}")
    raw_payload = message.get("payload")
    if not isinstance(raw_payload, dict):
        raise BadMessage("bad_payload", f"{event_type}: payload must be an object")
    versioned = NOVA_OBJECT_DATA in raw_payload
    if payload is None:
        payload = _unwrap(raw_payload, 2, max_depth)

    publisher_id = _optional_str(message, "publisher_id")
    priority = _optional_str(message, "priority")
    timestamp = message.get("timestamp")
    context_project = _str_or_none(message.get("_context_project_id"))

    if versioned:
        instance_id = _str_or_none(payload.get("instance_uuid"))
        if instance_id is None and event_type.startswith("instance."):
            instance_id = _str_or_none(payload.get("uuid"))
        spec = payload.get("request_spec")
        spec_project = spec.get("project_id") if isinstance(spec, dict) else None
        project_id = _str_or_none(payload.get("tenant_id")) or _str_or_none(spec_project)
    else:
        instance_id = _str_or_none(payload.get("instance_id"))
        project_id = _str_or_none(payload.get("tenant_id"))
    host = _str_or_none(payload.get("host"))
    if host is None and publisher_id and ":" in publisher_id:
        host = publisher_id.split(":", 1)[1] or None

    return Event(
        source="nova",
        format="versioned" if versioned else "legacy",
        event_type=event_type,
        payload=payload,
        message_id=_optional_str(message, "message_id"),
        instance_id=instance_id,
        project_id=project_id or context_project,
        host=host,
        timestamp=None if timestamp is None else parse_timestamp(timestamp, field="timestamp"),
        priority=priority.upper() if priority else None,
        publisher_id=publisher_id,
        request_id=_str_or_none(message.get("_context_request_id")),
        raw=_safe_raw(message),
    )
