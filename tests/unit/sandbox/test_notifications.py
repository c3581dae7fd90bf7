"""The sandbox's versioned notifications: Nova's sequences, Nova's payloads, on Nova's bus.

The sequences are those the real Nova 34 sends (tests/e2e/test_conformance.py
compares the two); the payload shapes are those of Nova's own samples
(tests/data/nova-notification-samples). They are checked on the sandbox's
record, through oslo.messaging's in-memory transports and, marked
``integration``, on a RabbitMQ vhost of their own.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import kombu
import pytest
from openstack.connection import Connection

from nova_autopilot.events import parse_message
from nova_autopilot.sandbox import (
    IMAGE_ID,
    Durations,
    Flavor,
    ManualClock,
    Sandbox,
    ServerFaults,
    Settings,
)
from tests.samples import sample, sample_names
from tests.unit.sandbox_support import connect

SCHEDULED = ["scheduler.select_destinations.start", "scheduler.select_destinations.end"]
BUILD_STATES = [
    ("building", "scheduling"),
    ("building", None),
    ("building", "networking"),
    ("building", "block_device_mapping"),
    ("building", "spawning"),
]
RESIZE_EVENTS = [
    *SCHEDULED,
    "instance.exists",
    "instance.resize_prep.start",
    "instance.resize_prep.end",
    "instance.resize.start",
    "instance.resize.end",
    "instance.resize_finish.start",
    "instance.resize_finish.end",
]


def states(nova: Sandbox, server_id: str) -> list[tuple[str | None, str | None]]:
    """(vm_state, task_state) of each instance.update about the server, repeats removed."""
    seen: list[tuple[str | None, str | None]] = []
    for n in nova.notifications.for_server(server_id):
        if n.event_type == "instance.update":
            pair = (n.data.get("state"), n.data.get("task_state"))
            if not seen or seen[-1] != pair:
                seen.append(pair)
    return seen


def shape(value: Any) -> Any:
    """The structure of a payload: object names, versions and field names, recursively.

    Lists are left out: the samples show volumes, ports and key pairs that a
    sandbox server (like a real one booted without them) does not have.
    """
    if isinstance(value, dict) and "nova_object.name" in value:
        data = value["nova_object.data"]
        return (
            value["nova_object.name"],
            value["nova_object.version"],
            {key: shape(item) for key, item in sorted(data.items())},
        )
    return None


def boot(conn: Connection, flavor: Flavor | str, name: str = "web-1") -> str:
    flavor_id = flavor if isinstance(flavor, str) else flavor.id
    server = conn.compute.create_server(
        name=name, flavor_id=flavor_id, image_id=IMAGE_ID, networks="none"
    )
    return str(server.id)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def nova(clock: ManualClock) -> Iterator[Sandbox]:
    with Sandbox(clock=clock, durations=Durations()) as sandbox:
        yield sandbox
        assert sandbox.flow_errors == []


@pytest.fixture
def conn(nova: Sandbox) -> Connection:
    return connect(nova.url)


@pytest.fixture
def small(nova: Sandbox) -> Flavor:
    return nova.add_flavor("small", vcpus=1, ram=128)


@pytest.fixture
def large(nova: Sandbox) -> Flavor:
    return nova.add_flavor("large", vcpus=2, ram=256)


def run(
    nova: Sandbox, clock: ManualClock, act: Callable[[], object], status: str, sid: str
) -> None:
    act()
    clock.advance(30)
    nova.wait_for_status(sid, status)


def booted(
    nova: Sandbox, conn: Connection, clock: ManualClock, flavor: Flavor, name: str = "web-1"
) -> str:
    sid = boot(conn, flavor, name)
    clock.advance(30)
    nova.wait_for(lambda s: s.vm_state != "building" and s.task_state is None, sid)
    return sid


# -- sequences ----------------------------------------------------------------------------


def test_a_boot_says_what_novas_build_says(
    nova: Sandbox, conn: Connection, clock: ManualClock, small: Flavor
) -> None:
    sid = booted(nova, conn, clock, small)

    assert nova.notifications.event_types(sid) == [
        *SCHEDULED,
        "instance.create.start",
        "instance.create.end",
    ]
    assert states(nova, sid) == [*BUILD_STATES, ("active", None)]
    publishers = [n.publisher_id for n in nova.notifications.for_server(sid)]
    assert publishers[:3] == [
        "nova-scheduler:sandbox",
        "nova-scheduler:sandbox",
        "nova-conductor:sandbox",
    ]
    assert set(publishers[3:]) == {"nova-compute:sandbox"}


def test_a_failed_spawn_sends_create_error_with_the_fault(
    nova: Sandbox, conn: Connection, clock: ManualClock, small: Flavor
) -> None:
    sid = booted(nova, conn, clock, small, name="fail-spawn-web")

    assert nova.notifications.event_types(sid) == [
        *SCHEDULED,
        "instance.create.start",
        "instance.shutdown.start",
        "instance.shutdown.end",
        "instance.create.error",
    ]
    assert states(nova, sid) == [*BUILD_STATES, ("error", None)]
    error = next(n for n in nova.notifications.for_server(sid) if n.priority == "ERROR")
    assert error.data["fault"]["nova_object.data"]["exception"] == "InjectedFault"


def test_resize_confirm_and_revert_say_what_nova_says(
    nova: Sandbox, conn: Connection, clock: ManualClock, small: Flavor, large: Flavor
) -> None:
    confirmed = nova.add_server("confirmed", small).id
    reverted = nova.add_server("reverted", small).id
    compute = conn.compute

    for sid in (confirmed, reverted):
        run(nova, clock, lambda s=sid: compute.resize_server(s, large.id), "VERIFY_RESIZE", sid)
    run(nova, clock, lambda: compute.confirm_server_resize(confirmed), "ACTIVE", confirmed)
    run(nova, clock, lambda: compute.revert_server_resize(reverted), "ACTIVE", reverted)

    resize_states = [
        ("active", "resize_prep"),
        ("active", "resize_migrating"),
        ("active", "resize_migrated"),
        ("active", "resize_finish"),
        ("resized", None),
    ]
    assert nova.notifications.event_types(confirmed) == [
        *RESIZE_EVENTS,
        "instance.resize_confirm.start",
        "instance.resize_confirm.end",
    ]
    assert states(nova, confirmed) == [*resize_states, ("active", None)]
    assert nova.notifications.event_types(reverted) == [
        *RESIZE_EVENTS,
        "instance.exists",
        "instance.resize_revert.start",
        "instance.resize_revert.end",
    ]
    assert states(nova, reverted) == [
        *resize_states,
        ("resized", "resize_reverting"),
        ("active", None),
    ]


def test_rescue_unrescue_and_a_failed_reboot_say_what_nova_says(
    nova: Sandbox, conn: Connection, clock: ManualClock, small: Flavor
) -> None:
    sid = nova.add_server("web-1", small).id
    compute = conn.compute
    nova.fail(sid, "reboot")

    run(nova, clock, lambda: compute.reboot_server(sid, "SOFT"), "ERROR", sid)
    run(nova, clock, lambda: compute.rescue_server(sid), "RESCUE", sid)
    run(nova, clock, lambda: compute.unrescue_server(sid), "ACTIVE", sid)

    assert nova.notifications.event_types(sid) == [
        "instance.reboot.start",
        "instance.rescue.start",
        "instance.exists",
        "instance.rescue.end",
        "instance.unrescue.start",
        "instance.unrescue.end",
    ]
    assert states(nova, sid) == [
        ("active", "rebooting"),
        ("active", "reboot_pending"),
        ("active", "reboot_started"),
        ("error", "reboot_started"),
        ("error", None),
        ("error", "rescuing"),
        ("rescued", None),
        ("rescued", "unrescuing"),
        ("active", None),
    ]
    exceptions = [n for n in nova.notifications.all() if n.event_type == "compute.exception"]
    assert [n.priority for n in exceptions] == ["ERROR"]


def test_a_failed_reboot_reports_error_before_nova_clears_its_task(
    nova: Sandbox, clock: ManualClock, small: Flavor
) -> None:
    sid = nova.add_server("web-1", small).id
    nova.fail(sid, "reboot")
    nova.faults.add_server(sid, ServerFaults(delays={"reboot_error": 60}))
    connect(nova.url).compute.reboot_server(sid, "HARD")
    clock.advance(1)

    busy = nova.wait_for(lambda s: s.vm_state == "error", sid)
    assert busy.task_state == "reboot_started_hard"
    assert busy.fault is None  # recorded just before the task is cleared
    clock.advance(60)
    nova.wait_for(lambda s: s.task_state is None, sid)

    assert states(nova, sid)[-2:] == [("error", "reboot_started_hard"), ("error", None)]
    last = [n.event_type for n in nova.notifications.all()][-2:]
    assert last == ["instance.update", "compute.exception"]


def test_an_automatic_confirm_says_what_a_confirm_says(clock: ManualClock) -> None:
    with Sandbox(clock=clock, settings=Settings(resize_confirm_window=60.0)) as nova:
        small, large = nova.add_flavor("small"), nova.add_flavor("large", ram=256)
        sid = nova.add_server("web-1", large, state="VERIFY_RESIZE", old_flavor=small).id

        clock.advance(61)
        nova.wait_for_status(sid, "ACTIVE")

        assert nova.notifications.event_types(sid) == [
            "instance.resize_confirm.start",
            "instance.resize_confirm.end",
        ]


# -- payloads -----------------------------------------------------------------------------


def test_every_payload_has_the_shape_of_novas_sample(
    nova: Sandbox, conn: Connection, clock: ManualClock, small: Flavor, large: Flavor
) -> None:
    compute = conn.compute
    sid = booted(nova, conn, clock, small)
    run(nova, clock, lambda: compute.resize_server(sid, large.id), "VERIFY_RESIZE", sid)
    run(nova, clock, lambda: compute.revert_server_resize(sid), "ACTIVE", sid)
    run(nova, clock, lambda: compute.resize_server(sid, large.id), "VERIFY_RESIZE", sid)
    run(nova, clock, lambda: compute.confirm_server_resize(sid), "ACTIVE", sid)
    run(nova, clock, lambda: compute.rescue_server(sid), "RESCUE", sid)
    run(nova, clock, lambda: compute.unrescue_server(sid), "ACTIVE", sid)
    run(nova, clock, lambda: compute.stop_server(sid), "SHUTOFF", sid)
    run(nova, clock, lambda: compute.start_server(sid), "ACTIVE", sid)
    run(nova, clock, lambda: compute.reboot_server(sid, "SOFT"), "ACTIVE", sid)
    failed = booted(nova, conn, clock, small, name="fail-spawn-web")
    compute.delete_server(failed)

    sent = {n.event_type: n for n in nova.notifications.all()}
    known = set(sample_names())
    checked = 0
    for event_type, notification in sent.items():
        name = event_type.replace(".", "-")
        if name not in known:
            continue
        expected = sample(name)
        assert notification.priority == expected["priority"], event_type
        assert shape(notification.payload) == shape(expected["payload"]), event_type
        checked += 1
    assert checked >= 20


def test_the_daemon_reads_a_sandbox_notification_as_a_nova_event(
    nova: Sandbox, conn: Connection, clock: ManualClock, small: Flavor
) -> None:
    sid = booted(nova, conn, clock, small)
    end = next(n for n in nova.notifications.for_server(sid) if n.event_type.endswith("create.end"))

    event = parse_message(json.dumps(end.as_message()), expect="nova")

    assert (event.event_type, event.instance_id) == ("instance.create.end", sid)
    assert event.payload["flavor"]["name"] == "small"
    assert event.publisher_id == "nova-compute:sandbox"


# -- on a bus -----------------------------------------------------------------------------


def collect(
    connection_url: str, routing_keys: tuple[str, ...]
) -> tuple[list[Any], Callable[[], None]]:
    """Bind a queue of our own to Nova's exchange and collect message bodies in a thread."""
    received: list[Any] = []
    ready, stop = threading.Event(), threading.Event()

    def consume() -> None:
        exchange = kombu.Exchange("nova", type="topic", durable=False)
        with kombu.Connection(connection_url) as conn:
            queue = kombu.Queue(
                f"sandbox-test-{time.monotonic_ns()}",
                exchange=exchange,
                bindings=[kombu.binding(exchange, routing_key=key) for key in routing_keys],
                exclusive=True,
                auto_delete=True,
            )
            callbacks = [lambda body, message: received.append(body)]
            with conn.Consumer(queue, callbacks=callbacks, accept=["json"], no_ack=True):
                ready.set()
                while not stop.is_set():
                    try:
                        conn.drain_events(timeout=0.1)
                    except TimeoutError:
                        continue

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    assert ready.wait(10), "consumer not bound"

    def close() -> None:
        stop.set()
        thread.join(5)

    return received, close


