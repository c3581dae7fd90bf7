"""The whole bus on the in-process broker (``memory://``), as the embedded demo runs it.

The same code as on RabbitMQ; only the transport URL differs. Every test uses
exchange and queue names of its own: the in-process broker is shared by the
whole test process.
"""

from __future__ import annotations

import json
import threading
import uuid
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from kombu import Connection, Exchange, Producer, Queue
from oslo_config import cfg

from nova_autopilot.bus import Bus, Delivery
from nova_autopilot.errors import BadMessage, TemporaryError
from nova_autopilot.events import Event
from tests import memory_bus
from tests.integration.bus_support import SERVER, Recorder, request_body
from tests.memory_bus import started, wait_for_messages
from tests.samples import on_the_wire, sample

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import oslo_messaging


conf = memory_bus.conf
broker = memory_bus.broker


@pytest.fixture
def nova(conf: cfg.ConfigOpts) -> Iterator[Any]:
    """oslo.messaging's Notifier, as Nova sends its versioned notifications."""
    transport = oslo_messaging.get_notification_transport(conf)
    yield oslo_messaging.Notifier(
        transport,
        publisher_id="nova-compute:compute-1",
        driver="messagingv2",
        topics=["versioned_notifications"],
    )
    transport.cleanup()


def publish_raw(
    broker: Connection, body: bytes, *, exchange: str, routing_key: str, **props: Any
) -> None:
    Producer(broker.default_channel).publish(
        body,
        exchange=Exchange(exchange, type="topic"),
        routing_key=routing_key,
        content_type="application/json",
        content_encoding="utf-8",
        **props,
    )


def take_all(broker: Connection, queue: str) -> list[Any]:
    messages = []
    while (message := Queue(queue)(broker.default_channel).get(no_ack=True)) is not None:
        messages.append(message)
    return messages


def test_novas_notifications_reach_the_handler_as_events_with_their_delivery(
    conf: cfg.ConfigOpts, nova: Any
) -> None:
    handler = Recorder()
    bus = started(Bus(conf=conf, notification_handler=handler))
    update, error = sample("instance-update"), sample("instance-create-error")

    nova.info({}, update["event_type"], update["payload"])
    nova.error({}, error["event_type"], error["payload"])
    calls = handler.wait_for(2)
    bus.stop(5)

    assert sorted(event.event_type for event, _ in calls) == [
        "instance.create.error",
        "instance.update",
    ]
    event, delivery = next(c for c in calls if c[0].event_type == "instance.update")
    assert event.instance_id == SERVER
    assert event.source == delivery.source == "nova"
    assert delivery.message_id == event.message_id is not None
    assert delivery.attempt == 1
    assert delivery.queue == conf.notifications.pool


def test_a_request_reaches_the_handler_and_its_result_reaches_the_requesters_reply_queue(
    conf: cfg.ConfigOpts,
) -> None:
    bus: Bus

    def answer(event: Event, delivery: Delivery) -> None:
        bus.results.publish(
            {"request": event.request_id, "outcome": "confirmed"},
            action="resize",
            outcome="confirmed",
            correlation_id=delivery.correlation_id,
            reply_to=delivery.reply_to,
        )

    handler = Recorder(answer)
    bus = started(Bus(conf=conf, request_handler=handler))
    with bus.client() as client:
        correlation_id = client.publish_request(
            request_body("req-7"), reply_to=client.reply_queue()
        )
        reply = client.wait_for_reply(correlation_id, timeout=5)
    bus.stop(5)

    assert correlation_id == "req-7"
    assert reply.body == {"request": "req-7", "outcome": "confirmed"}
    assert reply.result_key == "result.resize.confirmed"
    event, delivery = handler.calls[0]
    assert (event.source, event.event_type) == ("request", "quota.request.approved")
    assert delivery.correlation_id == "req-7"


