"""Fault injection: HTTP errors, failed boots, failed resizes, quotas, slow phases, consoles."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import openstack
import openstack.exceptions
import pytest
from openstack.connection import Connection

from nova_autopilot.sandbox import (
    IMAGE_ID,
    Durations,
    Flavor,
    ManualClock,
    Quotas,
    Sandbox,
    ServerFaults,
    Settings,
)
from tests.unit import sandbox_support
from tests.unit.sandbox_support import connect

nova, conn = sandbox_support.nova, sandbox_support.conn  # the fixtures
small, large = sandbox_support.small, sandbox_support.large


def admin(nova: Sandbox, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(nova.base_url + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=5) as response:
        raw = response.read()
        return response.status, json.loads(raw) if raw else None


# -- HTTP faults --------------------------------------------------------------------------


def test_the_next_matching_requests_fail_with_the_status_asked_for_then_all_is_well(
    nova: Sandbox, conn: Connection, small: Flavor, large: Flavor
) -> None:
    server = nova.add_server("web-1", small, state="VERIFY_RESIZE", old_flavor=large)
    nova.http_fault(503, times=2, action="confirmResize")

    conn.compute.get_server(server.id)
    for _ in range(2):
        with pytest.raises(openstack.exceptions.HttpException) as failed:
            conn.compute.confirm_server_resize(server.id)
        assert failed.value.status_code == 503
    conn.compute.confirm_server_resize(server.id)

    assert nova.wait_for_status(server.id, "ACTIVE").flavor.name == "small"
    assert nova.request_counts()["POST /v2.1/servers/{server_id}/action confirmResize"] == 3


def test_an_injected_500_is_worded_as_novas_unexpected_error(
    nova: Sandbox, conn: Connection, small: Flavor
) -> None:
    server = nova.add_server("web-1", small)
    nova.http_fault(500, method="GET", route="/v2.1/servers/{server_id}", server_id=server.id)

    answer = conn.compute.get(f"/servers/{server.id}")

    assert answer.status_code == 500
    assert answer.json()["computeFault"]["message"].startswith("Unexpected API Error.")
    assert conn.compute.get_server(server.id).status == "ACTIVE"


def test_faults_can_be_asked_for_over_http(nova: Sandbox, conn: Connection, small: Flavor) -> None:
    server = nova.add_server("web-1", small)
    conn.compute.get_server(server.id)  # discovered before any fault

    status, _ = admin(nova, "POST", "/_sandbox/faults", {"http": {"status": 503, "times": 1}})
    assert status == 201
    assert conn.compute.get(f"/servers/{server.id}").status_code == 503
    status, _ = admin(
        nova, "POST", "/_sandbox/faults", {"server_id": server.id, "fail": ["reboot"]}
    )
    conn.compute.reboot_server(server.id, "SOFT")
    assert nova.wait_for_status(server.id, "ERROR").fault is not None

    status, state = admin(nova, "GET", "/_sandbox/state")
    assert state["faults"]["servers"][server.id]["fail"] == ["reboot"]
    assert admin(nova, "DELETE", "/_sandbox/faults")[0] == 204
    assert admin(nova, "GET", "/_sandbox/state")[1]["faults"]["servers"] == {}
    assert (
        "GET /v2.1/servers/{server_id}" in admin(nova, "GET", "/_sandbox/requests")[1]["requests"]
    )


# -- failed boots -------------------------------------------------------------------------


def test_a_failed_spawn_ends_in_error_never_launched_and_not_rescuable(
    nova: Sandbox, conn: Connection, small: Flavor
) -> None:
    created = conn.compute.create_server(
        name="fail-spawn-web", flavor_id=small.id, image_id=IMAGE_ID, networks="none"
    )
    failed = nova.wait_for_status(created.id, "ERROR")

    seen = conn.compute.get_server(created.id)
    assert seen.launched_at is None
    assert seen.fault["code"] == 500
    assert "injected spawn failure" in seen.fault["message"]
    assert failed.current_host is None
    with pytest.raises(openstack.exceptions.ConflictException, match="invalid state for 'rescue'"):
        conn.compute.rescue_server(created.id)


def test_a_boot_with_no_valid_host_fails_in_the_conductor(
    nova: Sandbox, conn: Connection, small: Flavor
) -> None:
    created = conn.compute.create_server(
        name="no-valid-host-web", flavor_id=small.id, image_id=IMAGE_ID, networks="none"
    )
    nova.wait_for_status(created.id, "ERROR")

    assert conn.compute.get_server(created.id).fault["message"] == "No valid host was found. "
    assert nova.notifications.event_types(created.id) == ["compute_task.build_instances.error"]


def test_a_launched_server_whose_reboot_fails_is_in_error_shows_a_panic_and_can_be_rescued(
    nova: Sandbox, conn: Connection, small: Flavor
) -> None:
    server = nova.add_server("web-1", small)
    nova.fail(server.id, "reboot", "power_on")

    conn.compute.reboot_server(server.id, "SOFT")
    broken = nova.wait_for_status(server.id, "ERROR")

    assert broken.launched_at is not None
    assert "Kernel panic" in conn.compute.get_server_console_output(server.id)["output"]
    conn.compute.rescue_server(server.id)
    nova.wait_for_status(server.id, "RESCUE")
    conn.compute.unrescue_server(server.id)
    nova.wait_for_status(server.id, "ACTIVE")
    assert conn.compute.get_server_console_output(server.id)["output"].endswith("login:\n")


def test_a_failed_power_on_leaves_the_server_shut_off(
    nova: Sandbox, conn: Connection, small: Flavor
) -> None:
    server = nova.add_server("fail-boot-web", small, state="SHUTOFF")

    conn.compute.start_server(server.id)
    after = nova.wait_for(lambda s: s.task_state is None and s.fault is not None, server.id)

    assert after.status == "SHUTOFF"
    assert "compute.exception" in [n.event_type for n in nova.notifications.all()]


# -- failed resizes -----------------------------------------------------------------------


def test_a_resize_with_no_valid_host_leaves_the_server_active_on_its_old_flavor(
    nova: Sandbox, conn: Connection, small: Flavor, large: Flavor
) -> None:
    server = nova.add_server("web-1", small)
    nova.fail(server.id, "no_valid_host")

    conn.compute.resize_server(server.id, large.id)
    nova.wait_for(lambda s: s.task_state is None, server.id)
    nova.notifications.flush()

    assert conn.compute.get_server(server.id).flavor.original_name == "small"
    assert "compute_task.migrate_server.error" in nova.notifications.event_types(server.id)
    resize = next(a for a in conn.compute.server_actions(server.id) if a.action == "resize")
    assert resize.message == "Error"


def test_a_resize_that_fails_in_the_hypervisor_ends_in_error(
    nova: Sandbox, conn: Connection, small: Flavor, large: Flavor
) -> None:
    server = nova.add_server("web-1", small)
    nova.fail(server.id, "resize")

    conn.compute.resize_server(server.id, large.id)
    failed = nova.wait_for_status(server.id, "ERROR")

    assert failed.flavor.name == "small"
    assert "injected resize failure" in conn.compute.get_server(server.id).fault["message"]


def test_a_resize_over_quota_is_forbidden_with_novas_message() -> None:
    quotas = Quotas(cores=2, ram=1024)
    with Sandbox(settings=Settings(quotas=quotas), durations=Durations.instant()) as nova:
        conn = connect(nova.url)
        tiny = nova.add_flavor("tiny", vcpus=1, ram=128)
        huge = nova.add_flavor("huge", vcpus=4, ram=128)
        server = nova.add_server("web-1", tiny)
        nova.add_server("web-2", tiny)

        with pytest.raises(openstack.exceptions.ForbiddenException) as refused:
            conn.compute.resize_server(server.id, huge.id)
        assert str(refused.value.details) == (
            "Quota exceeded for cores: Requested 3, but already used 2 of 2 cores"
        )
        with pytest.raises(openstack.exceptions.ForbiddenException, match="Quota exceeded for"):
            conn.compute.create_server(
                name="web-3", flavor_id=tiny.id, image_id=IMAGE_ID, networks="none"
            )


def test_a_quota_fault_makes_a_servers_resizes_forbidden(
    nova: Sandbox, conn: Connection, small: Flavor, large: Flavor
) -> None:
    server = nova.add_server("web-1", small)
    nova.faults.add_server(server.id, ServerFaults(quota_exceeded=True))

    with pytest.raises(openstack.exceptions.ForbiddenException) as refused:
        conn.compute.resize_server(server.id, large.id)

    assert str(refused.value.details).startswith("Quota exceeded for cores, ram: Requested 1, 128")
    assert conn.compute.get_server(server.id).status == "ACTIVE"


# -- slow phases --------------------------------------------------------------------------


def test_a_slow_phase_holds_the_server_in_its_state_until_its_time_is_up() -> None:
    clock = ManualClock()
    with Sandbox(clock=clock) as nova:
        conn = connect(nova.url)
        small, large = nova.add_flavor("small"), nova.add_flavor("large", ram=256)
        server = nova.add_server("slow-resize-web", small)

        conn.compute.resize_server(server.id, large.id)
        clock.advance(1)
        held = nova.wait_for(lambda s: s.task_state == "resize_migrating", server.id)
        assert held.status == "RESIZE"
        clock.advance(3.5)
        nova.wait_settled()
        assert nova.server(server.id).task_state == "resize_migrating"

        clock.advance(1)
        nova.wait_for_status(server.id, "VERIFY_RESIZE")
