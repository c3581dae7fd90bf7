"""A delivered message: what the handler gets with it, and what becomes of it.

A handler is any callable ``handler(event, delivery) -> None``, or
:class:`Batched` around one that takes the messages at hand together (its
caller commits their decisions at once: a group commit) and says of each
what the single call would have done, returned or raised. Its outcome decides
what happens to the message:

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

Inside the bus a message travels as a :class:`Job`. :func:`receive` makes one
of each kombu message, before any handler runs: nothing raised by the decoder
escapes, so a message that cannot become an Event is a job whose outcome is
already decided (the dead-letter queue). :func:`run_handler` is the one place
where a handler's exception is caught: it never lets one escape, so a bug in a
handler costs one message (which is dead-lettered, not lost) and never the
consuming thread.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Protocol

from nova_autopilot.bus.copies import attempt_of
from nova_autopilot.errors import BadMessage, TemporaryError
from nova_autopilot.events import Event, Source
from nova_autopilot.logs import get_logger

__all__ = [
    "ABANDONED",
    "HANDLED",
    "RETRIES_EXHAUSTED",
    "Abandoned",
    "Batched",
    "DeadLetter",
    "Decoder",
    "Delivery",
    "Handled",
    "Handler",
    "Job",
    "Outcome",
    "RefusalSink",
    "Refused",
    "Retry",
    "classify",
    "handler_error_reason",
    "receive",
    "run_batch",
    "run_handler",
]

log = get_logger("nova_autopilot.bus")

#: Dead-letter reason of a message whose handler kept failing temporarily.
RETRIES_EXHAUSTED: Final = "retries_exhausted"
_MAX_DETAIL = 1000


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


#: Several messages at once: for each, in order, None (handled) or what handling it
#: alone would have raised.
ManyHandler = Callable[[Sequence[tuple[Event, Delivery]]], Sequence[BaseException | None]]


class Batched:
    """A handler that decides the messages at hand together (``many``); called with
    one message, it is a handler like any other."""

    def __init__(self, many: ManyHandler) -> None:
        self.many = many

    def __call__(self, event: Event, delivery: Delivery, /) -> None:
        (failure,) = self.many([(event, delivery)])
        if failure is not None:
            raise failure


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


# --- outcomes ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Handled:
    """The handler returned: acknowledge."""


@dataclass(frozen=True, slots=True)
class Retry:
    """The handler failed temporarily: try again after the next delay."""

    detail: str


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """The message cannot be processed: keep it in the dead-letter queue."""

    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class Abandoned:
    """Not processed (the bus is stopping or the connection was lost): leave
    it unacknowledged, the broker delivers it again."""


Outcome = Handled | Retry | DeadLetter | Abandoned
HANDLED: Final = Handled()
ABANDONED: Final = Abandoned()


def handler_error_reason(exc: BaseException) -> str:
    return f"handler_error: {type(exc).__name__}"


def shorten(text: str) -> str:
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 3] + "..."


def run_handler(handler: Handler, event: Event, delivery: Delivery) -> Outcome:
    """Call ``handler`` and classify what it did."""
    try:
        handler(event, delivery)
    except Exception as exc:  # noqa: BLE001 - classified: a handler bug costs one message
        return classify(exc, event, delivery)
    return HANDLED


def classify(failure: BaseException | None, event: Event, delivery: Delivery) -> Outcome:
    """What becomes of a message whose handling ended so (None: it returned)."""
    if failure is None:
        return HANDLED
    if isinstance(failure, TemporaryError):
        return Retry(shorten(f"{type(failure).__name__}: {failure}"))
    if isinstance(failure, BadMessage):
        return DeadLetter(failure.reason, shorten(failure.detail))
    log.error(
        "intake.handler_failed",
        source=delivery.source,
        message_id=delivery.message_id,
        event_type=event.event_type,
        error=type(failure).__name__,
        exc_info=failure,
    )
    return DeadLetter(
        handler_error_reason(failure), shorten(f"{type(failure).__name__}: {failure}")
    )


def run_batch(handler: Batched, jobs: Sequence[Job]) -> None:
    """Give ``jobs`` (each with its event) to ``handler`` together and set each one's
    outcome; if the call itself fails, each job is handled on its own."""
    items = [(job.event, job.delivery) for job in jobs if job.event is not None]
    try:
        failures = handler.many(items)
        if len(failures) != len(items):
            raise ValueError(f"{len(failures)} outcomes for {len(items)} messages")
    except Exception:  # a bug of the batch: one message at a time then
        log.error("intake.batch_failed", messages=len(items), exc_info=True)
        for job in jobs:
            assert job.event is not None
            job.outcome = run_handler(handler, job.event, job.delivery)
        return
    for job, failure in zip(jobs, failures, strict=True):
        assert job.event is not None
        job.outcome = classify(failure, job.event, job.delivery)


# --- a message on its way through the bus -----------------------------------------------


@dataclass(slots=True)
class Job:
    """One message on its way through the bus."""

    generation: int
    tag: int
    body: bytes
    properties: dict[str, Any]
    delivery: Delivery
    event: Event | None = None
    outcome: Outcome | None = None
    #: How the body came compressed (kombu decompressed it), if it did.
    compression: str | None = None


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
