"""Server actions through openstacksdk: Nova's state machine, its answers and its refusals."""

from __future__ import annotations

from collections.abc import Iterator

import openstack
import openstack.exceptions
import pytest
from openstack.compute.v2.server import Server as SdkServer
from openstack.connection import Connection

from nova_autopilot.sandbox import (
    IMAGE_ID,
    Durations,
    Flavor,
    ManualClock,
    Sandbox,
    ServerFaults,
    Settings,
)
from tests.unit import sandbox_support
from tests.unit.sandbox_support import connect

nova, conn = sandbox_support.nova, sandbox_support.conn  # the fixtures
small, large = sandbox_support.small, sandbox_support.large


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def still(clock: ManualClock) -> Iterator[Sandbox]:
    """A sandbox whose time only moves when the test says: transient states stay put."""
    with Sandbox(clock=clock) as sandbox:
        yield sandbox
        assert sandbox.flow_errors == []


def refusal(call: object) -> tuple[int, str]:
    """Status and message of the error a call raised."""
    assert isinstance(call, openstack.exceptions.HttpException), call
    return int(call.status_code or 0), str(call.details)


def refused(action: object, *args: object, **kwargs: object) -> tuple[int, str]:
    assert callable(action)
    with pytest.raises(openstack.exceptions.HttpException) as raised:
        action(*args, **kwargs)
    return refusal(raised.value)


# -- resize -------------------------------------------------------------------------------


def test_a_resize_waits_in_verify_resize_and_confirm_keeps_the_new_flavor(
    still: Sandbox, clock: ManualClock
) -> None:
    nova, conn = still, connect(still.url)
    small, large = nova.add_flavor("small"), nova.add_flavor("large", ram=256)
    server = nova.add_server("web-1", small)

    conn.compute.resize_server(server.id, large.id)
    assert conn.compute.get_server(server.id).status == "RESIZE"
    clock.advance(10)
    resized = nova.wait_for_status(server.id, "VERIFY_RESIZE")
    assert resized.vm_state == "resized"
    assert conn.compute.get_server(server.id).flavor.original_name == "large"

    conn.compute.confirm_server_resize(server.id)
    clock.advance(10)
    confirmed = nova.wait_for_status(server.id, "ACTIVE")
    assert confirmed.flavor.name == "large"
    actions = [a.action for a in conn.compute.server_actions(server.id)]
    assert actions[:2] == ["confirmResize", "resize"]


def test_a_revert_goes_back_to_the_old_flavor_and_a_stopped_server_stays_stopped(
    still: Sandbox, clock: ManualClock
) -> None:
    nova, conn = still, connect(still.url)
    small, large = nova.add_flavor("small"), nova.add_flavor("large", ram=256)
    server = nova.add_server("web-1", large, state="VERIFY_RESIZE", old_flavor=small)
    stopped = nova.add_server("stopped", small, state="SHUTOFF")
    conn.compute.resize_server(stopped.id, large.id)
    clock.advance(10)
    nova.wait_for_status(stopped.id, "VERIFY_RESIZE")

    conn.compute.revert_server_resize(server.id)
    conn.compute.revert_server_resize(stopped.id)
    assert conn.compute.get_server(stopped.id).status == "REVERT_RESIZE"
    clock.advance(10)

    assert nova.wait_for_status(server.id, "ACTIVE").flavor.name == "small"
    reverted = nova.wait_for_status(stopped.id, "SHUTOFF")
    assert reverted.flavor.name == "small"
    assert reverted.power_state == 4


