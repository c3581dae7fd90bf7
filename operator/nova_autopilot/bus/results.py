# mypy: disable-error-code="no-untyped-call"
"""Results out: the outcome of each request, as JSON, where its requester looks.

Every result goes to the results exchange (topic, durable) with routing key
``result.<action>.<outcome>`` and, when the request named a ``reply_to``
queue, to that queue as well (default exchange, routing key = ``reply_to``),
both with the request's ``correlation_id``: a requester waits for its answer
the standard AMQP way. Messages are persistent. They leave from an outbox, in
the order they were put there, in batches: each batch is one AMQP transaction,
which RabbitMQ commits once it has them all, so a thousand results cost one
round trip, not a thousand, and deciding never waits for the broker.

Results may be hours apart: while its connection is open and idle, the
sending thread sends and checks its heartbeats, so that RabbitMQ does not drop
it as dead (and the next result does not pay for a reconnection).
"""

from __future__ import annotations

import contextlib
import functools
import queue
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Final

import amqp
import orjson
from amqp import spec
from kombu.connection import Connection
from kombu.entity import Exchange
from kombu.messaging import Producer

from nova_autopilot.bus.connection import BrokerSettings, open_connection
from nova_autopilot.ids import new_id
from nova_autopilot.logs import get_logger

__all__ = ["PROGRESS_HEADER", "ResultPublisher", "progress_routing_key", "result_routing_key"]

log = get_logger("nova_autopilot.bus")
_TOKEN = re.compile(r"[^A-Za-z0-9_-]+")
#: The header that marks a progress message (an operation entered a phase), not a result.
PROGRESS_HEADER: Final = "x-autopilot-progress"
#: Results waiting to be sent before :meth:`ResultPublisher.publish` waits.
OUTBOX_SIZE: Final = 10_000
#: The most results sent in one transaction.
BATCH_MAX: Final = 500


@functools.lru_cache(maxsize=1024)
def result_routing_key(action: str, outcome: str) -> str:
    """``result.<action>.<outcome>``, each part reduced to ``[A-Za-z0-9_-]``."""
    parts = [_TOKEN.sub("_", part).strip("_") or "unknown" for part in (action, outcome)]
    return "result." + ".".join(parts)


def progress_routing_key(action: str, phase: str) -> str:
    """``progress.<action>.<phase>``, each part reduced to ``[A-Za-z0-9_-]``."""
    return "progress." + result_routing_key(action, phase).removeprefix("result.")


def _json_default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _body(value: Mapping[str, Any]) -> bytes:
    """A message's body: compact JSON; dates in ISO 8601, sets as lists."""
    return orjson.dumps(value, default=_json_default, option=orjson.OPT_NON_STR_KEYS)


