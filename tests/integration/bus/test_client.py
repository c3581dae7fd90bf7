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
