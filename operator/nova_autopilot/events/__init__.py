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
from nova_autopilot.events.notification import is_notification, parse_notification
from nova_autopilot.events.request import is_request, parse_request
from nova_autopilot.events.wire import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_DEPTH,
    check_depth,
    decode_json,
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
        decoded: Any = (
            dict(message)
            if isinstance(message, Mapping)
            else decode_json(message, max_bytes=max_bytes, max_depth=max_depth)
        )
        decoded = unwrap_envelope(decoded, max_bytes=max_bytes, max_depth=max_depth)
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
