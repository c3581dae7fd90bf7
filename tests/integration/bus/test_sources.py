"""What the bus accepts from its sources, on the real RabbitMQ.

Nova's notifications, sent by the code Nova uses (oslo.messaging); operator
requests, the standard AMQP way, and the checks they pass before the handler
sees them. Oversized, deeply nested and decompression-bomb messages are
refused on their raw bytes, before any JSON decoding (or before decompressing
past the limit), dead-lettered with their reason, on both intakes; the bus
keeps consuming.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from typing import Any

import pytest
from kombu import Connection, Exchange, Producer, Queue

from nova_autopilot.bus import Bus, RequestClient
from nova_autopilot.errors import BadMessage
from tests.integration import bus_support
from tests.integration.bus_support import (
    Rabbit,
    Recorder,
    body_of,
    bus_conf,
    eventually,
    nova_notifier,
    publish_raw,
    request_body,
    started,
    take_all,
)
from tests.samples import sample

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import oslo_messaging

pytestmark = pytest.mark.integration
rabbit = bus_support.rabbit
NOTIFICATIONS_DEAD = "nova-autopilot.notifications.dead"
REQUESTS_DEAD = "nova-autopilot.requests.dead"
#: Deep enough to exhaust the stack of a decoder that recursed into it.
NESTED = b'{"event_type": "instance.update", "payload": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"


# --- Nova's notifications ---------------------------------------------------------------


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
    ("rabbit_options", "pool_durable"),
    [
        ({}, False),
        ({"amqp_durable_queues": True}, True),
        ({"rabbit_quorum_queue": True}, True),
    ],
    ids=["oslo-defaults-transient-pool", "durable-queues", "quorum-queues"],
)
def test_the_pool_queue_is_declared_exactly_as_oslo_messagings_own_listener_declares_it(
    rabbit: Rabbit, rabbit_options: dict[str, object], pool_durable: bool
) -> None:
    """Nova's operators configure durability and quorum queues once, in
    [oslo_messaging_rabbit]: an oslo.messaging listener with the same pool and
    the bus then share the queue without a PRECONDITION_FAILED (with oslo.messaging's
    default, transient queues, once the pool is told to follow it)."""
    conf = bus_conf(
        rabbit,
        oslo_messaging_rabbit=rabbit_options,
        notifications={"pool_durable": pool_durable},
    )
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


def test_the_pool_queue_is_durable_by_default_and_novas_exchange_as_nova_declares_it(
    rabbit: Rabbit,
) -> None:
    """With oslo.messaging's defaults (transient queues, Nova's exchange transient),
    the daemon's pool queue is durable all the same, so that the notifications waiting
    in it outlive a broker restart; Nova's exchange is declared as Nova declares it."""
    conf = bus_conf(rabbit)
    assert conf.oslo_messaging_rabbit.amqp_durable_queues is False
    bus = started(Bus(conf=conf, notification_handler=Recorder()))
    try:
        with nova_notifier(conf) as nova:
            notification = sample("instance-update")
            nova.info({}, notification["event_type"], notification["payload"])
    finally:
        bus.stop(10)

    assert rabbit.durability("nova-autopilot") is True
    assert rabbit.exchange_durability("nova") is False  # as Nova's notifier declares it
    for own in ("nova-autopilot.notifications.dead", "nova-autopilot.retry.5s"):
        assert rabbit.durability(own) is True


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
        eventually(lambda: rabbit.queues().get(NOTIFICATIONS_DEAD, 0) == 1, what="one dead letter")
    finally:
        bus.stop(10)

    assert call[0].event_type == "instance.update"
    assert call[1].headers["compression"] == "application/x-gzip"
    (dead,) = take_all(rabbit, NOTIFICATIONS_DEAD)
    assert not dead.errors  # stored compressed, as it was sent: kombu reads it back
    assert dead.headers["compression"] == "application/x-gzip"
    assert body_of(dead) == b"not json"
    assert dead.headers["x-autopilot-reason"] == "not_json"