def test_a_private_result_goes_to_the_requester_only_never_to_the_results_exchange(
    conf: cfg.ConfigOpts, broker: Connection
) -> None:
    """A rescue's result holds the server's new password: only its requester reads it."""
    observer = Queue(
        f"observer-{uuid.uuid4().hex[:8]}",
        exchange=Exchange(conf.requests.results_exchange, type="topic"),
        routing_key="result.#",
    )
    observer(broker.default_channel).declare()
    bus = Bus(conf=conf)
    with bus.client() as client:
        reply_to = client.reply_queue()
        bus.results.reply(
            {"action": "rescue", "outcome": "rescued", "admin_password": "s3cret"},
            correlation_id="req-9",
            reply_to=reply_to,
        )
        reply = client.wait_for_reply("req-9", timeout=5)
    bus.results.publish({"action": "resize"}, action="resize", outcome="confirmed")
    seen = wait_for_messages(broker, observer.name, 1)
    bus.stop(1)

    assert reply.body["admin_password"] == "s3cret"
    assert reply.result_key == "result.rescue.rescued"
    assert [m.delivery_info["routing_key"] for m in seen] == ["result.resize.confirmed"]
    assert take_all(broker, observer.name) == []


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json at all", "not_json"),
        (json.dumps({"hello": "world"}).encode(), "unknown_shape"),
        (b'{"padding": "' + b"x" * 9000 + b'"}', "too_large"),
        (json.dumps(request_body()).encode(), "unexpected_source"),
    ],
)
def test_a_malformed_notification_is_dead_lettered_with_its_reason_and_original_body(
    conf: cfg.ConfigOpts, broker: Connection, body: bytes, reason: str
) -> None:
    handler = Recorder()
    bus = started(Bus(conf=conf, notification_handler=handler))
    publish_raw(
        broker,
        body,
        exchange=conf.notifications.exchange,
        routing_key="versioned_notifications.error",
        headers={"x-trace": "t-1"},
    )
    publish_raw(
        broker,
        on_the_wire(sample("instance-update")),
        exchange=conf.notifications.exchange,
        routing_key="versioned_notifications.info",
    )
    handler.wait_for(1)
    bus.stop(5)

    (dead,) = take_all(broker, conf.notifications.dead_letter_queue)
    assert dead.body == body
    assert dead.headers["x-autopilot-reason"] == reason
    assert dead.headers["x-autopilot-detail"]
    assert dead.headers["x-autopilot-source"] == "nova"
    assert dead.headers["x-autopilot-failed-at"].startswith("20")
    assert dead.headers["x-autopilot-attempts"] == 0
    assert dead.headers["x-autopilot-exchange"] == conf.notifications.exchange
    assert dead.headers["x-autopilot-routing-key"] == "versioned_notifications.error"
    assert dead.headers["x-trace"] == "t-1"
    assert bus.counters()["notifications"].dead_lettered == {reason: 1}
    assert len(handler.calls) == 1


def test_a_temporary_failure_is_retried_with_attempt_counts_then_dead_lettered(
    conf: cfg.ConfigOpts, broker: Connection, nova: Any
) -> None:
    def busy(event: Event, delivery: Delivery) -> None:
        raise TemporaryError("the journal is busy")

    handler = Recorder(busy)
    bus = started(Bus(conf=conf, notification_handler=handler, retry_delays=[0.05, 0.1]))
    update = sample("instance-update")
    nova.info({}, update["event_type"], update["payload"])

    calls = handler.wait_for(3)
    dead = wait_for_messages(broker, conf.notifications.dead_letter_queue, 1)
    bus.stop(5)

    assert [delivery.attempt for _, delivery in calls] == [1, 2, 3]
    assert len({event.message_id for event, _ in calls}) == 1
    assert (calls[2][1].received_at - calls[1][1].received_at).total_seconds() >= 0.1
    assert dead[0].headers["x-autopilot-reason"] == "retries_exhausted"
    assert dead[0].headers["x-autopilot-attempts"] == 3
    assert "the journal is busy" in dead[0].headers["x-autopilot-detail"]
    counts = bus.counters()["notifications"]
    assert (counts.received, counts.retried, counts.handled) == (3, 2, 0)
    assert counts.dead_lettered == {"retries_exhausted": 1}