def test_resize_refusals_are_novas(still: Sandbox, clock: ManualClock) -> None:
    nova, conn = still, connect(still.url)
    small, large = nova.add_flavor("small"), nova.add_flavor("large", ram=256)
    server = nova.add_server("web-1", small)
    sid = server.id

    assert refused(conn.compute.resize_server, sid, small.id) == (
        400,
        "When resizing, instances must change flavor!",
    )
    assert refused(conn.compute.resize_server, sid, "nope") == (
        400,
        "Flavor nope could not be found.",
    )
    conn.compute.resize_server(sid, large.id)
    assert refused(conn.compute.resize_server, sid, large.id) == (
        409,
        f"Cannot 'resize' instance {sid} while it is in task_state resize_prep",
    )
    assert refused(conn.compute.rescue_server, sid) == (
        409,
        f"Cannot 'rescue' instance {sid} while it is in task_state resize_prep",
    )
    clock.advance(10)
    nova.wait_for_status(sid, "VERIFY_RESIZE")
    assert refused(conn.compute.resize_server, sid, small.id) == (
        409,
        f"Cannot 'resize' instance {sid} while it is in vm_state resized",
    )


def test_confirm_and_revert_need_a_resized_server(
    nova: Sandbox, conn: Connection, small: Flavor
) -> None:
    server = nova.add_server("web-1", small)
    sid = server.id

    assert refused(conn.compute.confirm_server_resize, sid) == (
        409,
        f"Cannot 'confirmResize' instance {sid} while it is in vm_state active",
    )
    assert refused(conn.compute.revert_server_resize, sid) == (
        409,
        f"Cannot 'revertResize' instance {sid} while it is in vm_state active",
    )


def test_a_second_confirm_while_the_first_runs_is_told_there_is_nothing_to_confirm() -> None:
    with Sandbox(durations=Durations(confirm=5.0)) as nova:
        conn = connect(nova.url)
        small, large = nova.add_flavor("small"), nova.add_flavor("large", ram=256)
        server = nova.add_server("web-1", large, state="VERIFY_RESIZE", old_flavor=small)

        conn.compute.confirm_server_resize(server.id)
        assert refused(conn.compute.confirm_server_resize, server.id) == (
            400,
            "Instance has not been resized.",
        )


def test_nova_confirms_a_resize_by_itself_once_the_confirm_window_has_passed() -> None:
    clock = ManualClock()
    settings = Settings(resize_confirm_window=60)
    with Sandbox(clock=clock, settings=settings, durations=Durations.instant()) as nova:
        conn = connect(nova.url)
        small, large = nova.add_flavor("small"), nova.add_flavor("large", ram=256)
        server = nova.add_server("web-1", large, state="VERIFY_RESIZE", old_flavor=small)

        clock.advance(59)
        nova.wait_settled()
        assert conn.compute.get_server(server.id).status == "VERIFY_RESIZE"

        clock.advance(1)
        confirmed = nova.wait_for_status(server.id, "ACTIVE")
        assert confirmed.flavor.name == "large"
        sid = server.id
        assert refused(conn.compute.confirm_server_resize, sid) == (
            409,
            f"Cannot 'confirmResize' instance {sid} while it is in vm_state active",
        )
        confirm = next(a for a in conn.compute.server_actions(sid) if a.action == "confirmResize")
        assert confirm.user_id is None


# -- rescue -------------------------------------------------------------------------------


def test_a_rescue_answers_the_password_and_unrescue_brings_the_server_back(
    still: Sandbox, clock: ManualClock
) -> None:
    nova, conn = still, connect(still.url)
    server = nova.add_server("web-1", nova.add_flavor("small"))

    answer = conn.compute.post(
        f"/servers/{server.id}/action", json={"rescue": {"adminPass": "s3cret"}}
    )
    assert (answer.status_code, answer.json()) == (200, {"adminPass": "s3cret"})
    assert conn.compute.get_server(server.id).task_state == "rescuing"
    clock.advance(10)
    nova.wait_for_status(server.id, "RESCUE")
    assert conn.compute.get_server_console_output(server.id)["output"].endswith(
        "web-1-rescue login:\n"
    )

    conn.compute.unrescue_server(server.id)
    clock.advance(10)
    back = nova.wait_for_status(server.id, "ACTIVE")
    assert back.vm_state == "active"


