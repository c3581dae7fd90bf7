# mypy: disable-error-code="no-untyped-call"
"""Settling outcomes: acknowledge, retry later, or dead-letter; never lose one.

Used only by the consuming thread of an intake, on the channel the messages
came from. A failed message is first published (persistent, confirmed by the
broker) to its delay or dead-letter queue (:mod:`.copies`) and only then
acknowledged, so a crash between the two leaves a duplicate, never a loss.

Acknowledgements follow the delivery order: the settled prefix is
acknowledged with one ``multiple`` ack, and a message settled out of order
(its predecessor is still in a handler) on its own, so a slow handler never
holds back the others' acks or fills the prefetch window.

Every message received ends in exactly one of: handled (acknowledged after the
handler returned), retried (sent to a delay queue), dead-lettered (by reason),
or abandoned (its outcome was not settled because the connection was lost or
the bus stopped: the broker delivers it again). Until then it is in flight.
So ``received == handled + retried + dead_lettered + abandoned + in_flight``
once the dust settles, and nothing is ever dropped without a count
(:class:`Counters`, for the metrics layer).
"""

from __future__ import annotations

import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from kombu.compression import compress
from kombu.messaging import Producer

from nova_autopilot.bus.copies import (
    LocalDelayer,
    RetryPlan,
    dead_letter_headers,
    kept_properties,
    retry_headers,
)
from nova_autopilot.bus.delivery import (
    RETRIES_EXHAUSTED,
    Abandoned,
    DeadLetter,
    Handled,
    Job,
    RefusalSink,
    Refused,
    Retry,
)
from nova_autopilot.bus.topology import IntakeTopology
from nova_autopilot.logs import get_logger

__all__ = ["UNKNOWN_TYPE", "CounterSnapshot", "Counters", "Settlement"]

log = get_logger("nova_autopilot.bus")
_SETTLED = -1.0

#: The event type counted for a message that did not become an event.
UNKNOWN_TYPE: Final = "unknown"


def _wire_body(job: Job) -> bytes:
    """The body as it travels: compressed again if it came compressed (kombu
    hands bodies over decompressed), so a copy reads exactly as the original."""
    if job.compression is None:
        return job.body
    return bytes(compress(job.body, job.compression)[0])


