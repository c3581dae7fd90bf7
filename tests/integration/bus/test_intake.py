"""The bus when the broker goes away, and when the daemon stops: nothing is lost.

Delivery is at least once: after a lost connection the broker delivers the
unacknowledged messages again, so the handler may see a message twice (the
engine drops duplicates by message id). These tests check that every message
arrives, that duplicates are only ever re-deliveries, and that every outcome
is counted.
"""

from __future__ import annotations

import copy
import threading
import time
import uuid
from collections import Counter
from typing import Any

import amqp.channel
import pytest
from kombu import Connection, Exchange, Producer

from nova_autopilot.bus import Bus, Delivery
from nova_autopilot.daemon.health import Liveness
from nova_autopilot.events import Event
from tests.integration import bus_support
from tests.integration.bus_support import (
    Rabbit,
    Recorder,
    body_of,
    bus_conf,
    eventually,
    oslo_message_id,
    publish_raw,
    started,
    take_all,
)
from tests.samples import on_the_wire, sample

pytestmark = pytest.mark.integration
rabbit = bus_support.rabbit
DEAD = "nova-autopilot.notifications.dead"


def notifications(count: int) -> list[bytes]:
    """``count`` Nova notifications, each with a message id of its own."""
    template = sample("instance-update")
    return [on_the_wire(dict(template, message_id=str(uuid.uuid4()))) for _ in range(count)]


class Stream(threading.Thread):
    """Publishes ``bodies`` at ``rate`` per second, reconnecting (and re-sending
    what was not confirmed) when its connection is closed under it."""

    def __init__(self, rabbit: Rabbit, bodies: list[bytes], rate: float) -> None:
        super().__init__(name="stream", daemon=True)
        self._rabbit, self._bodies, self._rate = rabbit, bodies, rate
        self.error: BaseException | None = None
        self.sent = 0

    def run(self) -> None:
        try:
            with Connection(
                self._rabbit.amqp_url, transport_options={"confirm_publish": True}
            ) as conn:
                producer = Producer(conn)
                nova = Exchange("nova", type="topic", durable=False, no_declare=True)
                pace = threading.Event()
                for index, body in enumerate(self._bodies):
                    if index and index % 50 == 0:
                        pace.wait(50 / self._rate)  # pacing the stream, not waiting for a result
                    producer.publish(
                        body,
                        exchange=nova,
                        routing_key="versioned_notifications.info",
                        content_type="application/json",
                        content_encoding="utf-8",
                        retry=True,
                        retry_policy={"max_retries": 30, "interval_start": 0.1, "interval_max": 1},
                    )
                    self.sent += 1
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc


def test_three_broker_disconnections_during_a_stream_lose_nothing(rabbit: Rabbit) -> None:
    conf = bus_conf(rabbit)
    handler = Recorder()
    bus = started(Bus(conf=conf, notification_handler=handler))
    valid = notifications(4850)
    malformed = [f"not json #{i}".encode() for i in range(150)]
    bodies = list(valid)
    for i, bad in enumerate(malformed):
        bodies.insert(i * 33, bad)
    stream = Stream(rabbit, bodies, rate=600)
    stream.start()
    try:
        for round_, handled in enumerate((1000, 2500, 4000), start=1):
            handler.wait_for(handled, timeout=60)
            rabbit.close_all_connections()
            eventually(
                lambda r=round_: bus.health().intakes[0].reconnects >= r and bus.alive(),
                timeout=30,
                what=f"reconnection {round_}",
            )
        stream.join(120)
        assert stream.error is None, stream.error
        assert not stream.is_alive()
        expected = {oslo_message_id(body) for body in valid}
        handler.wait_until(lambda calls: {e.message_id for e, _ in calls} >= expected, 60)
        eventually(lambda: rabbit.queues().get("nova-autopilot", 1) == 0, what="queue drained")
        eventually(lambda: bus.health().intakes[0].in_flight == 0, what="all settled")
    finally:
        bus.stop(10)

    calls = handler.calls
    handled = Counter(event.message_id for event, _ in calls)
    assert set(handled) == expected
    counts = bus.counters()["notifications"]
    assert counts.received == counts.settled
    assert counts.handled >= len(expected)
    assert bus.health().intakes[0].reconnects == 3
    dead_bodies = {body_of(message) for message in take_all(rabbit, DEAD)}
    assert dead_bodies == set(malformed)
    assert counts.dead_lettered["not_json"] >= len(malformed)
    print(
        f"{len(calls)} handler calls for {len(expected)} messages "
        f"({len(calls) - len(expected)} duplicates); counters {counts.as_dict()}"
    )


