# mypy: disable-error-code="no-untyped-call"
"""A broker restart under the daemon's notification queue, on a RabbitMQ node of
the tests' own (tests/integration/private_rabbit.py: the machine's shared broker
is never restarted).

With oslo.messaging's defaults (``amqp_durable_queues = false``), Nova's exchange
and queues are transient, and RabbitMQ deletes transient queues and exchanges
when it restarts. The daemon's pool queue is durable all the same (``[notifications]
pool_durable``, true by default), and Nova publishes its notifications persistent:
what waits in the pool queue outlives a restart (``rabbitmqctl stop_app`` /
``start_app``) and a crash (``kill -9`` of the node, started again on the same
data). Declared transient (``pool_durable = false``), the queue is gone after the
restart, with everything in it.

What a restart does take away, whatever the option: Nova's transient exchange,
and so the pool queue's binding to it. Until the bus has reconnected and bound
its queue again, a notification Nova publishes (oslo.messaging's notifier
reconnects by itself, declares the exchange again, and the broker confirms what
it routed nowhere) does not reach the pool queue. The bus test below asserts
that nothing is lost that Nova published before the restart or after the bus was
back, and counts, without asserting on it, what was lost in between (none, or
thousands: whichever of the Notifier and the bus reconnects first). With
``amqp_durable_queues = true`` on both sides, Nova's exchange is durable, the
binding outlives the restart, and nothing at all is lost.
"""

from __future__ import annotations

import copy
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from kombu.connection import Connection
from kombu.entity import Queue
from oslo_config import cfg

from nova_autopilot.bus import Bus, notification_broker
from nova_autopilot.bus.topology import notification_topology
from tests.integration import private_rabbit as private_rabbit_module
from tests.integration.bus_support import Recorder, bus_conf, nova_notifier, started
from tests.integration.private_rabbit import PrivateRabbit
from tests.samples import sample
from tests.waiting import until

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow(90),  # in all
    # One worker for the module: its tests share one private node.
    pytest.mark.xdist_group("private-rabbit"),
]
private_rabbit = private_rabbit_module.private_rabbit

POOL = "nova-autopilot"
#: Notifications waiting in the pool queue when the broker restarts.
WAITING = 500
NOTIFICATION = sample("instance-update")


@pytest.fixture
def node(private_rabbit: PrivateRabbit) -> Iterator[PrivateRabbit]:
    """The module's private node, running; left with no queue or exchange of the test's."""
    private_rabbit.ensure_running()
    yield private_rabbit
    private_rabbit.reset()


def declare_notification_queues(conf: cfg.ConfigOpts, node: PrivateRabbit) -> str:
    """Declare the daemon's pool queue, bound to Nova's exchange, as its bus does
    (as bench/decisions.py's ``_prepublish``); its name."""
    topology = notification_topology(conf, notification_broker(conf), delays=())
    with Connection(node.amqp_url) as conn:
        topology.declare(conn.default_channel, with_delay_queues=False)
    return topology.queue_name


def notification_about(server: str) -> dict[str, Any]:
    """Nova's ``instance.update`` sample, about server ``server``."""
    notification = copy.deepcopy(NOTIFICATION)
    notification["payload"]["nova_object.data"]["uuid"] = server
    return notification


def publish_as_nova(conf: cfg.ConfigOpts, count: int) -> set[str]:
    """``count`` notifications, each about a server of its own, published by
    oslo.messaging's Notifier as Nova's compute service builds it; their servers."""
    servers = {str(uuid.uuid4()) for _ in range(count)}
    with nova_notifier(conf) as nova:
        for server in servers:
            notification = notification_about(server)
            nova.info({}, notification["event_type"], notification["payload"])
    return servers


def take_servers(node: PrivateRabbit, queue: str) -> tuple[list[str], set[int]]:
    """Take every message of ``queue``: the server each is about, and the delivery
    modes they carry."""
    servers, modes = [], set()
    with Connection(node.amqp_url) as conn:
        bound = Queue(queue, no_declare=True)(conn.default_channel)
        while (message := bound.get(no_ack=True)) is not None:
            inner = json.loads(json.loads(message.body)["oslo.message"])
            servers.append(inner["payload"]["nova_object.data"]["uuid"])
            modes.add(message.properties.get("delivery_mode"))
    return servers, modes