def test_a_rescue_from_stopped_or_error_is_allowed_but_never_of_a_server_never_launched(
    still: Sandbox, clock: ManualClock
) -> None:
    nova, conn = still, connect(still.url)
    small = nova.add_flavor("small")
    stopped = nova.add_server("stopped", small, state="SHUTOFF")
    crashed = nova.add_server("crashed", small, state="ERROR", launched=True)
    never = nova.add_server("never", small, state="ERROR", launched=False)

    conn.compute.rescue_server(stopped.id)
    conn.compute.rescue_server(crashed.id)
    assert conn.compute.get_server(crashed.id).status == "ERROR"
    clock.advance(10)
    nova.wait_for_status(stopped.id, "RESCUE")
    nova.wait_for_status(crashed.id, "RESCUE")
    assert refused(conn.compute.rescue_server, never.id) == (
        409,
        f"Instance {never.id} is in an invalid state for 'rescue'",
    )


def test_rescue_and_unrescue_refusals_are_novas(
    nova: Sandbox, conn: Connection, small: Flavor
) -> None:
    server = nova.add_server("web-1", small)
    rescued = nova.add_server("rescued", small, state="RESCUE")

    assert refused(conn.compute.unrescue_server, server.id) == (
        409,
        f"Cannot 'unrescue' instance {server.id} while it is in vm_state active",
    )
    assert refused(conn.compute.rescue_server, rescued.id) == (
        409,
        f"Cannot 'rescue' instance {rescued.id} while it is in vm_state rescued",
    )
    assert refused(conn.compute.rescue_server, server.id, image="no-such-image") == (
        400,
        "Requested rescue image 'no-such-image' is not supported",
    )


# -- power, lock, delete, console, actions ------------------------------------------------


def test_stop_start_and_reboot_go_through_their_states(
    nova: Sandbox, conn: Connection, small: Flavor
) -> None:
    server = nova.add_server("web-1", small)
    sid = server.id

    conn.compute.stop_server(sid)
    assert nova.wait_for_status(sid, "SHUTOFF").power_state == 4
    assert refused(conn.compute.stop_server, sid)[0] == 409
    assert refused(conn.compute.reboot_server, sid, "SOFT") == (
        409,
        f"Cannot 'reboot' instance {sid} while it is in vm_state stopped",
    )
    conn.compute.start_server(sid)
    assert nova.wait_for_status(sid, "ACTIVE").power_state == 1
    conn.compute.reboot_server(sid, "HARD")
    nova.wait_for_status(sid, "ACTIVE")
    assert refused(conn.compute.start_server, sid) == (
        409,
        f"Cannot 'start' instance {sid} while it is in vm_state active",
    )


def test_a_lock_stops_members_but_not_administrators(
    nova: Sandbox, conn: Connection, small: Flavor, large: Flavor
) -> None:
    server = nova.add_server("web-1", small, project_id="alice-project")
    alice = connect(nova.url, "alice:alice-project")

    conn.compute.lock_server(server.id, locked_reason="maintenance")
    seen = conn.compute.get_server(server.id)
    assert (seen.is_locked, seen.locked_reason) == (True, "maintenance")
    assert refused(alice.compute.resize_server, server.id, large.id) == (
        409,
        f"Instance {server.id} is locked",
    )
    conn.compute.resize_server(server.id, large.id)
    nova.wait_for_status(server.id, "VERIFY_RESIZE")
    conn.compute.unlock_server(server.id)
    assert conn.compute.get_server(server.id).is_locked is False


def test_a_deleted_server_is_gone(nova: Sandbox, conn: Connection, small: Flavor) -> None:
    server = nova.add_server("web-1", small)

    conn.compute.delete_server(server.id)
    # not get_server() first: on a loaded machine the deletion may already be over
    conn.compute.wait_for_delete(SdkServer(id=server.id), interval=0.02, wait=10)

    assert conn.compute.find_server(server.id) is None
    assert nova.server(server.id).status == "DELETED"


