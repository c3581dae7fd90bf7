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
    The client waiting for its reply and the results publisher between two results
    keep theirs; a bare kombu connection, idle as long, is dropped."""
    import dataclasses

    from kombu.connection import Connection

    from nova_autopilot.bus.connection import request_broker
    from nova_autopilot.bus.results import ResultPublisher
    from nova_autopilot.bus.topology import request_exchange, results_exchange

    conf = bus_conf(rabbit)
    broker = dataclasses.replace(request_broker(conf), heartbeat=2, heartbeat_rate=2)
    publisher = ResultPublisher(broker=broker, exchange=results_exchange(conf))
    bare = Connection(rabbit.amqp_url, heartbeat=2)
    try:
        with RequestClient(broker=broker, exchange=request_exchange(conf)) as client:
            reply_to = client.reply_queue()
            publisher.publish({"warm": True}, action="resize", outcome="confirmed")
            assert publisher.flush(10)
            bare.connect()
            assert rabbit.connection_count() == 3

            with pytest.raises(TimeoutError):  # 8 s of nothing: four heartbeats
                client.wait_for_reply("nobody-answers", timeout=8)

            assert rabbit.connection_count() == 2  # the bare one was dropped
            publisher.reply({"outcome": "confirmed"}, correlation_id="c-1", reply_to=reply_to)
            reply = client.wait_for_reply("c-1", timeout=10)
            assert reply.body == {"outcome": "confirmed"}
            assert publisher.flush(10)
            assert publisher.published == 2
            assert rabbit.connection_count() == 2  # the publisher did not reconnect
    finally:
        publisher.close()
        bare.collect()
