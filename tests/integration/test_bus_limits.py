"""Oversized, deeply nested and decompression-bomb messages on the real
RabbitMQ: refused on their raw bytes, before any JSON decoding (or before
decompressing past the limit), dead-lettered with their reason, on both
intakes; the bus keeps consuming."""

from __future__ import annotations

import json

import pytest
from kombu import Connection, Exchange, Producer

from nova_autopilot.bus import Bus, RequestClient
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

pytestmark = pytest.mark.integration
rabbit = bus_support.rabbit

NOTIFICATIONS_DEAD = "nova-autopilot.notifications.dead"
REQUESTS_DEAD = "nova-autopilot.requests.dead"
#: Deep enough to exhaust the stack of a decoder that recursed into it.
NESTED = b'{"event_type": "instance.update", "payload": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"


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
