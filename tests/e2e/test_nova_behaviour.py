"""What the real Nova does, checked against Nova itself: states, flavors and notifications.

Each test starts a notification listener before it acts, waits for the
last notification of the operation, then checks the event types in order
(``instance.update`` aside) and the (vm_state, task_state) transitions that
the ``instance.update`` notifications report, repeats removed. These are
the facts the daemon builds on; when a new Nova changes them, these tests
say so first.
"""

from collections.abc import Iterator

import openstack.exceptions
import pytest
from openstack.compute.v2.flavor import Flavor
from openstack.compute.v2.server import Server

from tests.novabox import faults
from tests.novabox.client import NovaBox
from tests.novabox.notifications import Notification

pytestmark = pytest.mark.e2e

SCHEDULED = ["scheduler.select_destinations.start", "scheduler.select_destinations.end"]
RESIZED = [
    *SCHEDULED,
    "instance.exists",
    "instance.resize_prep.start",
    "instance.resize_prep.end",
    "instance.resize.start",
    "instance.resize.end",
    "instance.resize_finish.start",
    "instance.resize_finish.end",
]
RESIZE_STATES = [
    ("active", "resize_prep"),
    ("active", "resize_migrating"),
    ("active", "resize_migrated"),
    ("active", "resize_finish"),
    ("resized", None),
]
BUILD_STATES = [
    ("building", "scheduling"),
    ("building", None),
    ("building", "networking"),
    ("building", "block_device_mapping"),
    ("building", "spawning"),
]


@pytest.fixture
def servers(novabox: NovaBox) -> Iterator[list[Server]]:
    """Servers a test creates; deleted after it."""
    created: list[Server] = []
    yield created
    for server in created:
        novabox.delete(server)


def test_a_boot_reaches_active_and_says_so(
    novabox: NovaBox, small: Flavor, servers: list[Server]
) -> None:
    with novabox.notifications() as log:
        server = novabox.boot("e2e-boot", small)
        servers.append(server)
        log.wait_for_event("instance.create.end", server.id)

    assert server.status == "ACTIVE"
    assert server.launched_at is not None
    assert server.flavor.name == small.name
    assert log.event_types(server.id) == [
        *SCHEDULED,
        "instance.create.start",
        "instance.create.end",
    ]
    assert log.states(server.id) == [*BUILD_STATES, ("active", None)]
    end = log.wait_for_event("instance.create.end", server.id)
    assert end.priority == "INFO"
    assert end.publisher_id == "nova-compute:novabox"
    assert end.data["display_name"] == "e2e-boot"
    assert end.data["flavor"]["nova_object.data"]["name"] == small.name


def test_a_resize_then_confirm_keeps_the_new_flavor(
    novabox: NovaBox, small: Flavor, large: Flavor, servers: list[Server]
) -> None:
    server = novabox.boot("e2e-resize-confirm", small)
    servers.append(server)

    with novabox.notifications() as log:
        novabox.conn.compute.resize_server(server, large.id)
        resized = novabox.wait_for_status(server, "VERIFY_RESIZE")
        assert resized.vm_state == "resized"
        novabox.conn.compute.confirm_server_resize(server)
        confirmed = novabox.wait_for_status(server, "ACTIVE")
        log.wait_for_event("instance.resize_confirm.end", server.id)

    assert confirmed.flavor.name == large.name
    assert log.event_types(server.id) == [
        *RESIZED,
        "instance.resize_confirm.start",
        "instance.resize_confirm.end",
    ]
    assert log.states(server.id) == [*RESIZE_STATES, ("active", None)]
    finished = log.wait_for_event("instance.resize_finish.end", server.id)
    assert finished.data["flavor"]["nova_object.data"]["name"] == large.name


def test_a_resize_then_revert_restores_the_old_flavor(
    novabox: NovaBox, small: Flavor, large: Flavor, servers: list[Server]
) -> None:
    server = novabox.boot("e2e-resize-revert", small)
    servers.append(server)

    with novabox.notifications() as log:
        novabox.conn.compute.resize_server(server, large.id)
        novabox.wait_for_status(server, "VERIFY_RESIZE")
        novabox.conn.compute.revert_server_resize(server)
        reverted = novabox.wait_for_status(server, "ACTIVE")
        log.wait_for_event("instance.resize_revert.end", server.id)

    assert reverted.flavor.name == small.name
    assert log.event_types(server.id) == [
        *RESIZED,
        "instance.exists",
        "instance.resize_revert.start",
        "instance.resize_revert.end",
    ]
    assert log.states(server.id) == [
        *RESIZE_STATES,
        ("resized", "resize_reverting"),
        ("active", None),
    ]
    reverted_end = log.wait_for_event("instance.resize_revert.end", server.id)
    assert reverted_end.data["flavor"]["nova_object.data"]["name"] == small.name


