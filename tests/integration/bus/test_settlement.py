"""What becomes of notifications that fail, on the real RabbitMQ: nothing is ever dropped."""

from __future__ import annotations

import json
from itertools import pairwise

import pytest
from kombu import Connection

from nova_autopilot.bus import Bus, Delivery
from nova_autopilot.errors import TemporaryError
from nova_autopilot.events import Event
from tests.integration import bus_support
from tests.integration.bus_support import (
    Rabbit,
    Recorder,
    body_of,
    bus_conf,
    eventually,
    nova_notifier,
    oslo_message_id,
    publish_raw,
    started,
    take_all,
)
from tests.samples import on_the_wire, sample

pytestmark = pytest.mark.integration
rabbit = bus_support.rabbit
DEAD = "nova-autopilot.notifications.dead"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"<xml>not json</xml>", "not_json"),
        (b'{"message": "caf\xe9"}', "not_utf8"),
        (json.dumps({"hello": "world"}).encode(), "unknown_shape"),
        (json.dumps({"oslo.version": "1.0", "oslo.message": "{}"}).encode(), "bad_envelope"),
        (b'{"padding": "' + b"x" * 5000 + b'"}', "too_large"),
        (b"", "empty"),
    ],
)
def test_a_malformed_notification_lands_in_the_dead_letter_queue_with_its_reason_and_body(
    rabbit: Rabbit, body: bytes, reason: str
) -> None:
    conf = bus_conf(rabbit, intake={"max_message_bytes": 4096})
    handler = Recorder()
    bus = started(Bus(conf=conf, notification_handler=handler))
    try:
        publish_raw(rabbit, [body], routing_key="versioned_notifications.error")
        publish_raw(rabbit, [on_the_wire(sample("instance-update"))])
        handler.wait_for(1)
        eventually(lambda: rabbit.queues().get(DEAD, 0) == 1, what="one dead letter")
    finally:
        bus.stop(10)

    (dead,) = take_all(rabbit, DEAD)
    assert body_of(dead) == body
    assert dead.properties["content_type"] == "application/json"
    assert dead.properties["delivery_mode"] == 2
    headers = dead.headers
    assert headers["x-autopilot-reason"] == reason
    assert headers["x-autopilot-detail"]
    assert headers["x-autopilot-source"] == "nova"
    assert headers["x-autopilot-attempts"] == 0
    assert headers["x-autopilot-queue"] == "nova-autopilot"
    assert headers["x-autopilot-exchange"] == "nova"
    assert headers["x-autopilot-routing-key"] == "versioned_notifications.error"
    assert headers["x-autopilot-failed-at"].endswith("+00:00")
    assert bus.counters()["notifications"].dead_lettered == {reason: 1}


def test_a_temporary_failure_comes_back_after_each_delay_then_is_dead_lettered(
    rabbit: Rabbit,
) -> None:
    conf = bus_conf(rabbit)

    def unavailable(event: Event, delivery: Delivery) -> None:
        raise TemporaryError("Nova answered 503")

    handler = Recorder(unavailable)
    bus = started(Bus(conf=conf, notification_handler=handler, retry_delays=[0.2, 0.4]))
    try:
        with nova_notifier(conf) as nova:
            notification = sample("instance-update")
            nova.info({}, notification["event_type"], notification["payload"])
        calls = handler.wait_for(3)
        eventually(lambda: rabbit.queues().get(DEAD, 0) == 1, what="one dead letter")
    finally:
        bus.stop(10)

    deliveries = [delivery for _, delivery in calls]
    assert [d.attempt for d in deliveries] == [1, 2, 3]
    assert len({event.message_id for event, _ in calls}) == 1
    waits = [(b.received_at - a.received_at).total_seconds() for a, b in pairwise(deliveries)]
    assert waits[0] >= 0.19
    assert waits[1] >= 0.39
    assert deliveries[1].headers["x-autopilot-last-error"] == "TemporaryError: Nova answered 503"
    (dead,) = take_all(rabbit, DEAD)
    assert dead.headers["x-autopilot-reason"] == "retries_exhausted"
    assert dead.headers["x-autopilot-attempts"] == 3
    assert dead.headers["x-autopilot-detail"] == "TemporaryError: Nova answered 503"
    assert dead.headers["x-autopilot-exchange"] == "nova"
    assert dead.headers["x-autopilot-routing-key"] == "versioned_notifications.info"
    assert oslo_message_id(dead.body) == calls[0][0].message_id
    queues = rabbit.queues()
    assert queues["nova-autopilot.retry.200ms"] == queues["nova-autopilot.retry.400ms"] == 0
    counts = bus.counters()["notifications"]
    assert (counts.received, counts.retried, counts.handled) == (3, 2, 0)
    assert counts.dead_lettered == {"retries_exhausted": 1}