def test_the_console_shows_a_login_prompt_a_panic_or_the_last_lines_asked_for(
    nova: Sandbox, conn: Connection, small: Flavor
) -> None:
    fine = nova.add_server("fine", small)
    crashed = nova.add_server("crashed", small, state="ERROR")
    never = nova.add_server("never", small, state="ERROR", launched=False)

    assert conn.compute.get_server_console_output(fine.id)["output"].endswith("fine login:\n")
    assert "Kernel panic" in conn.compute.get_server_console_output(crashed.id)["output"]
    assert conn.compute.get_server_console_output(fine.id, length=2)["output"] == "fine login:\n"
    assert refused(conn.compute.get_server_console_output, never.id) == (
        409,
        f"Instance {never.id} is not ready",
    )
    nova.faults.add_server(fine.id, ServerFaults(console="emergency"))
    assert "emergency mode" in conn.compute.get_server_console_output(fine.id)["output"]


def test_instance_actions_list_what_was_done_newest_first_with_their_events(
    nova: Sandbox, conn: Connection, small: Flavor, large: Flavor
) -> None:
    server = nova.add_server("web-1", small)
    conn.compute.resize_server(server.id, large.id)
    nova.wait_for_status(server.id, "VERIFY_RESIZE")

    actions = list(conn.compute.server_actions(server.id))
    assert [a.action for a in actions] == ["resize", "create"]
    resize = conn.compute.get_server_action(actions[0].request_id, server.id)
    assert [e.event for e in resize.events] == [
        "compute_finish_resize",
        "compute_resize_instance",
        "compute_prep_resize",
        "cold_migrate",
        "conductor_migrate_server",
    ]
    assert {e.result for e in resize.events} == {"Success"}
    assert resize.message is None


def events_of(conn: Connection, server_id: str, action: str) -> list[tuple[str, str | None]]:
    """(event, result) of the newest ``action`` of a server, as Nova lists them."""
    found = next(a for a in conn.compute.server_actions(server_id) if a.action == action)
    detail = conn.compute.get_server_action(found.request_id, server_id)
    return [(e.event, e.result) for e in detail.events]


def test_a_failed_event_shows_the_fault_message_its_traceback_and_its_host(
    nova: Sandbox, conn: Connection, small: Flavor, large: Flavor
) -> None:
    server = nova.add_server("web-1", small)
    nova.fail(server.id, "resize")
    conn.compute.resize_server(server.id, large.id)
    nova.wait_for_status(server.id, "ERROR")

    resize = next(iter(conn.compute.server_actions(server.id)))
    detail = conn.compute.get_server_action(resize.request_id, server.id)
    failed = next(e for e in detail.events if e.result == "Error")
    assert (resize.action, resize.message, failed.event) == (
        "resize",
        "Error",
        "compute_resize_instance",
    )
    assert failed.details == "sandbox: injected resize failure for server web-1"
    # Nova's format_tb: frames only, the raise last, no exception line
    assert failed.traceback.splitlines()[-1].strip().startswith("raise ")
    assert failed.host == "sandbox"
    assert failed.host_id
    assert {e.details for e in detail.events if e.result == "Success"} == {None}


def test_a_resize_with_no_valid_host_fails_both_conductor_events_with_its_reason(
    nova: Sandbox, conn: Connection, small: Flavor, large: Flavor
) -> None:
    server = nova.add_server("web-1", small)
    nova.fail(server.id, "no_valid_host")
    conn.compute.resize_server(server.id, large.id)
    nova.wait_for(lambda s: s.task_state is None, server.id)

    resize = next(iter(conn.compute.server_actions(server.id)))
    detail = conn.compute.get_server_action(resize.request_id, server.id)
    assert [(e.event, e.result, e.details) for e in detail.events] == [
        ("cold_migrate", "Error", "No valid host was found. No valid host found for resize"),
        (
            "conductor_migrate_server",
            "Error",
            "No valid host was found. No valid host found for resize",
        ),
    ]


def test_a_failed_spawn_leaves_a_create_that_succeeded_on_its_host(
    nova: Sandbox, conn: Connection, small: Flavor
) -> None:
    created = conn.compute.create_server(
        name="fail-spawn-web", flavor_id=small.id, image_id=IMAGE_ID, networks="none"
    )
    nova.wait_for_status(created.id, "ERROR")

    (create,) = conn.compute.server_actions(created.id)
    detail = conn.compute.get_server_action(create.request_id, created.id)
    assert (create.action, create.message) == ("create", None)
    assert [(e.event, e.result, e.traceback) for e in detail.events] == [
        ("compute__do_build_and_run_instance", "Success", None)
    ]
    assert detail.events[0].host_id  # hashed from the event's host, though the server has none