def test_a_rescue_then_unrescue_brings_the_server_back(
    novabox: NovaBox, small: Flavor, servers: list[Server]
) -> None:
    server = novabox.boot("e2e-rescue", small)
    servers.append(server)

    with novabox.notifications() as log:
        novabox.conn.compute.rescue_server(server)
        rescued = novabox.wait_for_status(server, "RESCUE")
        assert rescued.vm_state == "rescued"
        assert "rescue login:" in novabox.console_output(server)
        novabox.conn.compute.unrescue_server(server)
        back = novabox.wait_for_status(server, "ACTIVE")
        log.wait_for_event("instance.unrescue.end", server.id)

    assert back.vm_state == "active"
    assert log.event_types(server.id) == [
        "instance.rescue.start",
        "instance.exists",
        "instance.rescue.end",
        "instance.unrescue.start",
        "instance.unrescue.end",
    ]
    assert log.states(server.id) == [
        ("active", "rescuing"),
        ("rescued", None),
        ("rescued", "unrescuing"),
        ("active", None),
    ]


def test_a_failed_spawn_ends_in_error_never_launched_and_cannot_be_rescued(
    novabox: NovaBox, small: Flavor, servers: list[Server]
) -> None:
    with novabox.notifications() as log:
        server = novabox.boot("fail-spawn-e2e", small, wait=False)
        servers.append(server)
        failed = novabox.wait_for_status(server, "ERROR")
        log.wait_for(
            lambda n: n.instance_uuid == server.id and n.state == "error",
            what="instance.update to error",
        )

    assert failed.launched_at is None
    assert "injected spawn failure" in failed.fault["message"]
    assert log.event_types(server.id) == [
        *SCHEDULED,
        "instance.create.start",
        "instance.shutdown.start",
        "instance.shutdown.end",
        "instance.create.error",
    ]
    assert log.states(server.id) == [*BUILD_STATES, ("error", None)]
    error = log.wait_for_event("instance.create.error", server.id)
    assert error.priority == "ERROR"
    assert error.state == "building"  # the error is sent before the state changes
    assert "injected spawn failure" in error.data["fault"]["nova_object.data"]["exception_message"]

    with pytest.raises(openstack.exceptions.ConflictException):
        novabox.conn.compute.rescue_server(server)


def test_a_failed_reboot_of_a_launched_server_ends_in_error_and_can_be_rescued(
    novabox: NovaBox, small: Flavor, servers: list[Server]
) -> None:
    server = novabox.boot("e2e-failed-boot", small)
    servers.append(server)
    assert "login:" in novabox.console_output(server)

    with novabox.notifications() as log:
        failed = novabox.make_fail_boot(server)
        log.wait_for(
            lambda n: n.instance_uuid == server.id and (n.state, n.task_state) == ("error", None),
            what="instance.update to error",
        )
        crash = log.wait_for(_injected_fault, what="compute.exception about the reboot")

    assert failed.launched_at is not None
    assert "injected reboot failure" in failed.fault["message"]
    assert "Kernel panic" in novabox.console_output(server)
    # A guest that is down after a failed reboot sends no instance.reboot.error
    # (Nova sends that only when the guest still runs, and keeps it ACTIVE):
    # the failure shows as instance.update to error and compute.exception.
    assert log.event_types(server.id) == ["instance.reboot.start"]
    assert log.states(server.id) == [
        ("active", None),  # the metadata that asks for the fault
        ("active", "rebooting"),
        ("active", "reboot_pending"),
        ("active", "reboot_started"),
        ("error", "reboot_started"),
        ("error", None),
    ]
    assert crash.priority == "ERROR"
    assert crash.publisher_id == "nova-compute:novabox"
    assert "injected reboot failure" in crash.data["exception_message"]

    with novabox.notifications() as log:
        novabox.conn.compute.rescue_server(server)
        rescued = novabox.wait_for_status(server, "RESCUE")
        novabox.conn.compute.unrescue_server(server)
        back = novabox.wait_for_status(server, "ACTIVE")
        log.wait_for_event("instance.unrescue.end", server.id)

    assert rescued.vm_state == "rescued"
    assert back.vm_state == "active"
    assert log.event_types(server.id) == [
        "instance.rescue.start",
        "instance.exists",
        "instance.rescue.end",
        "instance.unrescue.start",
        "instance.unrescue.end",
    ]
    assert log.states(server.id) == [
        ("error", "rescuing"),
        ("rescued", None),
        ("rescued", "unrescuing"),
        ("active", None),
    ]
    assert "login:" in novabox.console_output(server)