def test_a_message_that_succeeds_on_its_retry_is_handled_once_and_not_dead_lettered(
    rabbit: Rabbit,
) -> None:
    conf = bus_conf(rabbit)

    def flaky(event: Event, delivery: Delivery) -> None:
        if delivery.attempt == 1:
            raise TemporaryError("the journal is locked")

    handler = Recorder(flaky)
    bus = started(Bus(conf=conf, notification_handler=handler, retry_delays=[0.2]))
    try:
        publish_raw(rabbit, [on_the_wire(sample("instance-update"))])
        calls = handler.wait_for(2)
    finally:
        bus.stop(10)

    assert [d.attempt for _, d in calls] == [1, 2]
    counts = bus.counters()["notifications"]
    assert (counts.handled, counts.retried, counts.dead_lettered) == (1, 1, {})
    assert rabbit.queues()[DEAD] == 0


def test_a_handler_bug_is_dead_lettered_and_the_bus_keeps_consuming(rabbit: Rabbit) -> None:
    conf = bus_conf(rabbit)

    def buggy(event: Event, delivery: Delivery) -> None:
        if event.event_type == "instance.update":
            raise KeyError("flavor")

    handler = Recorder(buggy)
    bus = started(Bus(conf=conf, notification_handler=handler))
    try:
        publish_raw(
            rabbit,
            [on_the_wire(sample(name)) for name in ("instance-update", "instance-delete-end")],
        )
        handler.wait_for(2)
        eventually(lambda: rabbit.queues().get(DEAD, 0) == 1, what="one dead letter")
        publish_raw(rabbit, [on_the_wire(sample("instance-create-end"))])
        handler.wait_for(3)
        assert bus.alive()
    finally:
        bus.stop(10)

    (dead,) = take_all(rabbit, DEAD)
    assert dead.headers["x-autopilot-reason"] == "handler_error: KeyError"
    assert dead.headers["x-autopilot-attempts"] == 1
    assert "flavor" in dead.headers["x-autopilot-detail"]
    counts = bus.counters()["notifications"]
    assert counts.handled == 2
    assert counts.dead_lettered == {"handler_error: KeyError": 1}


def test_a_dead_letter_queue_deleted_under_the_bus_is_declared_again_before_its_message(
    rabbit: Rabbit,
) -> None:
    conf = bus_conf(rabbit)
    handler = Recorder()
    bus = started(Bus(conf=conf, notification_handler=handler))
    try:
        with Connection(rabbit.amqp_url) as conn:
            conn.default_channel.queue_delete(DEAD)
        publish_raw(rabbit, [b"not json, and nowhere to go"])
        eventually(lambda: rabbit.queues().get(DEAD, 0) == 1, what="the dead letter kept")
        assert bus.health().intakes[0].reconnects == 1
    finally:
        bus.stop(10)

    (dead,) = take_all(rabbit, DEAD)
    assert body_of(dead) == b"not json, and nowhere to go"
    assert dead.headers["x-autopilot-reason"] == "not_json"
