# mypy: disable-error-code="no-untyped-call"
"""Results out: the outcome of each request, as JSON, where its requester looks.

Every result goes to the results exchange (topic, durable) with routing key
``result.<action>.<outcome>`` and, when the request named a ``reply_to``
queue, to that queue as well (default exchange, routing key = ``reply_to``),
both with the request's ``correlation_id``: a requester waits for its answer
the standard AMQP way. Messages are persistent and confirmed by the broker
before :meth:`ResultPublisher.publish` returns.

Results may be hours apart: while its connection is open, a small thread of the
publisher sends and checks its heartbeats, so that RabbitMQ does not drop it
as dead (and the next result does not pay for a reconnection).
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
import uuid
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from kombu.connection import Connection
from kombu.entity import Exchange
from kombu.messaging import Producer

from nova_autopilot.bus.connection import BrokerSettings, open_connection
from nova_autopilot.errors import TemporaryError
from nova_autopilot.logs import get_logger

__all__ = ["ResultPublisher", "result_routing_key"]

log = get_logger("nova_autopilot.bus")
_TOKEN = re.compile(r"[^A-Za-z0-9_-]+")


def result_routing_key(action: str, outcome: str) -> str:
    """``result.<action>.<outcome>``, each part reduced to ``[A-Za-z0-9_-]``."""
    parts = [_TOKEN.sub("_", part).strip("_") or "unknown" for part in (action, outcome)]
    return "result." + ".".join(parts)


def _json_default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _properties(
    action: str, outcome: str, correlation_id: str | None, headers: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The AMQP properties of a result message."""
    properties: dict[str, Any] = {
        "content_type": "application/json",
        "content_encoding": "utf-8",
        "delivery_mode": 2,
        "message_id": str(uuid.uuid4()),
        "timestamp": int(time.time()),
        "type": result_routing_key(action, outcome),
        "headers": {"x-autopilot-action": action, "x-autopilot-outcome": outcome}
        | dict(headers or {}),
    }
    if correlation_id is not None:
        properties["correlation_id"] = correlation_id
    return properties


class ResultPublisher:
    """Publishes results; safe to call from several threads (one connection,
    used under a lock, opened on first use and again after a failure)."""

    def __init__(
        self,
        *,
        broker: BrokerSettings,
        exchange: Exchange,
        max_retries: int = 3,
        publish_timeout: float = 10.0,
    ) -> None:
        self._broker = broker
        self._exchange = exchange
        self._max_retries = max_retries
        self._publish_timeout = None if broker.in_memory else publish_timeout
        self._lock = threading.Lock()
        self._conn: Connection | None = None
        self._producer: Producer | None = None
        self._beating: threading.Thread | None = None
        self._closing = threading.Event()
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
        """Publish ``result`` (a JSON-ready mapping) and return its routing key.

        Raises :class:`TemporaryError` when the broker cannot take it after a
        few reconnection attempts (the caller may retry later).
        """
        body = json.dumps(result, separators=(",", ":"), default=_json_default).encode()
        routing_key = result_routing_key(action, outcome)
        properties = _properties(action, outcome, correlation_id, headers)
        with self._lock:
            self._send(body, self.exchange, routing_key, properties)
            if reply_to:
                self._send(body, "", reply_to, properties)
            self.published += 1
        log.info(
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
        body = json.dumps(result, separators=(",", ":"), default=_json_default).encode()
        action = str(result.get("action") or "request")
        outcome = str(result.get("outcome"))
        properties = _properties(action, outcome, correlation_id, None)
        with self._lock:
            self._send(body, "", reply_to, properties)
            self.published += 1
        log.info("bus.result_replied", correlation_id=correlation_id, reply_to=reply_to)

    def close(self) -> None:
        self._closing.set()
        beating, self._beating = self._beating, None
        if beating is not None:
            beating.join()
        with self._lock:
            self._closing.clear()  # a later publish opens a connection again
            conn, self._conn, self._producer = self._conn, None, None
            if conn is not None:
                try:
                    conn.release()
                except Exception:  # noqa: BLE001 - closing a broken connection may fail
                    conn.collect()

    def _send(self, body: bytes, exchange: str, routing_key: str, props: dict[str, Any]) -> None:
        last: BaseException | None = None
        for attempt in range(self._max_retries + 1):
            try:
                producer = self._ensure_producer()
                producer.publish(
                    body,
                    exchange=exchange,
                    routing_key=routing_key,
                    retry=False,
                    confirm_timeout=self._publish_timeout,
                    **props,
                )
                return
            except Exception as exc:  # noqa: BLE001 - any failure: reconnect and try again
                last = exc
                self._drop_connection()
                log.warning(
                    "bus.result_publish_failed",
                    routing_key=routing_key,
                    attempt=attempt + 1,
                    error=f"{type(exc).__name__}: {exc}",
                )
                if attempt < self._max_retries:
                    time.sleep(min(0.2 * 2**attempt, 2.0))
        raise TemporaryError(f"cannot publish the result {routing_key}: {last}") from last

    def _ensure_producer(self) -> Producer:
        if self._producer is None:
            conn = open_connection(self._broker)
            self._conn = conn
            self._exchange.bind(conn.default_channel).declare()
            self._producer = Producer(conn.default_channel)
            self._start_heartbeats()
        return self._producer

    def _start_heartbeats(self) -> None:
        interval = self._broker.heartbeat_check_interval
        if not interval or (self._beating is not None and self._beating.is_alive()):
            return
        self._beating = threading.Thread(
            target=self._beat, args=(interval,), name="results-heartbeat", daemon=True
        )
        self._beating.start()

    def _beat(self, interval: float) -> None:
        """Every ``interval`` seconds, the connection's heartbeats (under the lock:
        a kombu connection is not shared by threads at once); a connection found
        dead is dropped, the next result opens another."""
        while not self._closing.wait(interval):
            with self._lock:
                if self._conn is None:
                    continue
                try:
                    # py-amqp counts the broker's heartbeats only once read: read them.
                    with contextlib.suppress(TimeoutError):
                        self._conn.drain_events(timeout=0.01)
                    self._conn.heartbeat_check(rate=self._broker.heartbeat_rate)
                except Exception as exc:  # noqa: BLE001 - any failure: reconnect at next use
                    log.warning(
                        "bus.results_heartbeat_failed", error=f"{type(exc).__name__}: {exc}"
                    )
                    self._drop_connection()

    def _drop_connection(self) -> None:
        conn, self._conn, self._producer = self._conn, None, None
        if conn is not None:
            conn.collect()