def test_a_server_repaired_after_its_rescue_reboots_again(
    novabox: NovaBox, small: Flavor, servers: list[Server]
) -> None:
    server = novabox.boot("fail-boot-e2e", small)
    servers.append(server)
    novabox.conn.compute.reboot_server(server, "HARD")
    novabox.wait_for_status(server, "ERROR")
    novabox.conn.compute.rescue_server(server)
    novabox.wait_for_status(server, "RESCUE")
    novabox.conn.compute.unrescue_server(server)
    novabox.wait_for_status(server, "ACTIVE")
    novabox.repair(server)

    with novabox.notifications() as log:
        novabox.conn.compute.reboot_server(server, "HARD")
        back = novabox.wait_for_status(server, "ACTIVE")
        log.wait_for_event("instance.reboot.end", server.id)

    assert back.vm_state == "active"
    assert log.event_types(server.id) == ["instance.reboot.start", "instance.reboot.end"]
    assert log.states(server.id) == [
        ("active", "rebooting_hard"),
        ("active", "reboot_pending_hard"),
        ("active", "reboot_started_hard"),
        ("active", None),
    ]


def test_a_failed_power_on_leaves_the_server_shutoff_and_says_little(
    novabox: NovaBox, small: Flavor, servers: list[Server]
) -> None:
    server = novabox.boot("e2e-failed-power-on", small)
    servers.append(server)
    novabox.conn.compute.stop_server(server)
    novabox.wait_for_status(server, "SHUTOFF")
    plan = faults.FaultPlan.failing({"power_on"})
    novabox.conn.compute.set_server_metadata(server, **plan.metadata())

    with novabox.notifications() as log:
        novabox.conn.compute.start_server(server)
        log.wait_for(_injected_fault, what="compute.exception about the power-on")
        after = novabox.wait_for_status(server, "SHUTOFF")

    # No ERROR, no fault, no instance.power_on.error: only compute.exception
    # tells that the start failed.
    assert after.vm_state == "stopped"
    assert after.fault is None
    assert log.event_types(server.id) == ["instance.power_on.start"]
    assert log.states(server.id) == [("stopped", "powering-on"), ("stopped", None)]
    assert "Kernel panic" in novabox.console_output(server)


@pytest.mark.parametrize(
    ("console", "expected"),
    [("panic", "Kernel panic - not syncing"), ("emergency", "You are in emergency mode")],
)
def test_the_console_shows_what_the_metadata_asks_for(
    novabox: NovaBox, small: Flavor, servers: list[Server], console: str, expected: str
) -> None:
    plan = faults.FaultPlan(console=console)
    server = novabox.boot(f"e2e-console-{console}", small, metadata=plan.metadata())
    servers.append(server)

    assert expected in novabox.console_output(server)


def test_a_slow_resize_stays_in_resize_while_the_disk_moves(
    novabox: NovaBox, small: Flavor, large: Flavor, servers: list[Server]
) -> None:
    plan = faults.FaultPlan(resize_delay=3)
    server = novabox.boot("e2e-slow-resize", small, metadata=plan.metadata())
    servers.append(server)

    with novabox.notifications() as log:
        novabox.conn.compute.resize_server(server, large.id)
        migrating = log.wait_for(
            lambda n: n.instance_uuid == server.id and n.event_type == "instance.resize.start",
            what="instance.resize.start",
        )
        during = novabox.conn.compute.get_server(server.id)
        novabox.wait_for_status(server, "VERIFY_RESIZE")
        done = log.wait_for_event("instance.resize.end", server.id)

    assert during.status == "RESIZE"
    assert during.task_state == "resize_migrating"
    assert _seconds_between(migrating.timestamp, done.timestamp) >= 3
    novabox.conn.compute.confirm_server_resize(server)
    novabox.wait_for_status(server, "ACTIVE")


def _injected_fault(notification: Notification) -> bool:
    return (
        notification.event_type == "compute.exception"
        and notification.data["exception"] == "InjectedFault"
    )


def _seconds_between(start: str, end: str) -> float:
    from datetime import datetime

    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