def wait_for(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "not before the deadline"
        time.sleep(0.01)


def test_notifications_go_through_oslo_messaging_in_memory_in_novas_envelope() -> None:
    received, close = collect(
        "memory://", ("versioned_notifications.info", "versioned_notifications.error")
    )
    try:
        with Sandbox(transport_url="kombu+memory:////", durations=Durations.instant()) as nova:
            sid = boot(connect(nova.url), nova.add_flavor("small"))
            nova.wait_for_status(sid, "ACTIVE")
            expected = len(nova.notifications.for_server(sid))
            assert nova.notifications.flush()
            wait_for(lambda: len(received) >= expected)
    finally:
        close()

    envelope = received[0] if isinstance(received[0], dict) else json.loads(received[0])
    assert envelope["oslo.version"] == "2.0"
    events = [parse_message(json.dumps(body), expect="nova") for body in received]
    assert [e.event_type for e in events if e.event_type != "instance.update"] == [
        *SCHEDULED,
        "instance.create.start",
        "instance.create.end",
    ]
    assert all(e.message_id for e in events)


def test_notifications_go_through_oslos_fake_transport_to_a_listener_on_it() -> None:
    import oslo_messaging

    from nova_autopilot.sandbox.oslo_publisher import notification_transport

    transport = notification_transport("fake://")
    got: list[tuple[str, str]] = []

    class Endpoint:
        def info(
            self, ctxt: Any, publisher_id: str, event_type: str, payload: Any, md: Any
        ) -> None:
            got.append((publisher_id, event_type))

    listener = oslo_messaging.get_notification_listener(
        transport,
        [oslo_messaging.Target(topic="versioned_notifications", exchange="nova")],
        [Endpoint()],
        executor="threading",
    )
    listener.start()
    try:
        with Sandbox(transport=transport, durations=Durations.instant()) as nova:
            sid = boot(connect(nova.url), nova.add_flavor("small"))
            nova.wait_for_status(sid, "ACTIVE")
            wait_for(lambda: ("nova-compute:sandbox", "instance.create.end") in got)
    finally:
        listener.stop()
        listener.wait()
        transport.cleanup()


# -- on a real RabbitMQ -------------------------------------------------------------------


@pytest.fixture
def vhost() -> Iterator[str]:
    if shutil.which("rabbitmqctl") is None:
        pytest.skip("no rabbitmqctl on PATH")
    name = f"sandbox-test-{os.getpid()}-{time.monotonic_ns()}"
    subprocess.run(["rabbitmqctl", "-q", "add_vhost", name], check=True, timeout=60)
    subprocess.run(
        ["rabbitmqctl", "-q", "set_permissions", "-p", name, "guest", ".*", ".*", ".*"],
        check=True,
        timeout=60,
    )
    try:
        yield name
    finally:
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", name], check=False, timeout=60)


@pytest.mark.integration
def test_on_rabbitmq_notifications_use_novas_exchange_and_routing_keys(vhost: str) -> None:
    amqp = f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    info, close_info = collect(amqp, ("versioned_notifications.info",))
    errors, close_errors = collect(amqp, ("versioned_notifications.error",))
    try:
        url = f"rabbit://guest:guest@127.0.0.1:5672/{vhost}"
        with Sandbox(transport_url=url, durations=Durations().scaled(0.2)) as nova:
            small, conn = nova.add_flavor("small"), connect(nova.url)
            good = boot(conn, small)
            bad = boot(conn, small, "fail-spawn-web")
            nova.wait_for_status(good, "ACTIVE")
            nova.wait_for_status(bad, "ERROR")
            assert nova.notifications.flush()
            sent = nova.notifications.all()
            wait_for(lambda: len(info) + len(errors) >= len(sent))
    finally:
        close_info()
        close_errors()

    def parsed(bodies: list[Any]) -> list[Any]:
        return [parse_message(json.dumps(b) if isinstance(b, dict) else b) for b in bodies]

    assert {e.event_type for e in parsed(errors)} == {"instance.create.error"}
    good_events = [e.event_type for e in parsed(info) if e.instance_id == good]
    assert [t for t in good_events if t != "instance.update"] == [
        *SCHEDULED,
        "instance.create.start",
        "instance.create.end",
    ]
