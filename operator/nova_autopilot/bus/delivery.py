"""What the bus hands to a handler with each event, and what it expects back.

A handler is any callable ``handler(event, delivery) -> None``. Its outcome
decides what happens to the message:

* it returns: the message is acknowledged;
* it raises :class:`~nova_autopilot.errors.TemporaryError`: the message comes
  back after the next delay of ``[notifications] retry_delays``, and is
  dead-lettered with reason ``retries_exhausted`` after the last one;
* it raises :class:`~nova_autopilot.errors.BadMessage`: the message is
  dead-lettered with the error's own reason (``unknown_type``...);
* it raises anything else: that is a bug; the message is dead-lettered with
  reason ``handler_error: <ExceptionType>`` and the bus keeps consuming.

Messages are delivered at least once: the same message can reach the handler
twice (after a lost connection, a stop in the middle of a call, or a delayed
retry). The handler recognises it by ``event.dedupe_key`` /
``delivery.message_id``, and tells such a copy from one published anew by
``delivery.repeated``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from nova_autopilot.events import Event, Source

__all__ = [
    "Delivery",
    "Handler",
    "RefusalSink",
    "Refused",
    "RequestCheck",
    "Verifier",
    "accept_all",
]


@dataclass(frozen=True, slots=True)
class Delivery:
    """How one message reached the daemon.

    ``attempt`` counts deliveries caused by the handler's temporary failures
    (1 the first time, 2 after the first delay...); ``redelivered`` is the
    broker's flag for a message that was delivered before but never
    acknowledged (a lost connection, a stop). ``headers`` are the message's
    AMQP headers as received (read-only).
    """

    source: Source
    queue: str
    message_id: str | None
    redelivered: bool
    attempt: int
    correlation_id: str | None
    reply_to: str | None
    headers: Mapping[str, Any]
    received_at: datetime
    exchange: str = ""
    routing_key: str = ""

    @property
    def repeated(self) -> bool:
        """Whether the bus delivers this copy again rather than someone having
        published it anew: the broker's redelivery of an unacknowledged message,
        or the bus's own delayed retry (it comes back from its delay queue
        through the default exchange, which only the daemon may publish to, with
        an attempt number above 1). An attempt header on a message published to
        any other exchange proves nothing: anyone can write headers."""
        return self.redelivered or (self.attempt > 1 and self.exchange == "")


class Handler(Protocol):
    """Receives every event that could be parsed; see the module docstring for
    what its outcome means. It may be called from several threads at once."""

    def __call__(self, event: Event, delivery: Delivery, /) -> None: ...


#: Checks a request before it is parsed: ``verify(body, headers)`` returns
#: the id of the key that vouches for it (None when nothing was checked), or
#: raises ``BadMessage("unsigned", ...)`` / ``BadMessage("bad_signature", ...)``
#: (the message is then dead-lettered).
Verifier = Callable[[bytes, Mapping[str, Any]], str | None]

#: Checks a parsed, verified request (may its key send it?): returns, or raises
#: ``BadMessage("not_authorized", ...)`` (the message is then dead-lettered).
RequestCheck = Callable[[Event], None]


def accept_all(body: bytes, headers: Mapping[str, Any]) -> None:
    """The default :data:`Verifier`: every request is accepted, signed by nobody."""
    del body, headers


@dataclass(frozen=True, slots=True)
class Refused:
    """A message the bus dead-lettered, as told to a :data:`RefusalSink`.

    ``event`` is the parsed message when it could be parsed (a refusal by the
    handler, after the request's signature was verified), else None; ``body``
    and ``headers`` are as received."""

    source: Source
    queue: str
    reason: str
    detail: str
    body: bytes
    headers: Mapping[str, Any]
    event: Event | None
    message_id: str | None
    correlation_id: str | None
    at: datetime
    reply_to: str | None = None


#: Told of every message dead-lettered, after its copy is in the dead-letter
#: queue (to record it); what it raises is logged, never changes the outcome.
RefusalSink = Callable[[Refused], None]