class Settlement:
    """The outstanding deliveries of one channel and what becomes of them."""

    def __init__(
        self,
        *,
        topology: IntakeTopology,
        retry: RetryPlan,
        counters: Counters,
        clock: Callable[[], float],
        now: Callable[[], datetime],
        in_memory: bool,
        publish_timeout: float | None,
        on_dead_letter: RefusalSink | None = None,
    ) -> None:
        self._topology = topology
        self._on_dead_letter = on_dead_letter
        self._retry = retry
        self._counters = counters
        self._clock = clock
        self._now = now
        self._in_memory = in_memory
        self._publish_timeout = publish_timeout
        self._source = topology.source
        self._queue = topology.queue_name
        #: In-process delays where the broker has no message TTL.
        self.delayer = LocalDelayer(clock=clock) if in_memory else None
        #: Delivery tag -> when it was received (clock), or _SETTLED; in delivery order.
        self._outstanding: OrderedDict[int, float] = OrderedDict()
        self._channel: Any = None
        self._producer: Producer | None = None
        self.generation = 0

    def attach(self, channel: Any, producer: Producer) -> None:
        """A new session: deliveries come on ``channel``, copies go out by ``producer``."""
        self._channel, self._producer = channel, producer

    def detach(self) -> None:
        """The channel is gone: its delivery tags mean nothing any more, and
        outcomes that arrive for them are abandoned (the broker redelivers)."""
        self.generation += 1
        self._outstanding.clear()
        self._channel = self._producer = None

    def received(self, tag: int) -> None:
        self._outstanding[tag] = self._clock()

    def oldest(self) -> float | None:
        """When the oldest unsettled delivery was received (clock), if any."""
        return next(iter(self._outstanding.values()), None)

    def settle(self, jobs: Sequence[Job]) -> None:
        """Settle each job by its outcome; then acknowledge them together.

        If publishing a copy fails (the connection is going), the jobs not yet
        settled are counted as abandoned and the error propagates: nothing of
        this batch is acknowledged, the broker delivers it all again."""
        acks: list[int] = []
        handled = 0
        try:
            for index, job in enumerate(jobs):
                try:
                    outcome = job.outcome
                    if job.generation != self.generation or isinstance(outcome, Abandoned):
                        self._counters.abandoned()
                        continue
                    if isinstance(outcome, Handled):
                        handled += 1
                    elif isinstance(outcome, Retry):
                        self._retry_later(job, outcome)
                    elif isinstance(outcome, DeadLetter):
                        self._dead_letter(job, outcome)
                except BaseException:
                    self._counters.abandoned(len(jobs) - index)
                    raise
                acks.append(job.tag)
        finally:
            if handled:
                self._counters.handled(handled)
        if acks:
            self._ack(acks)

    def publish(
        self, body: bytes, exchange: str, routing_key: str, properties: Mapping[str, Any]
    ) -> None:
        """Publish a copy: persistent, mandatory (a copy no queue takes comes back
        as an error instead of vanishing: the intake then reconnects and declares
        its queues again) and confirmed by the broker before this returns."""
        assert self._producer is not None
        options = dict(properties)
        headers = options.pop("headers", None)
        content_type = options.pop("content_type", "application/octet-stream")
        content_encoding = options.pop("content_encoding", "binary")
        self._producer.publish(
            body,
            exchange=exchange,
            routing_key=routing_key,
            headers=headers,
            content_type=content_type,
            content_encoding=content_encoding,
            delivery_mode=2,
            mandatory=True,
            retry=False,
            confirm_timeout=self._publish_timeout,
            **options,
        )

    def release_delayed(self, *, everything: bool = False) -> None:
        """In memory: put the retries that are due (or all of them) back in the queue."""
        if self.delayer is None:
            return
        ready = self.delayer.drain() if everything else self.delayer.due()
        for body, properties in ready:
            self.publish(body, "", self._queue, properties)

    def _ack(self, tags: list[int]) -> None:
        channel, outstanding = self._channel, self._outstanding
        for tag in tags:
            outstanding[tag] = _SETTLED
        if not self._in_memory:  # the in-memory broker has no multiple acks
            last = None
            while outstanding:
                first = next(iter(outstanding))
                if outstanding[first] != _SETTLED:
                    break
                outstanding.popitem(last=False)
                last = first
            if last is not None:
                channel.basic_ack(last, multiple=True)
        for tag in tags:
            if outstanding.pop(tag, None) is not None:
                channel.basic_ack(tag)

    def _retry_later(self, job: Job, outcome: Retry) -> None:
        attempt = job.delivery.attempt
        delay = self._retry.delay_after(attempt)
        if delay is None:
            self._dead_letter(job, DeadLetter(RETRIES_EXHAUSTED, outcome.detail))
            return
        headers = retry_headers(
            job.delivery.headers,
            next_attempt=attempt + 1,
            last_error=outcome.detail,
            exchange=job.delivery.exchange,
            routing_key=job.delivery.routing_key,
        )
        properties = {**kept_properties(job.properties), "headers": headers}
        if self.delayer is not None:
            self.delayer.add(delay, _wire_body(job), properties)
        else:
            self.publish(_wire_body(job), "", self._topology.delay_queue(delay), properties)
        self._counters.retried()
        log.info(
            "intake.retry_scheduled",
            source=self._source,
            message_id=job.delivery.message_id,
            attempt=attempt,
            delay_s=delay,
            error=outcome.detail,
        )

    def _dead_letter(self, job: Job, outcome: DeadLetter) -> None:
        exchange, routing_key = self._topology.dead_letter_route(outcome.reason)
        attempts = job.delivery.attempt if job.event is not None else 0
        headers = dead_letter_headers(
            job.delivery.headers,
            reason=outcome.reason,
            detail=outcome.detail,
            source=self._source,
            failed_at=self._now(),
            attempts=attempts,
            queue=self._queue,
            exchange=job.delivery.exchange,
            routing_key=job.delivery.routing_key,
        )
        properties = {**kept_properties(job.properties), "headers": headers}
        self.publish(_wire_body(job), exchange, routing_key, properties)
        self._counters.dead_lettered(
            outcome.reason, job.event.event_type if job.event is not None else None
        )
        log.warning(
            "intake.dead_lettered",
            source=self._source,
            reason=outcome.reason,
            detail=outcome.detail,
            message_id=job.delivery.message_id,
            attempts=attempts,
            dead_letter_exchange=exchange,
            routing_key=routing_key,
        )
        if self._on_dead_letter is not None:
            self._tell(job, outcome)

    def _tell(self, job: Job, outcome: DeadLetter) -> None:
        """Tell the sink (the journal's record of refusals); its failure is logged:
        the copy is already in the dead-letter queue."""
        assert self._on_dead_letter is not None
        refused = Refused(
            source=self._source,
            queue=self._queue,
            reason=outcome.reason,
            detail=outcome.detail,
            body=job.body,
            headers=job.delivery.headers,
            event=job.event,
            message_id=job.delivery.message_id,
            correlation_id=job.delivery.correlation_id,
            at=self._now(),
            reply_to=job.delivery.reply_to,
        )
        try:
            self._on_dead_letter(refused)
        except Exception as exc:  # noqa: BLE001 - recording must not stop the intake
            log.error(
                "intake.refusal_not_recorded",
                source=self._source,
                reason=outcome.reason,
                message_id=job.delivery.message_id,
                error=f"{type(exc).__name__}: {exc}",
            )