def stop_and_start_app(node: PrivateRabbit) -> None:
    node.stop_app()
    node.start_app()


RESTARTS: dict[str, Callable[[PrivateRabbit], None]] = {
    "stop_app-start_app": stop_and_start_app,
    "kill-9": PrivateRabbit.restart_after_kill,
}


# --- what waits in the pool queue -------------------------------------------------------


@pytest.mark.parametrize(
    ("restart", "rabbit_options"),
    [("stop_app-start_app", {}), ("kill-9", {}), ("kill-9", {"rabbit_quorum_queue": True})],
    ids=["stop_app-start_app", "kill-9", "kill-9-quorum"],
)
def test_the_notifications_waiting_in_the_pool_queue_outlive_a_broker_restart_by_default(
    node: PrivateRabbit, restart: str, rabbit_options: dict[str, object]
) -> None:
    """Also with quorum queues (``rabbit_quorum_queue = true``, Nova's and the
    daemon's): the pool queue is a quorum queue, and Nova's exchange durable."""
    conf = bus_conf(node, oslo_messaging_rabbit=rabbit_options)
    assert conf.oslo_messaging_rabbit.amqp_durable_queues is False  # oslo.messaging's default
    assert conf.notifications.pool_durable is True
    pool = declare_notification_queues(conf, node)
    assert pool == POOL
    servers = publish_as_nova(conf, WAITING)
    until(lambda: node.queue_messages(pool) == WAITING, 30, f"{WAITING} messages in {pool}")

    RESTARTS[restart](node)

    kind = "quorum" if rabbit_options else "classic"
    # A quorum queue counts its messages once it has replayed its log.
    until(lambda: node.queue_messages(pool) == WAITING, 30, f"{WAITING} messages in {pool}")
    assert node.queue_info(pool) == {"messages": WAITING, "durable": True, "type": kind}
    # Nova's exchange, transient as Nova declares it by default, is gone, and the
    # queue's binding with it: a bus binds its queue again when it reconnects (the
    # test below). Quorum queues make Nova declare it durable: it stays.
    assert node.exchanges().get("nova") is (True if rabbit_options else None)
    taken, modes = take_servers(node, pool)
    assert sorted(taken) == sorted(servers)  # each one once, as published
    assert modes == {2}  # Nova's notifier publishes them persistent


@pytest.mark.parametrize("restart", list(RESTARTS))
def test_a_pool_queue_declared_transient_is_gone_after_a_broker_restart(
    node: PrivateRabbit, restart: str
) -> None:
    """The control: ``pool_durable = false`` with oslo.messaging's default
    ``amqp_durable_queues = false``, and the same restart loses the queue."""
    conf = bus_conf(node, notifications={"pool_durable": False})
    assert conf.oslo_messaging_rabbit.amqp_durable_queues is False
    pool = declare_notification_queues(conf, node)
    assert node.queue_durable(pool) is False
    publish_as_nova(conf, WAITING)
    until(lambda: node.queue_messages(pool) == WAITING, 30, f"{WAITING} messages in {pool}")

    RESTARTS[restart](node)

    queues = node.queues()
    assert pool not in queues  # deleted with its messages, not just emptied
    assert "versioned_notifications.info" not in queues  # Nova's own, transient too


# --- the bus through a restart ----------------------------------------------------------

BEFORE, OUTAGE, AFTER = "before", "outage", "after"


@dataclass
class Published:
    server: str
    #: The phase of the test when the Notifier was called, and when it returned.
    started: str
    ended: str