def test_a_handler_bug_is_dead_lettered_and_the_bus_keeps_consuming(
    conf: cfg.ConfigOpts, broker: Connection, nova: Any
) -> None:
    def buggy(event: Event, delivery: Delivery) -> None:
        if event.event_type == "instance.update":
            raise KeyError("flavor")

    handler = Recorder(buggy)
    bus = started(Bus(conf=conf, notification_handler=handler))
    for name in ("instance-update", "instance-delete-end"):
        notification = sample(name)
        nova.info({}, notification["event_type"], notification["payload"])

    handler.wait_for(2)
    dead = wait_for_messages(broker, conf.notifications.dead_letter_queue, 1)
    alive = bus.alive()
    bus.stop(5)

    assert alive
    assert dead[0].headers["x-autopilot-reason"] == "handler_error: KeyError"
    assert json.loads(json.loads(dead[0].body)["oslo.message"])["event_type"] == "instance.update"
    counts = bus.counters()["notifications"]
    assert counts.handled == 1
    assert counts.dead_lettered == {"handler_error: KeyError": 1}


def test_an_unsigned_request_is_rejected_before_parsing(
    conf: cfg.ConfigOpts, broker: Connection
) -> None:
    def verify(body: bytes, headers: Any) -> None:
        if "x-signature" not in headers:
            raise BadMessage("unsigned", "no x-signature header")

    handler = Recorder()
    bus = started(Bus(conf=conf, request_handler=handler, verify=verify))
    with bus.client() as client:
        client.publish_request(request_body("req-unsigned"))
        client.publish_request(request_body("req-signed"), headers={"x-signature": "ok"})
    handler.wait_for(1)
    dead_queue = f"{conf.requests.queue}.dead"
    dead = wait_for_messages(broker, dead_queue, 1)
    bus.stop(5)

    assert [event.request_id for event, _ in handler.calls] == ["req-signed"]
    assert dead[0].headers["x-autopilot-reason"] == "unsigned"
    assert json.loads(dead[0].body)["id"] == "req-unsigned"


def test_stopping_in_the_middle_loses_nothing_a_new_bus_gets_the_rest(
    conf: cfg.ConfigOpts, broker: Connection
) -> None:
    release = threading.Event()
    first_calls = threading.Event()

    def slow(event: Event, delivery: Delivery) -> None:
        first_calls.set()
        release.wait(5)

    bodies = [on_the_wire(sample("instance-update")) for _ in range(200)]
    first = Recorder(slow)
    bus = started(Bus(conf=conf, notification_handler=first))
    for body in bodies:
        publish_raw(
            broker,
            body,
            exchange=conf.notifications.exchange,
            routing_key="versioned_notifications.info",
        )
    assert first_calls.wait(5)
    stopping = threading.Thread(target=bus.stop, args=(5,))
    stopping.start()
    release.set()
    stopping.join()

    second = Recorder()
    again = started(Bus(conf=conf, notification_handler=second))
    handled_first = {e.message_id for e, _ in first.calls}
    second.wait_for(len(bodies) - bus.counters()["notifications"].handled)
    again.stop(5)

    sent = {json.loads(json.loads(b)["oslo.message"])["message_id"] for b in bodies}
    assert handled_first | {e.message_id for e, _ in second.calls} == sent
    counts = bus.counters()["notifications"]
    assert counts.received == counts.settled


def test_the_bus_is_alive_while_attached_and_not_after_stopping(conf: cfg.ConfigOpts) -> None:
    bus = started(Bus(conf=conf, notification_handler=Recorder(), request_handler=Recorder()))

    assert bus.alive()
    health = bus.health()
    assert [h.name for h in health.intakes] == ["notifications", "requests"]
    assert all(h.attached and h.in_flight == 0 for h in health.intakes)
    assert bus.stop(5)
    assert not bus.alive()
    with pytest.raises(RuntimeError, match="starts once"):
        bus.start()


def test_a_bus_stopped_before_it_started_has_nothing_to_stop(conf: cfg.ConfigOpts) -> None:
    bus = Bus(conf=conf, notification_handler=Recorder())

    assert bus.stop(1)
    assert not bus.alive()
    with pytest.raises(RuntimeError, match="starts once"):
        bus.start()
