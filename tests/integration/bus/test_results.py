"""Results on the real RabbitMQ, the standard AMQP way: to the results exchange
and to the requester's reply queue, with the request's correlation id."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kombu import Connection, Exchange, Queue

from nova_autopilot.bus import Bus, Delivery, RequestClient
from nova_autopilot.events import Event
from tests.integration import bus_support
from tests.integration.bus_support import (
    Rabbit,
    Recorder,
    body_of,
    bus_conf,
    request_body,
    started,
    take_all,
)

pytestmark = pytest.mark.integration
rabbit = bus_support.rabbit


def observe(rabbit: Rabbit, conf: Any, name: str, routing_key: str) -> None:
    """A queue ``name`` of the test's, bound to the results exchange by ``routing_key``."""
    queue = Queue(
        name,
        exchange=Exchange(conf.requests.results_exchange, type="topic", durable=True),
        routing_key=routing_key,
    )
    with Connection(rabbit.amqp_url) as conn:
        queue.bind(conn.default_channel).declare()


def test_a_request_reaches_the_handler_and_its_result_comes_back_with_its_correlation_id(
    rabbit: Rabbit,
) -> None:
    conf = bus_conf(rabbit)
    bus: Bus

    def answer(event: Event, delivery: Delivery) -> None:
        bus.results.publish(
            {"request": event.request_id, "server": event.instance_id, "outcome": "confirmed"},
            action="resize",
            outcome="confirmed",
            correlation_id=delivery.correlation_id,
            reply_to=delivery.reply_to,
        )

    handler = Recorder(answer)
    bus = started(Bus(conf=conf, request_handler=handler))
    observe(rabbit, conf, "observer", "result.resize.#")
    try:
        with RequestClient.from_conf(conf) as client:
            correlation_id = client.publish_request(
                request_body("quota-2026-0042"), reply_to=client.reply_queue()
            )
            reply = client.wait_for_reply(correlation_id, timeout=15)
    finally:
        bus.stop(10)

    assert correlation_id == "quota-2026-0042"
    assert reply.correlation_id == "quota-2026-0042"
    assert reply.result_key == "result.resize.confirmed"
    assert reply.body == {
        "request": "quota-2026-0042",
        "server": bus_support.SERVER,
        "outcome": "confirmed",
    }
    (event, delivery), *_ = handler.calls
    assert (event.source, event.event_type, event.request_id) == (
        "request",
        "quota.request.approved",
        "quota-2026-0042",
    )
    assert delivery.correlation_id == "quota-2026-0042"
    assert delivery.routing_key == "request.quota.request.approved"
    (copy,) = take_all(rabbit, "observer")
    assert json.loads(copy.body) == reply.body
    assert copy.properties["correlation_id"] == "quota-2026-0042"
    assert copy.properties["delivery_mode"] == 2


def test_results_published_while_the_broker_is_out_of_reach_arrive_once_it_is_back_in_order(
    rabbit: Rabbit,
) -> None:
    """The outbox: publishing returns at once; results the broker cannot take now
    (the daemon's user locked out, its connections closed) are sent again until it
    can, in the order they were published, each in one transaction of a batch."""
    from nova_autopilot.bus.connection import request_broker
    from nova_autopilot.bus.results import ResultPublisher
    from nova_autopilot.bus.topology import results_exchange

    conf = bus_conf(rabbit)
    observe(rabbit, conf, "ordered", "result.#")
    publisher = ResultPublisher(broker=request_broker(conf), exchange=results_exchange(conf))
    try:
        publisher.publish({"n": 0}, action="rescue", outcome="dry_run")
        assert publisher.flush(15)
        rabbit.lock_out()
        rabbit.close_all_connections()
        for n in range(1, 200):
            publisher.publish({"n": n}, action="rescue", outcome="dry_run")
        assert not publisher.flush(2)  # the broker refuses the daemon's user meanwhile
        rabbit.let_in()
        assert publisher.flush(60)
    finally:
        rabbit.let_in()
        publisher.close()

    numbers = [json.loads(message.body)["n"] for message in take_all(rabbit, "ordered")]
    assert numbers == list(range(200))
    assert publisher.published == 200


def test_results_and_replies_carry_what_kombus_producer_would_have_sent(rabbit: Rabbit) -> None:
    """The sender writes py-amqp's frames itself: each message it sends (a result, its
    copy to the reply queue, a progress update) has the body, properties and headers
    that kombu's producer gives the same message."""
    from kombu.messaging import Producer

    from nova_autopilot.bus.connection import request_broker
    from nova_autopilot.bus.results import ResultPublisher
    from nova_autopilot.bus.topology import results_exchange

    conf = bus_conf(rabbit)
    observe(rabbit, conf, "sent", "#")
    with Connection(rabbit.amqp_url) as conn:
        for name in ("reply", "expected"):
            Queue(name)(conn.default_channel).declare()
    publisher = ResultPublisher(broker=request_broker(conf), exchange=results_exchange(conf))
    try:
        publisher.publish(
            {"outcome": "confirmed", "at": "2026-12-07"},
            action="resize",
            outcome="confirmed",
            correlation_id="quota-7",
            reply_to="reply",
        )
        publisher.progress(
            {"phase": "waiting"}, action="resize", phase="waiting", correlation_id="quota-7"
        )
        assert publisher.flush(15)
    finally:
        publisher.close()
    sent = take_all(rabbit, "sent") + take_all(rabbit, "reply")
    assert len(sent) == 3

    with Connection(rabbit.amqp_url) as conn:
        producer = Producer(conn.default_channel)
        for message in sent:
            properties = dict(message.properties)
            headers = properties.pop("application_headers")
            producer.publish(
                body_of(message), routing_key="expected", headers=headers, **properties
            )
    expected = take_all(rabbit, "expected")
    assert [m.properties for m in sent] == [m.properties for m in expected]
    assert [body_of(m) for m in sent] == [body_of(m) for m in expected]
    first = sent[0].properties
    assert (first["correlation_id"], first["delivery_mode"]) == ("quota-7", 2)
    assert (first["content_type"], first["content_encoding"]) == ("application/json", "utf-8")
    assert first["application_headers"] == {
        "x-autopilot-action": "resize",
        "x-autopilot-outcome": "confirmed",
    }
    assert {m.delivery_info["routing_key"] for m in sent} == {
        "result.resize.confirmed",
        "progress.resize.waiting",
        "reply",
    }