def _properties(
    action: str, outcome: str, correlation_id: str | None, headers: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The AMQP properties of a result message."""
    properties: dict[str, Any] = {
        "content_type": "application/json",
        "content_encoding": "utf-8",
        "delivery_mode": 2,
        "message_id": new_id(),
        "timestamp": int(time.time()),
        "type": result_routing_key(action, outcome),
        "headers": {"x-autopilot-action": action, "x-autopilot-outcome": outcome}
        | dict(headers or {}),
    }
    if correlation_id is not None:
        properties["correlation_id"] = correlation_id
    return properties


@dataclass(frozen=True, slots=True)
class _Outgoing:
    """One message to send: where, and with what properties."""

    body: bytes
    exchange: str
    routing_key: str
    properties: dict[str, Any]
    #: The first message of a result (a result to a reply queue as well is two).
    first: bool = True

    def message(self) -> amqp.Message:
        """The message as kombu's producer makes it for py-amqp: the same properties,
        the headers as its application headers, priority 0."""
        properties = dict(self.properties)
        headers = properties.pop("headers", None)
        return amqp.Message(self.body, priority=0, application_headers=headers, **properties)


class ResultPublisher:
    """Publishes results in the background, in order, safe to call from several
    threads: :meth:`publish` and :meth:`reply` put a result in the outbox and return;
    the sender thread sends what the outbox holds in batches, each one AMQP
    transaction (committed when the broker has them all), on one connection opened
    on first use and again after a failure. A batch the broker does not take is
    sent again after a pause, until it does: a result is never dropped while the
    daemon runs. A full outbox (the broker away for long) makes :meth:`publish`
    wait, so the daemon acknowledges no more messages meanwhile."""

    def __init__(
        self,
        *,
        broker: BrokerSettings,
        exchange: Exchange,
        max_retries: int = 3,
        publish_timeout: float = 10.0,
        outbox: int = OUTBOX_SIZE,
    ) -> None:
        """``max_retries``: failed sends of a batch logged as warnings before the
        next ones are logged as errors; ``publish_timeout``: how long the broker
        may take to commit a batch."""
        self._broker = broker
        self._exchange = exchange
        self._max_retries = max_retries
        self._publish_timeout = None if broker.in_memory else publish_timeout
        self._outbox: queue.Queue[_Outgoing | None] = queue.Queue(maxsize=outbox)
        self._lock = threading.Lock()  # the connection's: the sender's and close()'s
        self._starting = threading.Lock()
        self._conn: Connection | None = None
        self._producer: Producer | None = None
        self._in_tx = False
        self._sender: threading.Thread | None = None
        self._closing = threading.Event()
        self._idle = threading.Condition()
        self._unsent = 0
        self.published = 0

    @property
    def exchange(self) -> str:
        return str(self._exchange.name)

    def publish(
        self,
        result: Mapping[str, Any],
        *,
        action: str,
        outcome: str,
        correlation_id: str | None = None,
        reply_to: str | None = None,
        headers: Mapping[str, Any] | None = None,
    ) -> str:
        """Put ``result`` (a JSON-ready mapping) in the outbox, for the results
        exchange and, with ``reply_to``, the requester's queue; its routing key."""
        body = _body(result)
        routing_key = result_routing_key(action, outcome)
        properties = _properties(action, outcome, correlation_id, headers)
        self._put(_Outgoing(body, self.exchange, routing_key, properties))
        if reply_to:
            self._put(_Outgoing(body, "", reply_to, properties, first=False))
        log.debug(
            "bus.result_published",
            routing_key=routing_key,
            correlation_id=correlation_id,
            reply_to=reply_to,
        )
        return routing_key

    def reply(
        self, result: Mapping[str, Any], *, correlation_id: str | None, reply_to: str
    ) -> None:
        """Send ``result`` to the requester's ``reply_to`` queue only (it may hold
        what only the requester may read, such as a rescued server's password)."""
        body = _body(result)
        action = str(result.get("action") or "request")
        outcome = str(result.get("outcome"))
        properties = _properties(action, outcome, correlation_id, None)
        self._put(_Outgoing(body, "", reply_to, properties))
        log.debug("bus.result_replied", correlation_id=correlation_id, reply_to=reply_to)

    def progress(
        self,
        update: Mapping[str, Any],
        *,
        action: str,
        phase: str,
        correlation_id: str | None = None,
        reply_to: str | None = None,
    ) -> None:
        """Put a progress message in the outbox: an operation entered ``phase``. It goes
        to the results exchange with routing key ``progress.<action>.<phase>`` and, with
        ``reply_to``, to the requester's queue, marked by :data:`PROGRESS_HEADER`."""
        body = _body(update)
        routing_key = progress_routing_key(action, phase)
        properties = _properties(
            action, phase, correlation_id, {PROGRESS_HEADER: True, "x-autopilot-phase": phase}
        )
        properties["type"] = routing_key
        del properties["headers"]["x-autopilot-outcome"]
        self._put(_Outgoing(body, self.exchange, routing_key, properties, first=False))
        if reply_to:
            self._put(_Outgoing(body, "", reply_to, properties, first=False))
        log.debug("bus.progress_published", routing_key=routing_key, reply_to=reply_to)

    def flush(self, timeout: float) -> bool:
        """Wait until every result put in the outbox so far is with the broker (True)
        or ``timeout`` seconds pass (False)."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._unsent:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Send what the outbox holds (up to ``timeout`` seconds), then close."""
        if not self.flush(timeout):
            log.error("bus.results_unsent", count=self._unsent)
        self._closing.set()
        sender, self._sender = self._sender, None
        if sender is not None:
            self._outbox.put(None)  # wakes it
            sender.join(timeout)
        with self._lock:
            self._closing.clear()  # a later publish starts the sender again
            self._drop_connection(release=True)

    # -- the sender thread ----------------------------------------------------------------

    def _put(self, outgoing: _Outgoing) -> None:
        with self._idle:
            self._unsent += 1
        self._ensure_sender()
        self._outbox.put(outgoing)

    def _ensure_sender(self) -> None:
        sender = self._sender
        if sender is not None and sender.is_alive():
            return
        with self._starting:
            if self._sender is None or not self._sender.is_alive():
                self._sender = threading.Thread(
                    target=self._send_loop, name="results-sender", daemon=True
                )
                self._sender.start()

    def _send_loop(self) -> None:
        interval = self._broker.heartbeat_check_interval or 1.0
        while not self._closing.is_set():
            try:
                first = self._outbox.get(timeout=interval)
            except queue.Empty:
                self._beat()
                continue
            batch = [] if first is None else [first]
            while len(batch) < BATCH_MAX:
                try:
                    more = self._outbox.get_nowait()
                except queue.Empty:
                    break
                if more is not None:
                    batch.append(more)
            if batch:
                self._deliver(batch)
            del first, batch  # not kept (up to a batch of bodies) until the next result

    def _deliver(self, batch: list[_Outgoing]) -> None:
        """Send ``batch`` until the broker takes it (or the publisher closes)."""
        failures = 0
        while True:
            try:
                with self._lock:
                    self._send(batch)
                break
            except Exception as exc:  # noqa: BLE001 - any failure: reconnect and try again
                failures += 1
                with self._lock:
                    self._drop_connection()
                (log.warning if failures <= self._max_retries else log.error)(
                    "bus.result_publish_failed",
                    results=len(batch),
                    attempt=failures,
                    error=f"{type(exc).__name__}: {exc}",
                )
                if self._closing.wait(min(0.2 * 2 ** (failures - 1), 5.0)):
                    return
        self.published += sum(1 for outgoing in batch if outgoing.first)
        with self._idle:
            self._unsent -= len(batch)
            self._idle.notify_all()

    def _send(self, batch: list[_Outgoing]) -> None:
        producer = self._ensure_producer()
        channel = producer.channel
        if isinstance(channel, amqp.Channel):
            # What kombu's producer and py-amqp's basic_publish send, without their work
            # per message: basic_publish reads the socket before each one (for a
            # connection.blocked), which the commit's wait below does once per batch.
            for outgoing in batch:
                channel.send_method(
                    spec.Basic.Publish,
                    "Bssbb",
                    (0, outgoing.exchange, outgoing.routing_key, False, False),
                    outgoing.message(),
                )
        else:  # an in-memory broker
            for outgoing in batch:
                producer.publish(
                    outgoing.body,
                    exchange=outgoing.exchange,
                    routing_key=outgoing.routing_key,
                    retry=False,
                    **outgoing.properties,
                )
        if self._in_tx:
            # RabbitMQ answers once every message of the transaction is routed and,
            # persistent to a durable queue, on disk; a broker that does not answer
            # within the publish time-out fails the batch (sent again, reconnected).
            channel = producer.channel
            channel.send_method(spec.Tx.Commit)
            channel.wait(spec.Tx.CommitOk, timeout=self._publish_timeout)

    def _ensure_producer(self) -> Producer:
        if self._producer is None:
            conn = open_connection(self._broker, confirm_publish=False)
            self._conn = conn
            channel: Any = conn.default_channel
            self._exchange.bind(channel).declare()
            self._in_tx = not self._broker.in_memory
            if self._in_tx:
                channel.tx_select()
            self._producer = Producer(channel)
        return self._producer

    def _beat(self) -> None:
        """The connection's heartbeats while no result comes (a kombu connection is
        not shared by threads at once: under the lock); a connection found dead is
        dropped, the next result opens another."""
        with self._lock:
            if self._conn is None:
                return
            try:
                # py-amqp counts the broker's heartbeats only once read: read them.
                with contextlib.suppress(TimeoutError):
                    self._conn.drain_events(timeout=0.01)
                self._conn.heartbeat_check(rate=self._broker.heartbeat_rate)
            except Exception as exc:  # noqa: BLE001 - any failure: reconnect at next use
                log.warning("bus.results_heartbeat_failed", error=f"{type(exc).__name__}: {exc}")
                self._drop_connection()

    def _drop_connection(self, *, release: bool = False) -> None:
        conn, self._conn, self._producer = self._conn, None, None
        if conn is None:
            return
        if release:
            try:
                conn.release()
                return
            except Exception:  # noqa: BLE001 - closing a broken connection may fail
                pass
        conn.collect()