# --- operator requests ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{this is not json", "not_json"),
        (json.dumps(request_body("r-1", colour="blue")).encode(), "unknown_field"),
        (json.dumps({"type": "quota.request.approved", "id": "r-2"}).encode(), "missing_field"),
        (json.dumps(request_body("r-3", reason="x" * 70_000)).encode(), "too_large"),
        (
            json.dumps({"event_type": "instance.update", "payload": {}}).encode(),
            "unexpected_source",
        ),
    ],
)
def test_a_malformed_request_is_rejected_to_the_dead_letter_queue_with_its_reason(
    rabbit: Rabbit, body: bytes, reason: str
) -> None:
    conf = bus_conf(rabbit)
    handler = Recorder()
    bus = started(Bus(conf=conf, request_handler=handler))
    try:
        with RequestClient.from_conf(conf) as client:
            client.publish_bytes(body, correlation_id="c-1", headers={"x-origin": "ops-portal"})
            client.publish_request(request_body("valid-after"))
        handler.wait_for(1)
        eventually(lambda: rabbit.queues().get("nova-autopilot.requests.dead", 0) == 1)
    finally:
        bus.stop(10)

    (dead,) = take_all(rabbit, "nova-autopilot.requests.dead")
    assert dead.body == body
    assert dead.delivery_info["exchange"] == "nova-autopilot.dead"
    assert dead.delivery_info["routing_key"] == f"request.{reason}"
    assert dead.headers["x-autopilot-reason"] == reason
    assert dead.headers["x-autopilot-source"] == "request"
    assert dead.headers["x-autopilot-queue"] == "nova-autopilot.requests"
    assert dead.headers["x-autopilot-exchange"] == "nova-autopilot.requests"
    assert dead.headers["x-origin"] == "ops-portal"
    assert dead.properties["correlation_id"] == "c-1"
    assert [event.request_id for event, _ in handler.calls] == ["valid-after"]


def test_the_verifier_rejects_unsigned_requests_before_they_are_parsed(rabbit: Rabbit) -> None:
    seen: list[Mapping[str, Any]] = []

    def verify(body: bytes, headers: Mapping[str, Any]) -> None:
        seen.append(headers)
        if "x-signature" not in headers:
            raise BadMessage("unsigned", "the request carries no x-signature header")
        if headers["x-signature"] != "good":
            raise BadMessage("bad_signature", "the signature does not match")

    conf = bus_conf(rabbit)
    handler = Recorder()
    bus = started(Bus(conf=conf, request_handler=handler, verify=verify))
    try:
        with RequestClient.from_conf(conf) as client:
            client.publish_request(request_body("r-unsigned"))
            client.publish_request(request_body("r-forged"), headers={"x-signature": "bad"})
            client.publish_request(request_body("r-signed"), headers={"x-signature": "good"})
        handler.wait_for(1)
        eventually(lambda: rabbit.queues().get("nova-autopilot.requests.dead", 0) == 2)
    finally:
        bus.stop(10)

    assert [event.request_id for event, _ in handler.calls] == ["r-signed"]
    reasons = {
        json.loads(m.body)["id"]: m.headers["x-autopilot-reason"]
        for m in take_all(rabbit, "nova-autopilot.requests.dead")
    }
    assert reasons == {"r-unsigned": "unsigned", "r-forged": "bad_signature"}
    assert len(seen) == 3


# --- limits -----------------------------------------------------------------------------


