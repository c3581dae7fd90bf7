"""The RabbitMQ permissions docs/messaging.md documents for the daemon's user are enough.

On Nova's own broker the daemon should not run as Nova's user: it gets a user
of its own, allowed to declare and read Nova's exchange and its own
``nova-autopilot*`` queues and exchanges, and nothing else.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from urllib.parse import quote

import pytest

from nova_autopilot.bus import Bus, Delivery, RequestClient
from nova_autopilot.errors import TemporaryError
from nova_autopilot.events import Event
from tests.integration import bus_support
from tests.integration.bus_support import (
    HOST,
    PORT,
    Rabbit,
    Recorder,
    bus_conf,
    eventually,
    nova_notifier,
    publish_raw,
    request_body,
    started,
)
from tests.samples import sample

pytestmark = pytest.mark.integration
rabbit = bus_support.rabbit

#: As documented in docs/messaging.md ("Running it against Nova's broker").
CONFIGURE = r"^(nova|nova-autopilot.*)$"
WRITE = r"^(amq\.default|nova-autopilot.*)$"
READ = r"^(nova|nova-autopilot.*)$"


@pytest.fixture
def autopilot_url(rabbit: Rabbit) -> Iterator[str]:
    """The transport URL of a user with only the documented permissions."""
    user, password = f"autopilot-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    bus_support._ctl("add_user", user, password)
    try:
        bus_support._ctl("set_permissions", "-p", rabbit.vhost, user, CONFIGURE, WRITE, READ)
        yield f"rabbit://{user}:{password}@{HOST}:{PORT}/{quote(rabbit.vhost)}"
    finally:
        bus_support._ctl("delete_user", user)


def test_the_documented_permissions_are_enough_for_every_path_of_the_bus(
    rabbit: Rabbit, autopilot_url: str
) -> None:
    nova_conf = bus_conf(rabbit)  # Nova and the requester: the administrator's user
    conf = bus_conf(rabbit, DEFAULT={"transport_url": autopilot_url})
    bus: Bus

    def flaky_then_answer(event: Event, delivery: Delivery) -> None:
        if delivery.attempt == 1:
            raise TemporaryError("first time unlucky")
        if event.source == "request":
            bus.results.publish(
                {"ok": True},
                action="resize",
                outcome="confirmed",
                correlation_id=delivery.correlation_id,
                reply_to=delivery.reply_to,
            )

    notifications, requests = Recorder(flaky_then_answer), Recorder(flaky_then_answer)
    bus = started(
        Bus(
            conf=conf,
            notification_handler=notifications,
            request_handler=requests,
            retry_delays=[0.2],
        )
    )
    try:
        with nova_notifier(nova_conf) as nova:
            notification = sample("instance-update")
            nova.info({}, notification["event_type"], notification["payload"])
        publish_raw(rabbit, [b"not json"])
        with RequestClient.from_conf(nova_conf) as client:
            correlation_id = client.publish_request(
                request_body("perm-1"), reply_to=client.reply_queue()
            )
            client.publish_bytes(b"{broken")
            reply = client.wait_for_reply(correlation_id, timeout=15)
        notifications.wait_for(2)
        eventually(
            lambda: (
                rabbit.queues().get("nova-autopilot.notifications.dead", 0) == 1
                and rabbit.queues().get("nova-autopilot.requests.dead", 0) == 1
            ),
            what="both dead letters",
        )
        assert bus.alive()
    finally:
        bus.stop(10)

    assert reply.body == {"ok": True}
    assert [d.attempt for _, d in notifications.calls] == [1, 2]
    assert all(h.reconnects == 0 and h.last_error is None for h in bus.health().intakes)