@dataclass
class NovaStream:
    """Nova publishing notifications one after the other, in a thread, with
    oslo.messaging's Notifier (which, the broker gone, retries until it is back).
    Each is recorded with the test's phase when its publication began and ended."""

    conf: cfg.ConfigOpts
    phase: str = BEFORE
    published: list[Published] = field(default_factory=list)
    error: BaseException | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _changed: threading.Condition = field(default_factory=threading.Condition)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="nova-stream", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            with nova_notifier(self.conf) as nova:
                while not self._stop.is_set():
                    server, started = str(uuid.uuid4()), self.phase
                    notification = notification_about(server)
                    nova.info({}, notification["event_type"], notification["payload"])
                    with self._changed:
                        self.published.append(Published(server, started, self.phase))
                        self._changed.notify_all()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc
            with self._changed:
                self._changed.notify_all()

    def wait_until(self, predicate: Callable[[list[Published]], bool], what: str) -> None:
        with self._changed:
            done = self._changed.wait_for(
                lambda: self.error is not None or predicate(self.published), timeout=60
            )
        assert self.error is None, f"the Notifier failed: {self.error!r}"
        assert done, f"not reached within 60 s: {what} ({len(self.published)} published)"

    def halt(self) -> None:
        """Stop publishing (after the publication in progress); wait up to 60 s."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(60)

    def stop(self) -> list[Published]:
        """:meth:`halt`; every notification published, in order."""
        self.halt()
        assert self._thread is None or not self._thread.is_alive(), "the Notifier still runs"
        assert self.error is None, f"the Notifier failed: {self.error!r}"
        return list(self.published)


@pytest.mark.parametrize(
    "rabbit_options",
    [{}, {"amqp_durable_queues": True}, {"rabbit_quorum_queue": True}],
    ids=["oslo-defaults", "amqp_durable_queues", "rabbit_quorum_queue"],
)
def test_the_bus_reconnects_after_a_broker_restart_and_loses_nothing_that_reached_its_queue(
    node: PrivateRabbit, rabbit_options: dict[str, object]
) -> None:
    """The real bus, with the daemon's defaults, consumes while Nova publishes and
    the broker is restarted (stop_app / start_app) in the middle of the stream.

    Must reach the handler (at least once): every notification whose publication
    was confirmed before the restart began (it waited in the durable queue, or had
    been handled), and every one published after the bus was attached again (its
    queue bound again to Nova's exchange). With oslo.messaging's defaults, the ones
    published meanwhile may have been routed nowhere (see the module's
    documentation): counted, not asserted. With ``amqp_durable_queues = true``
    (Nova's and the daemon's), Nova's exchange is durable, and so is the binding:
    nothing at all is lost; so it is with quorum queues (``rabbit_quorum_queue = true``
    on both sides, which makes Nova's exchange durable too).
    """
    conf = bus_conf(node, oslo_messaging_rabbit=rabbit_options)
    handler = Recorder()
    bus = started(Bus(conf=conf, notification_handler=handler))
    stream = NovaStream(conf)
    try:
        stream.start()
        handler.wait_for(100, timeout=60)

        stream.phase = OUTAGE
        node.stop_app()
        until(lambda: not bus.health().intakes[0].attached, 30, "the bus to lose its queue")
        assert not bus.alive()
        node.start_app()
        until(lambda: bus.health().intakes[0].attached, 60, "the bus to attach again")
        stream.phase = AFTER

        stream.wait_until(
            lambda published: sum(p.started == AFTER for p in published) >= 100,
            "100 notifications published after the bus was back",
        )
        published = stream.stop()
        everything = {p.server for p in published}
        must_arrive = {p.server for p in published if p.ended == BEFORE or p.started == AFTER}
        if rabbit_options:
            must_arrive = everything
        handler.wait_until(
            lambda calls: must_arrive <= {event.instance_id for event, _ in calls}, timeout=60
        )
        health = bus.health().intakes[0]
        assert bus.alive()
    finally:
        stream.halt()
        bus.stop(10)

    calls = handler.calls
    received = [event.instance_id for event, _ in calls]
    in_between = everything - {p.server for p in published if p.ended == BEFORE}
    in_between -= {p.server for p in published if p.started == AFTER}
    lost_in_between = in_between - set(received)
    assert health.reconnects == 1
    assert health.attached
    assert not (must_arrive - set(received)), "notifications lost"
    assert set(received) <= everything
    print(  # the report of the run (pytest -s, or -rA)
        f"{'+'.join(f'{k}={v}' for k, v in rabbit_options.items()) or 'oslo defaults'}: "
        f"published {len(published)}: {sum(p.ended == BEFORE for p in published)} before the "
        f"restart, {len(in_between)} during it, {sum(p.started == AFTER for p in published)} "
        f"after; handled {len(received)} times, {len(set(received))} distinct, "
        f"{len(received) - len(set(received))} duplicates, "
        f"{sum(bool(d.redelivered) for _, d in calls)} redelivered; "
        f"lost while the bus was away: {len(lost_in_between)} of {len(in_between)}"
    )
