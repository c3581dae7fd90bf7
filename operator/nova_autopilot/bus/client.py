# mypy: disable-error-code="no-untyped-call"
"""A small client for operator requests: publish one, wait for its result.

Used by the tests and by ``nova-autopilot send``::

    with RequestClient.from_conf(conf) as client:
        correlation_id = client.publish_request(request, reply_to=client.reply_queue())
        reply = client.wait_for_reply(correlation_id, timeout=60)

The reply queue is the client's own (exclusive, deleted with its connection);
results for other correlation ids that arrive meanwhile are kept for later
calls. One client is meant for one thread.

What stops it from talking to the broker is raised as
:class:`~nova_autopilot.bus.connection.BrokerUnavailable` (try again later) or
:class:`~nova_autopilot.bus.connection.BrokerRefused` (wrong password, missing
vhost). While it waits for a reply it keeps the connection's heartbeats going,
so RabbitMQ does not drop a connection that waits longer than its heartbeat.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kombu.connection import Connection
from kombu.entity import Exchange, Queue
from kombu.messaging import Consumer, Producer
from oslo_config import cfg

from nova_autopilot.bus.connection import (
    BROKER_ERRORS,
    BrokerSettings,
    broker_error,
    open_connection,
    request_broker,
)
from nova_autopilot.bus.results import PROGRESS_HEADER
from nova_autopilot.bus.topology import request_exchange, request_topology

__all__ = ["Reply", "RequestClient"]


@dataclass(frozen=True, slots=True)
class Reply:
    """A result received on the client's reply queue."""

    correlation_id: str | None
    body: Any
    #: ``result.<action>.<outcome>``, as on the results exchange.
    result_key: str
    headers: Mapping[str, Any] = field(default_factory=dict)
    raw: bytes = field(default=b"", repr=False)