def test_reverting_a_stopped_servers_resize_stops_it_again_within_the_revert(
    still: Sandbox, clock: ManualClock
) -> None:
    nova, conn = still, connect(still.url)
    small, large = nova.add_flavor("small"), nova.add_flavor("large", ram=256)
    stopped = nova.add_server("stopped", small, state="SHUTOFF")
    conn.compute.resize_server(stopped.id, large.id)
    clock.advance(10)
    nova.wait_for_status(stopped.id, "VERIFY_RESIZE")
    conn.compute.revert_server_resize(stopped.id)
    clock.advance(10)
    nova.wait_for_status(stopped.id, "SHUTOFF")

    assert events_of(conn, stopped.id, "revertResize") == [
        ("compute_stop_instance", "Success"),
        ("compute_finish_revert_resize", "Success"),
        ("compute_revert_resize", "Success"),
    ]


def test_the_actions_of_a_deleted_server_are_read_from_microversion_2_21(
    nova: Sandbox, conn: Connection, small: Flavor
) -> None:
    server = nova.add_server("web-1", small)
    conn.compute.delete_server(server.id)
    conn.compute.wait_for_delete(SdkServer(id=server.id), interval=0.02, wait=10)

    assert [a.action for a in conn.compute.server_actions(server.id)] == ["delete", "create"]
    path = f"/servers/{server.id}/os-instance-actions"
    assert conn.compute.get(path, microversion="2.21").status_code == 200
    assert conn.compute.get(path, microversion="2.20").status_code == 404


def test_deleting_a_server_that_never_reached_a_host_records_a_delete_without_events(
    nova: Sandbox, conn: Connection, small: Flavor
) -> None:
    created = conn.compute.create_server(
        name="no-valid-host-web", flavor_id=small.id, image_id=IMAGE_ID, networks="none"
    )
    nova.wait_for_status(created.id, "ERROR")
    conn.compute.delete_server(created.id)
    conn.compute.wait_for_delete(SdkServer(id=created.id), interval=0.02, wait=10)

    delete, create = conn.compute.server_actions(created.id)
    assert (delete.action, create.action) == ("delete", "create")
    assert conn.compute.get_server_action(delete.request_id, created.id).events == []
    assert events_of(conn, created.id, "create") == [
        ("conductor_schedule_and_build_instances", "Error")
    ]


def test_an_unknown_action_is_a_400(nova: Sandbox, conn: Connection, small: Flavor) -> None:
    server = nova.add_server("web-1", small)
    answer = conn.compute.post(f"/servers/{server.id}/action", json={"frobnicate": None})
    assert answer.status_code == 400
    assert answer.json()["badRequest"]["message"] == "There is no such action: frobnicate"


def test_an_automatic_confirm_belongs_to_its_resize_not_to_the_next_one() -> None:
    clock = ManualClock()
    settings = Settings(resize_confirm_window=60)
    with Sandbox(clock=clock, settings=settings, durations=Durations.instant()) as nova:
        conn = connect(nova.url)
        small, large = nova.add_flavor("small"), nova.add_flavor("large", ram=256)
        server = nova.add_server("web-1", large, state="VERIFY_RESIZE", old_flavor=small)
        conn.compute.confirm_server_resize(server.id)
        nova.wait_for_status(server.id, "ACTIVE")
        clock.advance(30)
        conn.compute.resize_server(server.id, small.id)
        nova.wait_for_status(server.id, "VERIFY_RESIZE")

        clock.advance(30)
        nova.wait_settled()
        assert nova.server(server.id).status == "VERIFY_RESIZE"
        clock.advance(30)
        assert nova.wait_for_status(server.id, "ACTIVE").flavor.name == "small"
