# mypy: disable-error-code="no-untyped-call"
"""The exchanges, queues and bindings of the bus, named from the settings.

Notifications (on Nova's broker)::

    exchange  nova  (topic; declared exactly as Nova's oslo.messaging declares it)
      versioned_notifications.info / .error ──> queue <pool>   (the daemon's own copy)
    queue <pool>.retry.<delay>   TTL <delay>, dead-letters back to <pool>
    queue [notifications] dead_letter_queue   (durable)

Requests::

    exchange [requests] exchange (topic, durable) ──#──> queue [requests] queue (durable)
    queue <queue>.retry.<delay>  TTL <delay>, dead-letters back to <queue>
    exchange [requests] dead_letter_exchange (topic, durable)
      request.<reason> ──#──> queue <queue>.dead (durable)
    exchange [requests] results_exchange (topic, durable)
      result.<action>.<outcome>  (bind your own queues)

``docs/messaging.md`` has the whole picture.

The daemon's pool queue, its retry queues and its dead-letter queue outlive
the daemon on purpose: the broker keeps what was not handled. A listener
that comes and goes on someone else's broker (``nova-autopilot demo
--cloud``, on the vhost of a real Nova) gives them names of its own and
deletes them when it is done (:func:`delete_notification_queues`), so that
nothing of it keeps collecting copies of the cloud's notifications.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kombu.entity import Exchange, Queue, binding
from kombu.transport.virtual import Channel as VirtualChannel
from oslo_config import cfg

from nova_autopilot.bus.connection import BrokerSettings, connect, notification_broker
from nova_autopilot.events import Source

__all__ = [
    "NOTIFICATION_PRIORITIES",
    "IntakeTopology",
    "delay_queue_name",
    "delete_notification_queues",
    "notification_queue_names",
    "notification_topology",
    "request_exchange",
    "request_topology",
    "results_exchange",
]

#: The priorities of Nova's versioned notifications: routing keys ``<topic>.<priority>``.
NOTIFICATION_PRIORITIES = ("info", "error")


def delay_queue_name(queue: str, delay: float) -> str:
    """``nova-autopilot.retry.30s`` / ``...retry.200ms``: one queue per delay."""
    millis = round(delay * 1000)
    suffix = f"{millis // 1000}s" if millis % 1000 == 0 else f"{millis}ms"
    return f"{queue}.retry.{suffix}"


@dataclass(frozen=True)
class IntakeTopology:
    """Everything one intake declares and publishes to.

    ``dead_letter_exchange`` is ``""`` (the default exchange) when dead letters go
    straight to ``dead_letter_queue``; otherwise they are published to that
    exchange with routing key ``<source>.<reason>``.
    """

    source: Source
    queue: Queue
    delays: tuple[float, ...]
    delay_queues: tuple[Queue, ...]
    dead_letter_exchange: Exchange | None
    dead_letter_queue: Queue

    @property
    def queue_name(self) -> str:
        return str(self.queue.name)

    def delay_queue(self, delay: float) -> str:
        return delay_queue_name(self.queue_name, delay)

    def dead_letter_route(self, reason: str) -> tuple[str, str]:
        """(exchange, routing key) for a message dead-lettered for ``reason``."""
        if self.dead_letter_exchange is None:
            return "", str(self.dead_letter_queue.name)
        token = reason.split(":", 1)[0].strip() or "unknown"
        return str(self.dead_letter_exchange.name), f"{self.source}.{token}"

    def declare(self, channel: Any, *, with_delay_queues: bool = True) -> None:
        """Declare every exchange, queue and binding (idempotent)."""
        self.queue.bind(channel).declare()
        if self.dead_letter_exchange is not None:
            self.dead_letter_exchange.bind(channel).declare()
        self.dead_letter_queue.bind(channel).declare()
        if with_delay_queues and not isinstance(channel, VirtualChannel):
            for queue in self.delay_queues:
                queue.bind(channel).declare()


def _delay_queues(
    work_queue: str, delays: Sequence[float], broker: BrokerSettings
) -> tuple[Queue, ...]:
    queues = []
    for delay in delays:
        arguments = {
            **broker.own_queue_arguments,
            "x-message-ttl": max(1, round(delay * 1000)),
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": work_queue,
        }
        queues.append(
            Queue(
                delay_queue_name(work_queue, delay),
                durable=True,
                auto_delete=False,
                queue_arguments=arguments,
            )
        )
    return tuple(queues)


def notification_topology(
    conf: cfg.ConfigOpts, broker: BrokerSettings, *, delays: Sequence[float]
) -> IntakeTopology:
    """Nova's exchange, declared as Nova declares it, and the daemon's pool queue,
    with oslo.messaging's arguments (HA, quorum, TTL) and durable unless
    ``[notifications] pool_durable`` is false (then as ``amqp_durable_queues``
    says): what waits in it outlives a broker restart."""
    group = conf.notifications
    exchange = Exchange(
        group.exchange, type="topic", durable=broker.durable, auto_delete=broker.auto_delete
    )
    topics = list(dict.fromkeys([*group.topics, *group.legacy_topics]))
    bindings = [
        binding(exchange, routing_key=f"{topic}.{priority}")
        for topic in topics
        for priority in NOTIFICATION_PRIORITIES
    ]
    queue = Queue(
        group.pool,
        bindings=bindings,
        durable=broker.durable or bool(group.pool_durable),
        auto_delete=broker.auto_delete,
        queue_arguments=dict(broker.queue_arguments),
    )
    dead = Queue(
        group.dead_letter_queue,
        durable=True,
        auto_delete=False,
        queue_arguments=broker.own_queue_arguments,
    )
    return IntakeTopology(
        source="nova",
        queue=queue,
        delays=tuple(delays),
        delay_queues=_delay_queues(group.pool, delays, broker),
        dead_letter_exchange=None,
        dead_letter_queue=dead,
    )


def request_topology(
    conf: cfg.ConfigOpts, broker: BrokerSettings, *, delays: Sequence[float]
) -> IntakeTopology:
    """The durable request queue bound to the request exchange, with its
    dead-letter exchange and queue."""
    group = conf.requests
    exchange = Exchange(group.exchange, type="topic", durable=True)
    queue = Queue(
        group.queue,
        exchange=exchange,
        routing_key="#",
        durable=True,
        auto_delete=False,
        queue_arguments=broker.own_queue_arguments,
    )
    dead_exchange = Exchange(group.dead_letter_exchange, type="topic", durable=True)
    dead = Queue(
        f"{group.queue}.dead",
        exchange=dead_exchange,
        routing_key="#",
        durable=True,
        auto_delete=False,
        queue_arguments=broker.own_queue_arguments,
    )
    return IntakeTopology(
        source="request",
        queue=queue,
        delays=tuple(delays),
        delay_queues=_delay_queues(group.queue, delays, broker),
        dead_letter_exchange=dead_exchange,
        dead_letter_queue=dead,
    )


def results_exchange(conf: cfg.ConfigOpts) -> Exchange:
    """Where results are published, routing key ``result.<action>.<outcome>``."""
    return Exchange(conf.requests.results_exchange, type="topic", durable=True)


def request_exchange(conf: cfg.ConfigOpts) -> Exchange:
    """Where operators (and :class:`~nova_autopilot.bus.client.RequestClient`) publish."""
    return Exchange(conf.requests.exchange, type="topic", durable=True)


# --- a short-lived listener's queues ----------------------------------------------------


def notification_queue_names(conf: cfg.ConfigOpts) -> tuple[str, ...]:
    """The queues the notification intake configured by ``conf`` declares."""
    broker = notification_broker(conf)
    topology = notification_topology(conf, broker, delays=conf.notifications.retry_delays)
    return (
        topology.queue_name,
        *(str(queue.name) for queue in topology.delay_queues),
        str(topology.dead_letter_queue.name),
    )


def delete_notification_queues(conf: cfg.ConfigOpts) -> tuple[str, ...]:
    """Delete the pool queue, its retry queues and its dead-letter queue
    (with whatever they hold); the names deleted. Nova's exchange stays."""
    names = notification_queue_names(conf)
    with connect(notification_broker(conf)) as connection:
        channel = connection.channel()
        for name in names:
            channel.queue_delete(queue=name)
    return names