def test_alive_turns_false_while_the_broker_is_out_of_reach_and_true_once_back(
    rabbit: Rabbit,
) -> None:
    conf = bus_conf(rabbit, oslo_messaging_rabbit={"rabbit_retry_interval": 1})
    handler = Recorder()
    bus = started(Bus(conf=conf, notification_handler=handler, request_handler=Recorder()))
    try:
        assert bus.alive()
        rabbit.lock_out()
        rabbit.close_all_connections()

        eventually(lambda: not bus.alive(), what="not alive")
        eventually(lambda: all(h.last_error for h in bus.health().intakes), what="errors reported")
        assert not bus.health().alive
        # Out of reach, but trying again and again: reconnecting, for several attempts
        # (a wedge for the watchdog only once the thread stops trying).
        eventually(lambda: all(h.reconnects for h in bus.health().intakes), what="reconnects")
        for _ in range(3):
            assert all(h.reconnecting and not h.attached for h in bus.health().intakes)
            time.sleep(1)  # an attempt a second (rabbit_retry_interval)
        liveness = Liveness(
            bus_health=bus.health, runner_responsive=lambda within: True, wedged_after=0.5
        )
        assert liveness.check().alive, liveness.check().problems
        rabbit.let_in()
        eventually(bus.alive, timeout=30, what="alive again")

        publish_raw(rabbit, notifications(1))
        handler.wait_for(1)
    finally:
        bus.stop(10)
    assert all(h.reconnects == 1 for h in bus.health().intakes)
    assert not any(h.reconnecting for h in bus.health().intakes)  # stopped: not trying


