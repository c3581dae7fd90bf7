"""Refused requests go to the journal: when, why, which key, what they said.

The bus tells :class:`RefusalRecorder` of every request it dead-letters (after
the copy is in the dead-letter queue). The body is kept decoded when it is
JSON within the intake's limits, else as (at most 4 KiB of) text; either way it
passes through the journal's redaction before it is stored.
"""

from __future__ import annotations

from typing import Any, Protocol

from nova_autopilot.bus import Refused
from nova_autopilot.errors import BadMessage
from nova_autopilot.events.wire import DEFAULT_MAX_BYTES, DEFAULT_MAX_DEPTH, decode_json
from nova_autopilot.journal import NewRefusal
from nova_autopilot.security.signing import key_id_of

__all__ = ["RefusalRecorder"]

#: How much of a body that is not JSON is kept.
TEXT_KEPT = 4096


class Recorder(Protocol):
    def record_refusal(self, refusal: NewRefusal) -> None: ...


def _body(data: bytes, *, max_bytes: int, max_depth: int) -> Any:
    try:
        return decode_json(data, max_bytes=max_bytes, max_depth=max_depth)
    except BadMessage:
        text = data[:TEXT_KEPT].decode("utf-8", "replace")
        return {"text": text, "bytes": len(data)}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


class RefusalRecorder:
    """A :data:`~nova_autopilot.bus.RefusalSink` that writes to the journal."""

    def __init__(
        self,
        journal: Recorder,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_depth: int = DEFAULT_MAX_DEPTH,
    ) -> None:
        self._journal = journal
        self._max_bytes = max_bytes
        self._max_depth = max_depth

    def __call__(self, refused: Refused) -> None:
        body = _body(refused.body, max_bytes=self._max_bytes, max_depth=self._max_depth)
        fields = body if isinstance(body, dict) and "type" in body else {}
        event = refused.event
        self._journal.record_refusal(
            NewRefusal(
                at=refused.at,
                source=refused.source,
                queue=refused.queue,
                reason=refused.reason,
                detail=refused.detail,
                body=body,
                request_type=event.event_type if event else _text(fields.get("type")),
                request_id=event.request_id if event else _text(fields.get("id")),
                key_id=key_id_of(refused.headers),
                message_id=refused.message_id,
                correlation_id=refused.correlation_id,
            )
        )
