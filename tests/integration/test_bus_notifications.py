"""Nova's notifications on the real RabbitMQ, sent by the code Nova uses (oslo.messaging)."""

from __future__ import annotations

import warnings

import pytest
from kombu import Connection, Exchange, Producer, Queue

from nova_autopilot.bus import Bus
from tests.integration import bus_support
from tests.integration.bus_support import (
    Rabbit,
    Recorder,
    body_of,
    bus_conf,
    eventually,
    nova_notifier,
    started,
    take_all,
)
from tests.samples import sample

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import oslo_messaging

pytestmark = pytest.mark.integration
rabbit = bus_support.rabbit
DEAD = "nova-autopilot.notifications.dead"


def test_novas_notifications_reach_the_handler_and_novas_own_queues_keep_their_copies(
    rabbit: Rabbit,
) -> None:
    conf = bus_conf(rabbit)
    handler = Recorder()
    bus = started(Bus(conf=conf, notification_handler=handler))
    infos = ["instance-update", "instance-create-end", "instance-rescue-end"]
    errors = ["instance-create-error"]
    try:
        with nova_notifier(conf) as nova:
            for name in infos:
                notification = sample(name)
                nova.info({}, notification["event_type"], notification["payload"])
            for name in errors:
                notification = sample(name)
                nova.error({}, notification["event_type"], notification["payload"])
        calls = handler.wait_for(4)
    finally:
        bus.stop(10)

    assert sorted(event.event_type for event, _ in calls) == [
        "instance.create.end",
        "instance.create.error",
        "instance.rescue.end",
        "instance.update",
    ]
    for event, delivery in calls:
        assert event.source == delivery.source == "nova"
        assert event.instance_id == bus_support.SERVER
        assert event.publisher_id == "nova-compute:compute-1"
        assert delivery.message_id == event.message_id is not None
        assert delivery.exchange == "nova"
        assert delivery.routing_key.startswith("versioned_notifications.")
        assert not delivery.redelivered
    # Nova's own queues (any other consumer's) still hold every notification.
    with Connection(rabbit.amqp_url) as conn:
        for queue, count in (
            ("versioned_notifications.info", 3),
            ("versioned_notifications.error", 1),
        ):
            bound = Queue(queue, no_declare=True)(conn.default_channel)
            assert bound.queue_declare(passive=True).message_count == count
    assert rabbit.queues()["nova-autopilot"] == 0


def test_legacy_notifications_are_read_when_their_topic_is_configured(rabbit: Rabbit) -> None:
    conf = bus_conf(rabbit, notifications={"legacy_topics": ["notifications"]})
    handler = Recorder()
    bus = started(Bus(conf=conf, notification_handler=handler))
    transport = oslo_messaging.get_notification_transport(conf)
    try:
        legacy = oslo_messaging.Notifier(
            transport,
            publisher_id="compute.compute-1",
            driver="messagingv2",
            topics=["notifications"],
        )
        legacy.info(
            {"project_id": "p-1"},
            "compute.instance.update",
            {"instance_id": bus_support.SERVER, "tenant_id": "p-1", "state": "active"},
        )
        (call,) = handler.wait_for(1)
    finally:
        transport.cleanup()
        bus.stop(10)

    event, _ = call
    assert (event.format, event.event_type) == ("legacy", "compute.instance.update")
    assert event.instance_id == bus_support.SERVER


@pytest.mark.parametrize(
    "rabbit_options",
    [
        {},
        {"amqp_durable_queues": True},
        {"rabbit_quorum_queue": True},
    ],
    ids=["oslo-defaults", "durable-queues", "quorum-queues"],
)
def test_the_pool_queue_is_declared_exactly_as_oslo_messagings_own_listener_declares_it(
    rabbit: Rabbit, rabbit_options: dict[str, object]
) -> None:
    """Nova's operators configure durability and quorum queues once, in
    [oslo_messaging_rabbit]: an oslo.messaging listener with the same pool and
    the bus then share the queue without a PRECONDITION_FAILED."""
    conf = bus_conf(rabbit, oslo_messaging_rabbit=rabbit_options)
    transport = oslo_messaging.get_notification_transport(conf)
    listener = oslo_messaging.get_notification_listener(
        transport,
        [oslo_messaging.Target(topic="versioned_notifications", exchange="nova")],
        [],
        executor="threading",
        pool=conf.notifications.pool,
    )
    listener.start()
    listener.stop()
    listener.wait()
    transport.cleanup()
    handler = Recorder()
    bus = started(Bus(conf=conf, notification_handler=handler))
    try:
        with nova_notifier(conf) as nova:
            notification = sample("instance-update")
            nova.info({}, notification["event_type"], notification["payload"])
        handler.wait_for(1)
        assert bus.alive()
        assert bus.health().intakes[0].reconnects == 0
    finally:
        bus.stop(10)


def test_notifications_compressed_by_oslo_messaging_are_read_and_dead_lettered_as_sent(
    rabbit: Rabbit,
) -> None:
    """[oslo_messaging_rabbit] kombu_compression = gzip in nova.conf."""
    conf = bus_conf(rabbit, oslo_messaging_rabbit={"kombu_compression": "gzip"})
    handler = Recorder()
    bus = started(Bus(conf=conf, notification_handler=handler))
    try:
        with nova_notifier(conf) as nova:
            notification = sample("instance-update")
            nova.info({}, notification["event_type"], notification["payload"])
        (call,) = handler.wait_for(1)
        with Connection(rabbit.amqp_url) as conn:
            Producer(conn.default_channel).publish(
                b"not json",
                exchange=Exchange("nova", type="topic", no_declare=True),
                routing_key="versioned_notifications.info",
                content_type="application/json",
                content_encoding="utf-8",
                compression="gzip",
            )
        eventually(lambda: rabbit.queues().get(DEAD, 0) == 1, what="one dead letter")
    finally:
        bus.stop(10)

    assert call[0].event_type == "instance.update"
    assert call[1].headers["compression"] == "application/x-gzip"
    (dead,) = take_all(rabbit, DEAD)
    assert not dead.errors  # stored compressed, as it was sent: kombu reads it back
    assert dead.headers["compression"] == "application/x-gzip"
    assert body_of(dead) == b"not json"
    assert dead.headers["x-autopilot-reason"] == "not_json"