def test_a_consumer_attached_again_after_a_long_outage_counts_as_turning_at_once(
    rabbit: Rabbit, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Attached again, a consumer is turning from that moment: its last turn, from
    before the outage, no longer counts. (It did until its first turn after the
    outage, and the watchdog saw a wedge for that moment: 'consumer not turning'.)
    The first turn after the outage is held here, to look at that moment."""
    conf = bus_conf(rabbit, oslo_messaging_rabbit={"rabbit_retry_interval": 1})
    bus = started(Bus(conf=conf, notification_handler=Recorder()))
    (intake,) = bus.intakes
    monkeypatch.setattr(intake, "_liveness", 1.0)  # a turn at least every second
    first_turn = threading.Event()
    turn = intake._pump
    try:
        rabbit.lock_out()
        rabbit.close_all_connections()
        eventually(lambda: not intake.health().attached, what="detached")
        time.sleep(2)  # twice the time a turn may take: the last one is long past
        monkeypatch.setattr(intake, "_pump", lambda: (first_turn.wait(30), turn()))
        rabbit.let_in()
        eventually(lambda: intake.health().attached, timeout=30, what="attached again")
        assert intake.alive()
        first_turn.set()
        eventually(bus.alive, what="turning")
    finally:
        first_turn.set()
        bus.stop(10)


def test_stop_lets_the_call_in_progress_finish_and_a_new_bus_gets_the_rest(
    rabbit: Rabbit,
) -> None:
    conf = bus_conf(rabbit)
    bodies = notifications(2000)
    in_call, release = threading.Event(), threading.Event()

    def slow_at_300(event: Event, delivery: Delivery) -> None:
        if len(first.calls) == 300:
            in_call.set()
            release.wait(30)

    first = Recorder(slow_at_300)
    bus = started(Bus(conf=conf, notification_handler=first))
    publish_raw(rabbit, bodies)
    assert in_call.wait(30)
    stopping = threading.Thread(target=lambda: results.append(bus.stop(20)))
    results: list[bool] = []
    stopping.start()
    eventually(lambda: not bus.alive(), what="consumer cancelled")
    release.set()
    stopping.join(30)

    assert results == [True]
    held = first.calls[299][0].message_id
    counts = bus.counters()["notifications"]
    assert counts.received == counts.settled
    assert counts.handled == len(first.calls)

    second = Recorder()
    again = started(Bus(conf=conf, notification_handler=second))
    try:
        expected = {oslo_message_id(body) for body in bodies}
        second.wait_until(
            lambda calls: first.message_ids() | {e.message_id for e, _ in calls} >= expected
        )
    finally:
        again.stop(10)
    assert held not in second.message_ids()  # handled during the stop, so acknowledged
    assert not first.message_ids() & second.message_ids()


def test_stop_returns_after_its_timeout_and_leaves_the_unfinished_message_with_the_broker(
    rabbit: Rabbit,
) -> None:
    conf = bus_conf(rabbit)
    release = threading.Event()

    def hang(event: Event, delivery: Delivery) -> None:
        release.wait(30)

    stuck = Recorder(hang)
    bus = started(Bus(conf=conf, notification_handler=stuck))
    publish_raw(rabbit, notifications(1))
    stuck.wait_for(1)

    assert bus.stop(0.5) is False
    release.set()
    second = Recorder()
    again = started(Bus(conf=conf, notification_handler=second))
    try:
        (call,) = second.wait_for(1)
    finally:
        again.stop(10)

    assert call[0].message_id == stuck.calls[0][0].message_id
    assert call[1].redelivered
    counts = bus.counters()["notifications"]
    assert (counts.received, counts.handled, counts.abandoned) == (1, 0, 1)


def test_a_deleted_queue_is_declared_again_and_consumed(rabbit: Rabbit) -> None:
    conf = bus_conf(rabbit)
    handler = Recorder()
    bus = started(Bus(conf=conf, notification_handler=handler))
    try:
        with Connection(rabbit.amqp_url) as conn:
            conn.default_channel.queue_delete("nova-autopilot")
        eventually(
            lambda: bus.health().intakes[0].reconnects == 1 and bus.alive(),
            what="consumer back on a new queue",
        )
        publish_raw(rabbit, notifications(1))
        handler.wait_for(1)
    finally:
        bus.stop(10)
    assert "ConsumerCancelled" in (bus.health().intakes[0].last_error or "")


def test_the_messages_settled_in_one_turn_are_acknowledged_together(
    rabbit: Rabbit, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Eight handler threads give a turn's messages back in lists, in any order:
    settled together, the run of deliveries they complete is acknowledged with one
    ``multiple`` ack, not one by one for every list finished before an older one."""
    acks: list[tuple[int, bool]] = []
    basic_ack = amqp.channel.Channel.basic_ack

    def spy(channel: Any, delivery_tag: int, multiple: bool = False, *args: Any) -> Any:
        acks.append((delivery_tag, multiple))
        return basic_ack(channel, delivery_tag, multiple, *args)

    conf = bus_conf(rabbit)
    assert conf.notifications.executor_threads == 8
    started(Bus(conf=conf, notification_handler=Recorder())).stop(10)  # its queue, empty
    bodies = []
    for _ in range(400):  # each about a server of its own: the threads share them
        notification = copy.deepcopy(sample("instance-update"))
        notification["message_id"] = str(uuid.uuid4())
        notification["payload"]["nova_object.data"]["uuid"] = str(uuid.uuid4())
        bodies.append(on_the_wire(notification))
    publish_raw(rabbit, bodies)
    monkeypatch.setattr(amqp.channel.Channel, "basic_ack", spy)
    handler = Recorder()
    bus = started(Bus(conf=conf, notification_handler=handler))
    try:
        handler.wait_for(len(bodies), timeout=60)
        eventually(lambda: bus.health().intakes[0].in_flight == 0, what="all settled")
        eventually(lambda: rabbit.queues().get("nova-autopilot", 1) == 0, what="queue drained")
    finally:
        bus.stop(10)
    assert len({event.instance_id for event, _ in handler.calls}) == len(bodies)
    assert bus.counters()["notifications"].handled == len(bodies)
    assert len(acks) < len(bodies) / 4, f"{len(acks)} acks for {len(bodies)} messages"
    assert sum(multiple for _, multiple in acks) >= len(acks) / 2
