"""The bus's exchanges and queues: named from the settings, declared as Nova's library would."""

from __future__ import annotations

import pytest

from nova_autopilot.bus.connection import (
    notification_broker,
    request_broker,
)
from nova_autopilot.bus.topology import (
    delay_queue_name,
    notification_topology,
    request_topology,
    results_exchange,
)
from tests.unit.bus.support import conf_with


def test_the_pool_queue_is_bound_to_info_and_error_of_every_topic_on_novas_exchange() -> None:
    conf = conf_with(notifications={"legacy_topics": ["notifications"], "pool": "autopilot"})

    topology = notification_topology(conf, notification_broker(conf), delays=[5])

    assert topology.queue_name == "autopilot"
    routes = sorted((b.exchange.name, b.routing_key) for b in topology.queue.bindings)
    assert routes == [
        ("nova", "notifications.error"),
        ("nova", "notifications.info"),
        ("nova", "versioned_notifications.error"),
        ("nova", "versioned_notifications.info"),
    ]
    assert {b.exchange.type for b in topology.queue.bindings} == {"topic"}


def test_the_pool_queue_is_durable_and_novas_exchange_follows_oslo_messagings_durability() -> None:
    plain = conf_with()
    topology = notification_topology(plain, notification_broker(plain), delays=[])
    assert topology.queue.durable  # whatever amqp_durable_queues says
    assert not next(iter(topology.queue.bindings)).exchange.durable  # as Nova declares it

    transient = conf_with(notifications={"pool_durable": False})
    topology = notification_topology(transient, notification_broker(transient), delays=[])
    assert not topology.queue.durable

    durable = conf_with(
        notifications={"pool_durable": False}, oslo_messaging_rabbit={"amqp_durable_queues": True}
    )
    topology = notification_topology(durable, notification_broker(durable), delays=[])
    assert topology.queue.durable
    assert next(iter(topology.queue.bindings)).exchange.durable

    quorum = conf_with(oslo_messaging_rabbit={"rabbit_quorum_queue": True})
    topology = notification_topology(quorum, notification_broker(quorum), delays=[])
    assert topology.queue.durable
    assert topology.queue.queue_arguments == {"x-queue-type": "quorum"}


def test_each_delay_has_a_queue_whose_ttl_sends_messages_back_to_the_work_queue() -> None:
    conf = conf_with()

    topology = notification_topology(conf, notification_broker(conf), delays=[5, 30, 0.2])

    assert [q.name for q in topology.delay_queues] == [
        "nova-autopilot.retry.5s",
        "nova-autopilot.retry.30s",
        "nova-autopilot.retry.200ms",
    ]
    first = topology.delay_queues[0]
    assert first.durable
    assert first.queue_arguments == {
        "x-message-ttl": 5000,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": "nova-autopilot",
    }
    assert topology.delay_queue(30) == "nova-autopilot.retry.30s"


def test_notifications_are_dead_lettered_straight_to_their_queue() -> None:
    conf = conf_with(notifications={"dead_letter_queue": "autopilot.dead"})

    topology = notification_topology(conf, notification_broker(conf), delays=[])

    assert topology.dead_letter_route("not_json") == ("", "autopilot.dead")
    assert topology.dead_letter_queue.durable


def test_requests_are_dead_lettered_through_their_exchange_by_reason() -> None:
    conf = conf_with()

    topology = request_topology(conf, request_broker(conf), delays=[5])

    assert topology.queue_name == "nova-autopilot.requests"
    assert topology.queue.durable
    assert topology.queue.exchange.name == "nova-autopilot.requests"
    assert topology.queue.routing_key == "#"
    assert topology.dead_letter_route("handler_error: KeyError") == (
        "nova-autopilot.dead",
        "request.handler_error",
    )
    assert topology.dead_letter_queue.name == "nova-autopilot.requests.dead"
    assert topology.dead_letter_queue.routing_key == "#"
    assert topology.delay_queue(5) == "nova-autopilot.requests.retry.5s"


def test_results_go_to_a_durable_topic_exchange() -> None:
    exchange = results_exchange(conf_with(requests={"results_exchange": "ops.results"}))

    assert (exchange.name, exchange.type, exchange.durable) == ("ops.results", "topic", True)


@pytest.mark.parametrize(
    ("delay", "name"), [(5, "q.retry.5s"), (120, "q.retry.120s"), (0.25, "q.retry.250ms")]
)
def test_delay_queues_are_named_after_their_delay(delay: float, name: str) -> None:
    assert delay_queue_name("q", delay) == name