class RequestClient:
    """Publishes requests to the request exchange and reads their results."""

    def __init__(
        self,
        *,
        broker: BrokerSettings,
        exchange: Exchange,
        declare: Sequence[Queue] = (),
    ) -> None:
        """``declare``: queues to declare (with their bindings) before the first
        publish, so that a request waits in its queue even if the daemon never
        ran yet."""
        self._broker = broker
        self._exchange = exchange
        self._declare = tuple(declare)
        self._conn: Connection | None = None
        self._producer: Producer | None = None
        self._reply_queue: str | None = None
        self._replies: dict[str | None, Reply] = {}
        self._progress: dict[str | None, list[Reply]] = {}

    @classmethod
    def from_conf(cls, conf: cfg.ConfigOpts) -> RequestClient:
        """A client of the request exchange of ``conf``; it declares the daemon's
        request queue exactly as the daemon does."""
        broker = request_broker(conf)
        topology = request_topology(conf, broker, delays=())
        return cls(broker=broker, exchange=request_exchange(conf), declare=[topology.queue])

    def __enter__(self) -> RequestClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def publish_request(
        self,
        body: Mapping[str, Any],
        *,
        correlation_id: str | None = None,
        reply_to: str | None = None,
        headers: Mapping[str, Any] | None = None,
    ) -> str:
        """Publish one request (``docs/requests.md``) and return its correlation id:
        ``correlation_id``, else the request's ``id``, else a new UUID.
        Routing key: ``request.<type>``."""
        kind = body.get("type")
        routing_key = f"request.{kind}" if isinstance(kind, str) and kind else "request"
        request_id = body.get("id")
        correlation = correlation_id or (
            request_id if isinstance(request_id, str) and request_id else str(uuid.uuid4())
        )
        self.publish_bytes(
            json.dumps(body, separators=(",", ":")).encode(),
            correlation_id=correlation,
            reply_to=reply_to,
            headers=headers,
            routing_key=routing_key,
        )
        return correlation

    def publish_bytes(
        self,
        body: bytes,
        *,
        correlation_id: str | None = None,
        reply_to: str | None = None,
        headers: Mapping[str, Any] | None = None,
        routing_key: str = "request",
        content_type: str = "application/json",
    ) -> None:
        """Publish a body exactly as given (persistent, confirmed)."""
        properties: dict[str, Any] = {
            "message_id": str(uuid.uuid4()),
            "timestamp": int(time.time()),
        }
        if correlation_id is not None:
            properties["correlation_id"] = correlation_id
        if reply_to is not None:
            properties["reply_to"] = reply_to
        producer = self._ensure()
        with self._talking():
            producer.publish(
                body,
                exchange=self._exchange,
                routing_key=routing_key,
                content_type=content_type,
                content_encoding="utf-8",
                delivery_mode=2,
                headers=dict(headers or {}),
                retry=True,
                retry_policy={"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5},
                **properties,
            )

    def reply_queue(self) -> str:
        """The name of this client's reply queue (declared on first use)."""
        if self._reply_queue is None:
            self._ensure()
            assert self._conn is not None
            name = f"nova-autopilot.reply.{uuid.uuid4().hex}"
            queue = Queue(name, exclusive=True, auto_delete=True, durable=False)
            with self._talking():
                channel = self._conn.default_channel
                queue.bind(channel).declare()
                consumer = Consumer(
                    channel,
                    queues=[queue],
                    on_message=self._on_reply,
                    no_ack=True,
                    auto_declare=False,
                )
                consumer.consume()
            self._reply_queue = name
        return self._reply_queue

    def wait_for_reply(
        self,
        correlation_id: str,
        timeout: float,
        *,
        on_progress: Callable[[Reply], None] | None = None,
    ) -> Reply:
        """The result for ``correlation_id`` on the reply queue; raises
        ``TimeoutError`` when none arrives within ``timeout`` seconds. The
        connection's heartbeats are sent and checked meanwhile, and each progress
        message for it (its operation entered a phase) is given to ``on_progress``
        as it comes."""
        self.reply_queue()
        conn = self._conn
        assert conn is not None
        step = min(1.0, self._broker.heartbeat_check_interval or 1.0)
        deadline = time.monotonic() + timeout
        while True:
            for update in self._progress.pop(correlation_id, ()):
                if on_progress is not None:
                    on_progress(update)
            if correlation_id in self._replies:
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no reply for {correlation_id!r} within {timeout:g} s")
            with self._talking():
                with contextlib.suppress(TimeoutError):  # nothing came: look at the clock
                    conn.drain_events(timeout=min(remaining, step))
                if self._broker.heartbeat_check_interval:  # send ours, check the broker's
                    conn.heartbeat_check(rate=self._broker.heartbeat_rate)
        return self._replies.pop(correlation_id)

    def close(self) -> None:
        conn, self._conn, self._producer, self._reply_queue = self._conn, None, None, None
        if conn is not None:
            try:
                conn.release()
            except Exception:  # noqa: BLE001 - closing a broken connection may fail
                conn.collect()

    def _on_reply(self, message: Any) -> None:
        raw = message.body if isinstance(message.body, bytes) else str(message.body).encode()
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw.decode("utf-8", "replace")
        correlation_id = message.properties.get("correlation_id")
        reply = Reply(
            correlation_id=correlation_id,
            body=body,
            result_key=message.properties.get("type") or "",
            headers=dict(message.headers or {}),
            raw=raw,
        )
        if reply.headers.get(PROGRESS_HEADER):
            self._progress.setdefault(correlation_id, []).append(reply)
        else:
            self._replies[correlation_id] = reply

    def _ensure(self) -> Producer:
        if self._producer is None:
            conn = open_connection(self._broker)
            try:
                with self._talking():
                    channel = conn.default_channel
                    self._exchange.bind(channel).declare()
                    for queue in self._declare:
                        queue.bind(channel).declare()
                    producer = Producer(conn.default_channel)
            except BaseException:
                conn.collect()
                raise
            self._conn, self._producer = conn, producer
        return self._producer

    @contextlib.contextmanager
    def _talking(self) -> Iterator[None]:
        """Broker failures as ``BrokerUnavailable`` / ``BrokerRefused``."""
        try:
            yield
        except BROKER_ERRORS as error:
            raise broker_error(self._broker, error) from error