def test_oversized_and_deeply_nested_notifications_are_dead_lettered_before_decoding(
    rabbit: Rabbit,
) -> None:
    conf = bus_conf(rabbit, intake={"max_message_bytes": 600_000, "max_json_depth": 16})
    handler = Recorder()
    bus = started(Bus(conf=conf, notification_handler=handler))
    oversized = b'{"event_type": "instance.update", "payload": "' + b"x" * 700_000 + b'"}'
    fifteen = b'{"event_type": "instance.update", "payload": {"a": ' + b"[" * 13
    fifteen += b"]" * 13 + b"}}"
    try:
        publish_raw(rabbit, [oversized, NESTED, fifteen])
        with nova_notifier(conf) as nova:
            notification = sample("instance-update")
            nova.info({}, notification["event_type"], notification["payload"])
        handler.wait_for(2)
        eventually(lambda: rabbit.queues().get(NOTIFICATIONS_DEAD, 0) == 2, what="2 dead")
    finally:
        bus.stop(10)

    # Nested up to the limit (16 levels with the envelope's object): handled.
    assert [event.event_type for event, _ in handler.calls] == ["instance.update"] * 2
    dead = {
        len(body_of(m)): m.headers["x-autopilot-reason"]
        for m in take_all(rabbit, NOTIFICATIONS_DEAD)
    }
    assert dead == {len(oversized): "too_large", len(NESTED): "too_deep"}


def test_oversized_and_deeply_nested_requests_are_dead_lettered_before_decoding(
    rabbit: Rabbit,
) -> None:
    conf = bus_conf(rabbit, requests={"max_message_bytes": 4096}, intake={"max_json_depth": 8})
    handler = Recorder()
    bus = started(Bus(conf=conf, request_handler=handler))
    deep = json.dumps(request_body("r-deep")).encode()[:-1] + b', "x": ' + b"[" * 2000
    deep += b"]" * 2000 + b"}"
    deep = deep[:4000]
    large = json.dumps(request_body("r-large", reason="y" * 5000)).encode()
    try:
        with RequestClient.from_conf(conf) as client:
            client.publish_bytes(deep)
            client.publish_bytes(large)
            client.publish_request(request_body("r-fine"))
        handler.wait_for(1)
        eventually(lambda: rabbit.queues().get(REQUESTS_DEAD, 0) == 2, what="2 dead")
    finally:
        bus.stop(10)

    assert [event.request_id for event, _ in handler.calls] == ["r-fine"]
    reasons = sorted(m.headers["x-autopilot-reason"] for m in take_all(rabbit, REQUESTS_DEAD))
    assert reasons == ["too_deep", "too_large"]


def test_a_compressed_body_that_would_expand_beyond_the_limit_is_dead_lettered(
    rabbit: Rabbit,
) -> None:
    conf = bus_conf(rabbit, intake={"max_message_bytes": 600_000})
    handler = Recorder()
    bus = started(Bus(conf=conf, notification_handler=handler))
    bomb = b'{"event_type": "instance.update", "payload": "' + b"0" * 200_000_000 + b'"}'
    try:
        with Connection(rabbit.amqp_url) as conn:
            producer = Producer(conn.default_channel)
            for body in (bomb, json.dumps(sample("instance-update")).encode()):
                producer.publish(
                    body,
                    exchange=Exchange("nova", type="topic", no_declare=True),
                    routing_key="versioned_notifications.info",
                    content_type="application/json",
                    content_encoding="utf-8",
                    compression="gzip",
                )
        # Not compressed at all, though its header says so: refused, not a crash loop.
        publish_raw(rabbit, [b"not gzip"], headers={"compression": "application/x-gzip"})
        handler.wait_for(1)
        eventually(lambda: rabbit.queues().get(NOTIFICATIONS_DEAD, 0) == 2, what="2 dead")
    finally:
        bus.stop(10)

    assert [event.event_type for event, _ in handler.calls] == ["instance.update"]
    with Connection(rabbit.amqp_url) as conn:  # read as stored: kombu would decompress them
        dead = [conn.default_channel.basic_get(NOTIFICATIONS_DEAD, no_ack=True) for _ in "ab"]
    details = [m.properties["application_headers"]["x-autopilot-detail"] for m in dead]
    assert [m.properties["application_headers"]["x-autopilot-reason"] for m in dead] == [
        "bad_compression",
        "bad_compression",
    ]
    assert "more than 600000 bytes" in details[0]
    assert "error" in details[1].lower()
    assert len(dead[0].body) < 1_000_000  # kept compressed, as it came
