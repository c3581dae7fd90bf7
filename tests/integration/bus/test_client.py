"""The request client on the real RabbitMQ: what it publishes waits in the
daemon's durable request queue, which it declares exactly as the daemon does."""

from __future__ import annotations

import pytest

from nova_autopilot.bus import Bus, RequestClient
from tests.integration import bus_support
from tests.integration.bus_support import Rabbit, Recorder, bus_conf, request_body, started

pytestmark = pytest.mark.integration
rabbit = bus_support.rabbit


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


def test_connections_that_wait_idle_past_two_heartbeats_stay_open(rabbit: Rabbit) -> None:
    """A 2 s heartbeat: RabbitMQ drops a connection that sends none for two of them.
    The bus's two consumers (notifications, requests) waiting for a message, the
    client waiting for its reply and the results publisher between two results keep
    theirs, and each takes its next message on the connection it had; a bare kombu
    connection, idle as long, is dropped."""
    from kombu.connection import Connection

    from nova_autopilot.bus.connection import request_broker
    from nova_autopilot.bus.results import ResultPublisher
    from nova_autopilot.bus.topology import request_exchange, results_exchange
    from tests.samples import sample

    conf = bus_conf(
        rabbit, oslo_messaging_rabbit={"heartbeat_timeout_threshold": 2, "heartbeat_rate": 2}
    )
    broker = request_broker(conf)
    assert (broker.heartbeat, broker.heartbeat_rate) == (2, 2)
    publisher = ResultPublisher(broker=broker, exchange=results_exchange(conf))
    notifications, requests = Recorder(), Recorder()
    bus = started(Bus(conf=conf, notification_handler=notifications, request_handler=requests))
    bare = Connection(rabbit.amqp_url, heartbeat=2)
    try:
        with RequestClient(broker=broker, exchange=request_exchange(conf)) as client:
            reply_to = client.reply_queue()
            publisher.publish({"warm": True}, action="resize", outcome="confirmed")
            assert publisher.flush(10)
            bare.connect()
            assert rabbit.connection_count() == 5

            with pytest.raises(TimeoutError):  # 8 s of nothing: four heartbeats
                client.wait_for_reply("nobody-answers", timeout=8)

            assert rabbit.connection_count() == 4  # the bare one was dropped
            publisher.reply({"outcome": "confirmed"}, correlation_id="c-1", reply_to=reply_to)
            reply = client.wait_for_reply("c-1", timeout=10)
            assert reply.body == {"outcome": "confirmed"}
            assert publisher.flush(10)
            assert publisher.published == 2
            client.publish_request(request_body("after-idle"))
            requests.wait_for(1)
            with bus_support.nova_notifier(conf) as nova:
                notification = sample("instance-update")
                nova.info({}, notification["event_type"], notification["payload"])
            notifications.wait_for(1)
            # Nobody reconnected: the publisher, the client and both consumers.
            assert rabbit.connection_count() == 4
            assert [h.reconnects for h in bus.health().intakes] == [0, 0]
    finally:
        bus.stop(10)
        publisher.close()
        bare.collect()
