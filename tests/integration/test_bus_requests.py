"""Operator requests and their results on the real RabbitMQ, the standard AMQP way."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest
from kombu import Connection, Exchange, Queue

from nova_autopilot.bus import Bus, Delivery, RequestClient
from nova_autopilot.errors import BadMessage
from nova_autopilot.events import Event
from tests.integration import bus_support
from tests.integration.bus_support import (
    Rabbit,
    Recorder,
    bus_conf,
    eventually,
    request_body,
    started,
    take_all,
)

pytestmark = pytest.mark.integration
rabbit = bus_support.rabbit


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
    observer = Queue(
        "observer",
        exchange=Exchange(conf.requests.results_exchange, type="topic", durable=True),
        routing_key="result.resize.#",
    )
    with Connection(rabbit.amqp_url) as conn:
        observer.bind(conn.default_channel).declare()
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


def test_a_request_sent_before_the_daemon_ever_ran_waits_in_its_durable_queue(
    rabbit: Rabbit,
) -> None:
    conf = bus_conf(rabbit)
    with RequestClient.from_conf(conf) as client:
        client.publish_request(request_body("early-1"))
    assert rabbit.queues()["nova-autopilot.requests"] == 1

    handler = Recorder()
    bus = started(Bus(conf=conf, request_handler=handler))
    try:
        (call,) = handler.wait_for(1)
    finally:
        bus.stop(10)
    assert call[0].request_id == "early-1"


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