# --- counts -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CounterSnapshot:
    """The counters of one intake at one moment."""

    received: int = 0
    redelivered: int = 0
    handled: int = 0
    retried: int = 0
    abandoned: int = 0
    dead_lettered: dict[str, int] = field(default_factory=dict)
    #: The same by (reason, event type); the type is ``unknown`` for a message that
    #: did not become an event (not parsed, or not verified).
    dead_lettered_types: dict[tuple[str, str], int] = field(default_factory=dict)

    @property
    def dead_lettered_total(self) -> int:
        return sum(self.dead_lettered.values())

    @property
    def settled(self) -> int:
        return self.handled + self.retried + self.dead_lettered_total + self.abandoned

    def as_dict(self) -> dict[str, Any]:
        return {
            "received": self.received,
            "redelivered": self.redelivered,
            "handled": self.handled,
            "retried": self.retried,
            "abandoned": self.abandoned,
            "dead_lettered": dict(self.dead_lettered),
        }


class Counters:
    """Thread-safe counters of one intake (the notification or the request queue)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._received = 0
        self._redelivered = 0
        self._handled = 0
        self._retried = 0
        self._abandoned = 0
        self._dead: Counter[str] = Counter()
        self._dead_types: Counter[tuple[str, str]] = Counter()

    def received(self, *, redelivered: bool) -> None:
        with self._lock:
            self._received += 1
            if redelivered:
                self._redelivered += 1

    def handled(self, count: int = 1) -> None:
        with self._lock:
            self._handled += count

    def retried(self) -> None:
        with self._lock:
            self._retried += 1

    def abandoned(self, count: int = 1) -> None:
        with self._lock:
            self._abandoned += count

    def dead_lettered(self, reason: str, event_type: str | None = None) -> None:
        with self._lock:
            self._dead[reason] += 1
            self._dead_types[reason, event_type or UNKNOWN_TYPE] += 1

    def snapshot(self) -> CounterSnapshot:
        with self._lock:
            return CounterSnapshot(
                received=self._received,
                redelivered=self._redelivered,
                handled=self._handled,
                retried=self._retried,
                abandoned=self._abandoned,
                dead_lettered=dict(self._dead),
                dead_lettered_types=dict(self._dead_types),
            )
