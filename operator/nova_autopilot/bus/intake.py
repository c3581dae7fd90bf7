# mypy: disable-error-code="no-untyped-call"
"""One intake: a queue consumed on its own connection and thread.

The consuming thread owns the connection (kombu connections are not
thread-safe). Each turn of its loop it reads a batch of deliveries (waiting
for the first, then taking what is already there), parses them, hands them to
the worker threads (the events of one server to one thread), waits a few
milliseconds for their outcomes, and settles them (:mod:`.settlement`).
Waiting for the handlers rather than reading on while they run keeps the two
from contending for the GIL, which is what makes a threaded Python consumer
slow.

Nothing is acknowledged that was not settled: when the connection is lost,
every unsettled message is delivered again by the broker (``redelivered``)
and outcomes that arrive for the lost channel are dropped (counted as
abandoned). The thread reconnects with backoff, declares its topology again
and resumes; it never exits until :meth:`Intake.stop`.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from typing import Any

import amqp.exceptions
from kombu.connection import Connection
from kombu.messaging import Consumer, Producer

from nova_autopilot.bus.connection import Backoff, BrokerSettings, broker_error, connect
from nova_autopilot.bus.copies import RetryPlan
from nova_autopilot.bus.delivery import Decoder, Handler, Job, RefusalSink, receive
from nova_autopilot.bus.settlement import Counters, Settlement
from nova_autopilot.bus.topology import IntakeTopology
from nova_autopilot.bus.workers import Workers
from nova_autopilot.logs import get_logger

__all__ = ["Intake", "IntakeHealth"]

log = get_logger("nova_autopilot.bus")

_MIN_WAIT = 0.0005


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True, slots=True)
class IntakeHealth:
    """What readiness checks and the watchdog look at."""

    name: str
    source: str
    queue: str
    broker: str
    alive: bool
    attached: bool
    connected_since: datetime | None
    reconnects: int
    last_error: str | None
    in_flight: int
    #: Seconds since the oldest message still in a handler (or waiting for
    #: one) was received: a stuck handler shows here.
    oldest_in_flight_s: float | None
    #: Seconds since the consumer lost (or had not yet got) its queue; None while
    #: attached, or when not known.
    detached_for_s: float | None = None
    #: Detached, and its thread keeps trying to get the queue back: each attempt and
    #: each wait between two came when the last one said (a broker outage, which a
    #: restart of the daemon cannot end), not a thread stuck.
    reconnecting: bool = False


class Intake:
    """Consumes ``topology.queue`` from ``broker`` and calls ``handler``."""

    def __init__(
        self,
        *,
        name: str,
        topology: IntakeTopology,
        broker: BrokerSettings,
        decode: Decoder,
        handler: Handler,
        threads: int,
        retry: RetryPlan,
        counters: Counters | None = None,
        on_dead_letter: RefusalSink | None = None,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = _utcnow,
        liveness: float = 30.0,
        publish_timeout: float = 10.0,
        patience: float = 0.005,
    ) -> None:
        self.name = name
        self.counters = counters or Counters()
        self._topology = topology
        self._broker = broker
        self._decode = decode
        self._clock = clock
        self._now = now
        self._liveness = liveness
        self._patience = patience
        self._source = topology.source
        self._queue_name = topology.queue_name
        self._batch_max = max(1, broker.prefetch // 2)
        self._poll = broker.poll_interval
        self._settlement = Settlement(
            topology=topology,
            retry=retry,
            counters=self.counters,
            clock=clock,
            now=now,
            in_memory=broker.in_memory,
            publish_timeout=None if broker.in_memory else publish_timeout,
            on_dead_letter=on_dead_letter,
        )
        self._completions: queue.SimpleQueue[list[Job]] = queue.SimpleQueue()
        self._workers = Workers(
            count=threads,
            handler=handler,
            done=self._completions.put,
            skip=self._skip,
            name=f"{name}-worker",
        )
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._stopping = threading.Event()
        self._ready = threading.Event()
        self._stop_deadline = 0.0
        self._started = False
        self._stopped_cleanly = False
        # Owned by the consuming thread (others only read them).
        self._conn: Connection | None = None
        self._drain: Callable[..., Any] | None = None
        self._channel: Any = None
        self._attached = False
        self._detached_at = clock()
        self._closing = False
        self._submitted = 0
        self._completed = 0
        self._batch: list[tuple[str, Job]] = []
        self._failed: list[Job] = []
        #: When the messages of this turn's read were received (taken at the first).
        self._read_at: datetime | None = None
        self._oldest: float | None = None
        self._waits = 0
        self._last_pump = clock()
        # When the thread, detached, is due to turn again at the latest: the end of its
        # connection attempt, or of its wait before the next one.
        self._turn_due = clock() + liveness
        self._last_heartbeat = clock()
        self._reconnects = 0
        self._connected_since: datetime | None = None
        self._last_error: str | None = None

    # --- the interface -----------------------------------------------------------------

    def start(self) -> None:
        if self._started:
            raise RuntimeError(f"intake {self.name} was already started")
        self._started = True
        self._last_pump = self._clock()
        self._workers.start()
        self._thread.start()

    def wait_ready(self, timeout: float) -> bool:
        """Wait until the consumer is attached to its queue (True) or ``timeout``."""
        return self._ready.wait(timeout)

    def begin_stop(self, timeout: float) -> None:
        """Ask the intake to stop within ``timeout`` seconds; returns at once."""
        if not self._stopping.is_set():
            self._stop_deadline = self._clock() + max(timeout, 0.0)
            self._stopping.set()

    def stop(self, timeout: float) -> bool:
        """Stop taking messages, let handler calls in progress finish (up to
        ``timeout`` seconds) and close. True when no handler call was cut short;
        what was not handled stays with the broker, which delivers it again."""
        if not self._started:
            return True
        self.begin_stop(timeout)
        if self._thread.is_alive():
            self._thread.join(max(self._stop_deadline - self._clock(), 0.0) + 5.0)
        return self._stopped_cleanly and not self._thread.is_alive()

    def alive(self) -> bool:
        """True when the consumer is attached to its queue and its thread is
        turning (not stuck, not reconnecting, not stopped)."""
        return (
            self._attached
            and self._thread.is_alive()
            and self._workers.alive()
            and self._clock() - self._last_pump < self._liveness
        )

    def reconnecting(self) -> bool:
        """True when the consumer is detached and its thread keeps trying to attach:
        it is connecting, or waiting before the next attempt, within the time the
        attempt or the wait takes (not stuck, not stopped)."""
        return (
            not self._attached
            and not self._stopping.is_set()
            and self._thread.is_alive()
            and self._clock() < self._turn_due
        )

    def health(self) -> IntakeHealth:
        oldest = self._oldest if self._attached else None
        return IntakeHealth(
            name=self.name,
            source=self._source,
            queue=self._queue_name,
            broker=self._broker.display,
            alive=self.alive(),
            attached=self._attached,
            connected_since=self._connected_since,
            reconnects=self._reconnects,
            last_error=self._last_error,
            in_flight=self._submitted - self._completed,
            oldest_in_flight_s=None if oldest is None else round(self._clock() - oldest, 3),
            detached_for_s=None if self._attached else round(self._clock() - self._detached_at, 3),
            reconnecting=self.reconnecting(),
        )

    # --- the consuming thread ----------------------------------------------------------

    def _run(self) -> None:
        backoff = Backoff(
            interval=self._broker.retry_interval,
            step=self._broker.retry_backoff,
            maximum=self._broker.retry_max,
        )
        while not self._stopping.is_set():
            # An attempt: the connection (each host of a failover list in turn, each
            # within the connect timeout), then the queues declared.
            attempt_s = self._broker.connect_timeout * max(1, len(self._broker.urls))
            self._turn_due = self._clock() + attempt_s + self._liveness
            try:
                self._session(backoff)
            except Exception as exc:  # noqa: BLE001 - the thread must outlive any failure
                self._lost(exc)
            finally:
                self._close()
            if self._stopping.is_set():
                break
            delay = backoff.next_delay()
            log.warning(
                "bus.reconnecting",
                intake=self.name,
                broker=self._broker.display,
                retry_in_s=round(delay, 2),
                failures=backoff.failures,
            )
            self._turn_due = self._clock() + delay + self._liveness
            self._stopping.wait(delay)
        self._stopped_cleanly = self._workers.stop(max(0.0, self._stop_deadline - self._clock()))
        self._abandon_leftovers()
        log.info(
            "bus.stopped",
            intake=self.name,
            clean=self._stopped_cleanly,
            **self.counters.snapshot().as_dict(),
        )

    def _session(self, backoff: Backoff) -> None:
        conn = self._conn = connect(self._broker)
        conn.connect()
        self._channel = conn.channel()
        if hasattr(self._channel, "auto_decode"):  # py-amqp: keep bodies as the bytes sent
            self._channel.auto_decode = False
        self._settlement.attach(self._channel, Producer(conn.channel()))
        self._topology.declare(self._channel, with_delay_queues=not self._broker.in_memory)
        consumer = Consumer(
            self._channel,
            queues=[self._topology.queue],
            on_message=self._on_message,
            # A body kombu cannot decompress: dead-lettered with the reason like
            # any other bad message (without this kombu raises, and the intake
            # would reconnect and meet it again, forever).
            on_decode_error=lambda message, exc: self._on_message(message),
            auto_declare=False,
            tag_prefix=f"{self.name}-",
        )
        consumer.qos(prefetch_count=self._broker.prefetch)
        consumer.consume()
        self._drain = partial(conn.transport.drain_events, conn.connection)
        # Turning from now on: the last turn before the connection was lost may be
        # minutes old (a broker outage), and the next one is still to come.
        self._last_pump = self._clock()
        self._attached = True
        self._connected_since = self._now()
        event = "bus.reconnected" if self._reconnects else "bus.connected"
        log.info(event, intake=self.name, queue=self._queue_name, broker=self._broker.display)
        backoff.reset()
        self._ready.set()
        while not self._stopping.is_set():
            self._pump()
        self._finish(consumer)

    def _pump(self) -> None:
        """One turn: read a batch, hand it to the workers, settle what they finished."""
        conn = self._conn
        assert conn is not None
        poll = self._poll
        in_flight = self._submitted > self._completed
        self._read(min(_MIN_WAIT * (2**self._waits), poll) if in_flight else poll)
        handed = 0
        if self._batch:
            handed = self._workers.submit(self._batch)
            self._batch = []
        settled = self._collect(expect=handed)
        self._waits = 0 if settled or not in_flight else min(self._waits + 1, 16)
        self._oldest = self._settlement.oldest()
        now = self._clock()
        if now - self._last_heartbeat >= poll:
            conn.heartbeat_check()
            self._last_heartbeat = now
        self._settlement.release_delayed()
        self._last_pump = now

    def _read(self, timeout: float) -> None:
        """Wait up to ``timeout`` for a delivery, then take whatever else is
        already there, up to a batch."""
        drain = self._drain
        assert drain is not None
        self._read_at = None
        try:
            drain(timeout=timeout)
            while len(self._batch) + len(self._failed) < self._batch_max:
                drain(timeout=0)
        except TimeoutError:
            pass

    def _on_message(self, message: Any) -> None:
        self.counters.received(redelivered=bool(message.delivery_info.get("redelivered")))
        if self._closing:  # stays unacknowledged: the broker delivers it again
            self.counters.abandoned()
            return
        received_at = self._read_at
        if received_at is None:  # the read's first: the others come within its turn
            received_at = self._read_at = self._now()
        job = receive(
            message,
            decode=self._decode,
            source=self._source,
            queue=self._queue_name,
            generation=self._settlement.generation,
            received_at=received_at,
        )
        self._settlement.received(job.tag)
        self._submitted += 1
        if job.event is None:
            self._failed.append(job)
        else:
            key = job.event.instance_id or job.delivery.message_id or str(job.tag)
            self._batch.append((key, job))

    def _skip(self, job: Job) -> bool:
        """Asked by a worker before each call: is the call still useful?"""
        return self._stopping.is_set() or job.generation != self._settlement.generation

    def _collect(self, *, expect: int) -> int:
        """Settle the outcomes reported so far, waiting up to ``patience`` for
        ``expect`` lists just handed to the workers; returns how many jobs.

        They are settled together, so that their acknowledgements go together:
        one ``multiple`` ack for the run of deliveries they complete, where
        settling each list as it came would acknowledge one by one the messages
        of a list finished before one holding older deliveries."""
        jobs, self._failed = self._failed, []
        deadline = self._clock() + self._patience
        received = 0
        while True:
            try:
                if received < expect:
                    remaining = deadline - self._clock()
                    if remaining <= 0:
                        break
                    jobs.extend(self._completions.get(timeout=remaining))
                else:
                    jobs.extend(self._completions.get_nowait())
            except queue.Empty:
                break
            received += 1
        if jobs:
            self._completed += len(jobs)
            self._settlement.settle(jobs)
        return len(jobs)

    # --- losing the connection, stopping -----------------------------------------------

    def _lost(self, exc: BaseException) -> None:
        was_attached = self._attached
        if was_attached:
            self._detached_at = self._clock()
        self._attached = False
        self._settlement.detach()
        self._oldest = None
        unsent = len(self._batch) + len(self._failed)
        self._batch, self._failed = [], []
        if unsent:  # read but never handed over: the broker delivers them again
            self._completed += unsent
            self.counters.abandoned(unsent)
        self._last_error = (
            str(broker_error(self._broker, exc))
            if isinstance(exc, amqp.exceptions.PreconditionFailed)  # a queue to delete
            else f"{type(exc).__name__}: {exc}"
        )
        if was_attached:
            self._reconnects += 1
            log.warning(
                "bus.connection_lost",
                intake=self.name,
                broker=self._broker.display,
                error=self._last_error,
                in_flight=self._submitted - self._completed,
            )
        else:
            log.warning(
                "bus.connect_failed",
                intake=self.name,
                broker=self._broker.display,
                error=self._last_error,
            )

    def _finish(self, consumer: Consumer) -> None:
        """Stop consuming; settle what the handlers finish before the deadline."""
        self._closing = True
        log.info("bus.stopping", intake=self.name, in_flight=self._submitted - self._completed)
        consumer.cancel()
        self._attached = False
        while self._submitted > self._completed and self._clock() < self._stop_deadline:
            self._pump()
        self._collect(expect=0)
        self._settlement.release_delayed(everything=True)  # in memory: retries back now
        if self._broker.in_memory:  # the in-memory broker drops unacked messages on close
            self._channel.basic_recover(requeue=True)

    def _close(self) -> None:
        self._attached = False
        self._drain = None
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            if self._stopping.is_set():
                conn.release()
            else:
                conn.collect()
        except Exception as exc:  # noqa: BLE001 - closing a broken connection may fail
            log.debug("bus.close_failed", intake=self.name, error=str(exc))
            conn.collect()

    def _abandon_leftovers(self) -> None:
        self._batch, self._failed = [], []
        while True:
            try:
                self._completions.get_nowait()
            except queue.Empty:
                break
        # Jobs still in a handler when the stop timed out: their outcome is never
        # settled, the broker has them again.
        unsettled = self._submitted - self._completed
        self._completed = self._submitted
        if unsettled:
            self.counters.abandoned(unsettled)
