"""Messages become events.

:func:`parse_message` accepts a message in every form the daemon meets it:

* bytes or text as on the wire, with or without oslo.messaging's
  ``{"oslo.version": "2.0", "oslo.message": "..."}`` envelope;
* a decoded notification dict (versioned with ``nova_object`` payloads, or
  legacy ``compute.instance.*``), as oslo.messaging hands it over;
* an operator request (``docs/requests.md``).

Anything else raises :class:`~nova_autopilot.errors.BadMessage` with a precise
reason; no other exception escapes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nova_autopilot.errors import BadMessage
from nova_autopilot.events.model import MISSING, TOP_LEVEL_FIELDS, Event, Format, Source
from nova_autopilot.events.notification import (
    Unsure,
    is_notification,
    parse_notification,
    unwrap_decoded,
)
from nova_autopilot.events.request import is_request, parse_request
from nova_autopilot.events.wire import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_DEPTH,
    ENVELOPE_MESSAGE_KEY,
    ENVELOPE_VERSION_KEY,
    LOOKED_AT,
    REFUSED,
    SUPPORTED_ENVELOPE_MAJOR,
    as_stdlib,
    check_depth,
    check_size,
    decode_json,
    quick_decode,
    unwrap_envelope,
)

__all__ = [
    "MISSING",
    "TOP_LEVEL_FIELDS",
    "BadMessage",
    "Event",
    "Format",
    "Source",
    "parse_message",
]


def parse_message(
    message: bytes | bytearray | str | Mapping[str, Any],
    *,
    expect: Source | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> Event:
    """Turn one message into an :class:`Event`.

    ``expect`` names the channel the message came from: a request queue only
    accepts requests, the notification listener only notifications.
    """
    try:
        # Text first: a body from the wire is bytes, and an ABC's negative check is costly.
        if not isinstance(message, (bytes, bytearray, str)) and isinstance(message, Mapping):
            outer: Any = dict(message)
        else:
            outer = decode_json(message, max_bytes=max_bytes, max_depth=max_depth)
            if expect != "request":
                event = _enveloped_notification(outer, max_bytes=max_bytes, max_depth=max_depth)
                if event is not None:
                    return event
        decoded = unwrap_envelope(outer, max_bytes=max_bytes, max_depth=max_depth)
        if not isinstance(decoded, dict):
            raise BadMessage(
                "not_an_object", f"message must be a JSON object, got {type(decoded).__name__}"
            )
        if is_notification(decoded):
            if expect == "request":
                raise BadMessage("unexpected_source", "a notification arrived on the request queue")
            return parse_notification(decoded, max_depth=max_depth)
        if is_request(decoded):
            if expect == "nova":
                raise BadMessage("unexpected_source", "a request arrived as a Nova notification")
            if decoded is outer and isinstance(message, Mapping):  # not decoded here: unchecked
                check_depth(decoded, max_depth=max_depth)
            return parse_request(decoded)
        keys = ", ".join(sorted(str(k) for k in decoded)[:8]) or "none"
        raise BadMessage(
            "unknown_shape",
            f"neither a notification (event_type + payload) nor a request (type); keys: {keys}",
        )
    except BadMessage:
        raise
    except (RecursionError, MemoryError):
        raise BadMessage("too_deep", "message is too deeply nested or too large") from None
    except Exception as exc:  # noqa: BLE001 - the contract: only BadMessage escapes
        raise BadMessage("unparseable", f"{type(exc).__name__}: {exc}") from None


def _enveloped_notification(outer: Any, *, max_bytes: int, max_depth: int) -> Event | None:
    """The Event of a notification in oslo.messaging's envelope (``outer``, decoded),
    its inner text decoded once by orjson and checked while its payload is
    unwrapped; None for any other message, or one this reading cannot vouch for
    (see :func:`~.wire.decode_json` and :func:`~.notification.unwrap_decoded`):
    :func:`parse_message` then reads it the careful way, to the same Event or
    refusal."""
    if type(outer) is not dict or ENVELOPE_MESSAGE_KEY not in outer:
        return None
    version = outer.get(ENVELOPE_VERSION_KEY)
    text = outer[ENVELOPE_MESSAGE_KEY]
    major = version.split(".", 1)[0] if type(version) is str else None
    if major != SUPPORTED_ENVELOPE_MAJOR or type(text) is not str:
        return None
    check_size(text, max_bytes=max_bytes)
    inner = quick_decode(text)
    if inner is REFUSED or type(inner) is not dict or not is_notification(inner):
        return None
    payload = inner["payload"]
    if type(payload) is not dict or max_depth < 2:
        return None
    room = max_depth - 1  # a member of the inner message is at depth 2
    for key, item in inner.items():
        if type(item) in LOOKED_AT and key != "payload" and not as_stdlib(item, room):
            return None
    try:
        unwrapped = unwrap_decoded(payload, 2, max_depth)
    except (Unsure, RecursionError):
        return None
    return parse_notification(inner, max_depth=max_depth, payload=unwrapped)
