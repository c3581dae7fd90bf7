"""A delivery becomes a job: its body parsed into an Event, or the reason why not.

Called by the consuming thread for each message, before any handler runs.
Nothing raised by the decoder escapes: a message that cannot become an
Event is a job whose outcome is already decided (the dead-letter queue).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from nova_autopilot.bus.deadletter import attempt_of
from nova_autopilot.bus.delivery import Delivery
from nova_autopilot.bus.outcome import DeadLetter, shorten
from nova_autopilot.bus.workers import Job
from nova_autopilot.errors import BadMessage
from nova_autopilot.events import Event, Source

__all__ = ["Decoder", "receive"]

#: Turns a body (and its headers) into an Event, or raises BadMessage.
Decoder = Callable[[bytes, Mapping[str, Any]], Event]


def receive(
    message: Any,
    *,
    decode: Decoder,
    source: Source,
    queue: str,
    generation: int,
    received_at: datetime,
) -> Job:
    """The job of one kombu message (``message.body`` already decompressed by
    kombu when it came with a ``compression`` header; copies compress it again)."""
    info = message.delivery_info
    body = message.body
    if isinstance(body, str):
        body = body.encode("utf-8")
    headers = message.headers or {}
    properties = message.properties
    event: Event | None = None
    failure: DeadLetter | None = None
    try:
        if message.errors:
            error = message.errors[0][1]
            raise BadMessage("bad_compression", f"{type(error).__name__}: {error}")
        event = decode(body, headers)
    except BadMessage as exc:
        failure = DeadLetter(exc.reason, shorten(exc.detail))
    except Exception as exc:  # noqa: BLE001 - a decoder must not stop the intake
        failure = DeadLetter("unparseable", shorten(f"{type(exc).__name__}: {exc}"))
    delivery = Delivery(
        source=source,
        queue=queue,
        message_id=properties.get("message_id") or (event.message_id if event else None),
        redelivered=bool(info.get("redelivered", False)),
        attempt=attempt_of(headers) if headers else 1,
        correlation_id=properties.get("correlation_id"),
        reply_to=properties.get("reply_to"),
        headers=headers,
        received_at=received_at,
        exchange=info.get("exchange") or "",
        routing_key=info.get("routing_key") or "",
    )
    job = Job(generation, message.delivery_tag, body, properties, delivery, event, failure)
    if not message.errors:
        job.compression = headers.get("compression")
    return job
