"""The resize, rescue and unrescue machines, phase by phase, on an in-memory Nova."""

from __future__ import annotations

import pytest

from nova_autopilot.actions.machine import Wait
from nova_autopilot.errors import CloudUnavailable
from nova_autopilot.policies.model import Confirm, GateCheck
from tests.unit.fakes import Drive, FakeCloud, FakeServer, finished

SID = "5e1f7a52-0000-4000-8000-000000000001"


def cloud_with(**server: object) -> FakeCloud:
    cloud = FakeCloud()
    cloud.add(FakeServer(id=SID, name="web-1", flavor="m1.small", **server))  # type: ignore[arg-type]
    return cloud


def resize(cloud: FakeCloud, **confirm: object) -> Drive:
    return Drive(cloud, "resize", {"server": {"id": SID}, "flavor": "m1.large"}, Confirm(**confirm))  # type: ignore[arg-type]


def test_a_resize_is_requested_then_waits_for_verify_resize() -> None:
    cloud = cloud_with()
    drive = resize(cloud)
    transition = drive.run()
    assert isinstance(transition, Wait)
    assert transition.phase == "wait_verify"
    assert "instance.resize_finish.end" in transition.events
    assert cloud.calls["resize"] == 1
    assert drive.checkpoints == 1
    assert drive.state["old_flavor"] == "m1.small"


def test_a_healthy_resize_is_confirmed_and_verified_on_the_new_flavor() -> None:
    cloud = cloud_with()
    drive = resize(cloud, gate=(GateCheck("tcp", {"port": 22}),))
    drive.run()
    cloud.nova_finishes(SID)
    assert isinstance(drive.run(), Wait)  # confirm requested, waiting for ACTIVE
    assert cloud.calls["confirm"] == 1
    cloud.nova_finishes(SID)
    assert finished(drive.run()) == ("confirmed", None)
    assert cloud.servers[SID].flavor == "m1.large"
    assert drive.steps == [
        "checked",
        "resize_requested",
        "verify_resize",
        "gate_passed",
        "confirm_requested",
        "settled",
    ]


def test_a_failing_gate_is_retried_then_reverted_when_its_time_runs_out() -> None:
    cloud = cloud_with()
    drive = resize(cloud, gate=(GateCheck("tcp", {"port": 22}),), gate_timeout_s=30)
    drive.probe_result = "192.0.2.10:22 did not answer"
    drive.run()
    cloud.nova_finishes(SID)
    transition = drive.run()
    assert isinstance(transition, Wait)
    assert transition.retry_after_s is not None
    assert transition.poll is False
    drive.later(31)
    assert isinstance(drive.run(), Wait)  # revert requested
    assert cloud.calls["revert"] == 1
    assert cloud.calls["confirm"] == 0
    cloud.nova_finishes(SID)
    outcome, reason = finished(drive.run())
    assert outcome == "reverted"
    assert reason is not None
    assert "did not answer" in reason
    assert cloud.servers[SID].flavor == "m1.small"


def test_a_gate_that_recovers_before_its_deadline_lets_the_resize_be_confirmed() -> None:
    cloud = cloud_with()
    drive = resize(cloud, gate=(GateCheck("console", {"contains": "login:"}),))
    cloud.servers[SID].console = "booting..."
    drive.run()
    cloud.nova_finishes(SID)
    assert isinstance(drive.run(), Wait)
    cloud.servers[SID].console = "booting... web-1 login:"
    drive.later(5)
    drive.run()
    assert cloud.calls["confirm"] == 1


def test_a_console_showing_a_panic_fails_the_gate() -> None:
    cloud = cloud_with()
    drive = resize(
        cloud, gate=(GateCheck("console", {"not_contains": "Kernel panic"}),), gate_timeout_s=0
    )
    cloud.servers[SID].console = "Kernel panic - not syncing"
    drive.run()
    cloud.nova_finishes(SID)
    drive.run()
    assert cloud.calls["revert"] == 1


def test_on_failure_keep_confirms_despite_the_gate_and_says_so() -> None:
    cloud = cloud_with(addresses=())
    drive = resize(
        cloud, gate=(GateCheck("tcp", {"port": 22}),), gate_timeout_s=0, on_failure="keep"
    )
    drive.run()
    cloud.nova_finishes(SID)
    drive.run()
    cloud.nova_finishes(SID)
    outcome, reason = finished(drive.run())
    assert outcome == "confirmed"
    assert reason is not None
    assert "no address" in reason


def test_nova_auto_confirming_first_turns_the_confirm_conflict_into_success() -> None:
    cloud = cloud_with()
    drive = resize(cloud)

    def nova_confirms_first(call: str) -> None:
        if call == "confirm":
            server = cloud.servers[SID]
            server.vm_state, server.task_state = "active", None

    drive.run()
    cloud.nova_finishes(SID)
    cloud.on_call = nova_confirms_first
    assert finished(drive.run()) == ("confirmed", None)
    assert "confirmed_by_nova" in drive.steps


def test_a_resize_nova_rejects_ends_failed_with_novas_reason() -> None:
    cloud = cloud_with()
    drive = resize(cloud)
    drive.run()
    cloud.nova_finishes(SID, fail="No valid host was found. There are not enough hosts available.")
    outcome, reason = finished(drive.run())
    assert outcome == "failed"
    assert reason == "resize failed: No valid host was found. There are not enough hosts available."


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (  # microversion 2.84 and later: the fault's message, not the traceback
            {
                "details": "No valid host was found. No valid host found for resize",
                "traceback": '  File "conductor/tasks/migrate.py", line 1, in _execute\n'
                "    raise exception.NoValidHost(reason=msg)\n",
            },
            "resize: No valid host was found. No valid host found for resize",
        ),
        (  # before 2.84: the traceback's last line
            {"traceback": '  File "x.py", line 1, in f\n    raise NoValidHost()\n'},
            "resize: raise NoValidHost()",
        ),
        ({"details": "  "}, "resize: conductor_migrate_server failed"),
    ],
)
def test_a_resize_nova_gave_up_on_without_a_fault_reports_its_instance_action(
    event: dict[str, str], reason: str
) -> None:
    cloud = cloud_with()
    drive = resize(cloud)
    drive.run()
    server = cloud.servers[SID]  # Nova gave up: the server is back, no fault recorded
    server.task_state, server.flavor = None, server.old_flavor or server.flavor
    cloud.actions_log.insert(
        0,
        {
            "action": "resize",
            "events": [{"event": "conductor_migrate_server", "result": "Error", **event}],
        },
    )
    assert finished(drive.run()) == ("failed", f"resize failed: {reason}")


@pytest.mark.parametrize(
    ("server", "flavor", "reason"),
    [
        ({"vm_state": "error"}, "m1.large", "the server is ERROR (vm_state error)"),
        ({}, "m1.small", "the server already has flavor m1.small"),
        ({}, "m9.huge", "flavor 'm9.huge' does not exist"),
        ({"vm_state": "resized"}, "m1.large", "another resize is waiting for confirmation"),
    ],
)
def test_resize_preconditions_refuse_without_calling_nova(
    server: dict[str, object], flavor: str, reason: str
) -> None:
    cloud = cloud_with(**server)
    drive = Drive(cloud, "resize", {"server": {"id": SID}, "flavor": flavor})
    assert finished(drive.run()) == ("refused", reason)
    assert cloud.calls["resize"] == 0


def test_a_vanished_server_fails_the_operation() -> None:
    drive = Drive(FakeCloud(), "resize", {"server": {"id": SID}, "flavor": "m1.large"})
    assert finished(drive.run()) == ("failed", "the server does not exist")


def test_a_stopped_server_must_come_back_shutoff_on_the_new_flavor() -> None:
    cloud = cloud_with(vm_state="stopped", power="shutdown")
    drive = resize(cloud)
    drive.run()
    assert drive.state["final_status"] == "SHUTOFF"
    cloud.nova_finishes(SID)
    cloud.servers[SID].vm_state = "resized"
    drive.run()
    cloud.nova_finishes(SID)
    cloud.servers[SID].vm_state = "stopped"
    assert finished(drive.run()) == ("confirmed", None)


def test_a_resize_that_never_reaches_verify_resize_times_out() -> None:
    cloud = cloud_with()
    drive = resize(cloud, timeout_s=60)
    drive.run()
    drive.later(61)
    outcome, _ = finished(drive.run())
    assert outcome == "timed_out"


def test_a_restart_in_verify_resize_confirms_once() -> None:
    cloud = cloud_with()
    drive = resize(cloud)
    drive.run()
    cloud.nova_finishes(SID)
    again = drive.restarted()  # killed while waiting: the journal says wait_verify
    again.run()
    cloud.nova_finishes(SID)
    assert finished(again.run()) == ("confirmed", None)
    assert cloud.calls["resize"] == 1
    assert cloud.calls["confirm"] == 1


def test_a_restart_between_asking_and_recording_does_not_ask_again() -> None:
    cloud = cloud_with()
    drive = resize(cloud)

    def crash_after_resize(call: str) -> None:
        if call == "resize":
            cloud.on_call = None
            raise KeyboardInterrupt  # the daemon dies right after asking Nova

    cloud.on_call = crash_after_resize
    with pytest.raises(KeyboardInterrupt):
        drive.run()
    # The request reached Nova (the fake applies it after the hook). Simulate
    # the state the journal had: phase "request", requesting_at set.
    cloud.resize(SID, "id-m1.large")
    again = drive.restarted()
    again.phase = "check"
    assert isinstance(again.run(), Wait)
    assert cloud.calls["resize"] == 2  # the test's own call above, and the first one
    assert "resumed" in again.steps


def test_quota_exceeded_ends_with_that_reason() -> None:
    from nova_autopilot.errors import QuotaExceeded

    cloud = cloud_with()
    cloud.fail["resize"] = [
        QuotaExceeded(
            "Quota exceeded for cores: Requested 4, but already used 8 of 10 cores", status=403
        )
    ]
    outcome, reason = finished(resize(cloud).run())
    assert outcome == "failed"
    assert (
        reason
        == "quota exceeded: Quota exceeded for cores: Requested 4, but already used 8 of 10 cores"
    )


def test_temporary_errors_propagate_to_the_runner_for_retry() -> None:
    cloud = cloud_with()
    cloud.fail["server"] = [CloudUnavailable("503 Service Unavailable", status=503)]
    with pytest.raises(CloudUnavailable):
        resize(cloud).run()


# -- rescue ------------------------------------------------------------------


def rescue(cloud: FakeCloud, **params: object) -> Drive:
    return Drive(cloud, "rescue", {"server": {"id": SID}, **params})


def test_a_launched_server_in_error_is_rescued_with_a_fresh_password() -> None:
    cloud = cloud_with(vm_state="error")
    drive = rescue(cloud)
    transition = drive.run()
    assert isinstance(transition, Wait)
    assert "instance.rescue.end" in transition.events
    assert len(drive.secrets["admin_password"]) >= 20
    assert "admin_password" not in drive.state
    cloud.nova_finishes(SID)
    assert finished(drive.run()) == ("rescued", None)


def test_while_rescuing_an_error_status_is_not_mistaken_for_the_end() -> None:
    cloud = cloud_with(vm_state="error")
    drive = rescue(cloud)
    drive.run()
    assert cloud.servers[SID].state().status == "ERROR"
    assert isinstance(drive.run(), Wait)  # task_state rescuing: still waiting


def test_a_never_launched_server_is_not_rescuable_and_nova_is_not_asked() -> None:
    cloud = cloud_with(vm_state="error", launched=False)
    outcome, reason = finished(rescue(cloud).run())
    assert outcome == "not_rescuable"
    assert reason is not None
    assert "never launched" in reason
    assert cloud.calls["rescue"] == 0


def test_a_restart_after_asking_for_the_rescue_does_not_ask_again() -> None:
    cloud = cloud_with()
    drive = rescue(cloud)
    drive.run()
    again = drive.restarted()
    again.phase = "check"
    again.state.pop("requested")  # died before recording that it had asked
    assert isinstance(again.run(), Wait)
    assert cloud.calls["rescue"] == 1


def test_a_failed_rescue_reports_novas_fault() -> None:
    cloud = cloud_with()
    drive = rescue(cloud)
    drive.run()
    cloud.nova_finishes(SID, fail="Rescue image not found")
    assert finished(drive.run()) == ("failed", "rescue failed: Rescue image not found")


def test_unrescue_brings_a_rescued_server_back_to_active() -> None:
    cloud = cloud_with(vm_state="rescued")
    drive = Drive(cloud, "unrescue", {"server": {"name": "web-1"}})
    assert isinstance(drive.run(), Wait)
    cloud.nova_finishes(SID)
    assert finished(drive.run()) == ("unrescued", None)


# -- Nova busy with the server -------------------------------------------------

WRITES = ("rescue", "unrescue", "resize", "lock")


def writes(cloud: FakeCloud) -> int:
    return sum(cloud.calls[call] for call in WRITES)


def test_a_failed_reboot_still_clearing_its_task_is_waited_for_then_rescued() -> None:
    cloud = cloud_with(vm_state="error", task_state="reboot_started_hard")
    drive = rescue(cloud)
    parked = drive.run()
    assert isinstance(parked, Wait)
    assert parked.phase == "check"
    assert "error" in parked.states
    assert parked.retry_after_s == 120.0
    assert drive.steps == ["waiting_for_task"]
    assert writes(cloud) == 0
    drive.later(3)
    cloud.servers[SID].task_state = None  # Nova has cleared the task
    assert isinstance(drive.run(), Wait)  # now waiting for RESCUE
    assert cloud.calls["rescue"] == 1
    assert drive.steps[:3] == ["waiting_for_task", "task_ended", "checked"]


def test_a_task_that_ends_in_a_state_that_cannot_be_rescued_is_refused_with_novas_state() -> None:
    cloud = cloud_with(task_state="unrescuing", vm_state="rescued")
    drive = rescue(cloud)
    assert isinstance(drive.run(), Wait)
    cloud.servers[SID].vm_state, cloud.servers[SID].task_state = "resized", None
    assert finished(drive.run()) == ("refused", "the server is VERIFY_RESIZE (vm_state resized)")
    assert writes(cloud) == 0


def test_a_task_that_never_ends_within_task_timeout_is_refused_saying_so() -> None:
    cloud = cloud_with(vm_state="error", task_state="reboot_started_hard")
    drive = Drive(cloud, "rescue", {"server": {"id": SID}}, Confirm(task_timeout_s=30))
    parked = drive.run()
    assert isinstance(parked, Wait)
    assert parked.retry_after_s == 30.0
    drive.later(10)
    again = drive.run()  # woken by something else: still busy, the bound stays
    assert isinstance(again, Wait)
    assert again.retry_after_s == 20.0
    drive.later(20)
    assert finished(drive.run()) == (
        "refused",
        "task reboot_started_hard is still in progress after 30s",
    )
    assert writes(cloud) == 0


def test_the_wait_for_a_task_never_outlasts_the_operations_deadline() -> None:
    cloud = cloud_with(vm_state="error", task_state="rebooting")
    drive = Drive(cloud, "rescue", {"server": {"id": SID}}, Confirm(timeout_s=45))
    parked = drive.run()
    assert isinstance(parked, Wait)
    assert parked.retry_after_s == 45.0


def test_task_timeout_zero_refuses_at_once_as_nova_would() -> None:
    cloud = cloud_with(vm_state="error", task_state="rebooting")
    drive = Drive(cloud, "rescue", {"server": {"id": SID}}, Confirm(task_timeout_s=0))
    assert finished(drive.run()) == ("refused", "task rebooting is still in progress after 0s")


def test_a_never_launched_server_is_refused_without_waiting_for_its_task() -> None:
    cloud = cloud_with(vm_state="error", task_state="deleting", launched=False)
    outcome, _ = finished(rescue(cloud).run())
    assert outcome == "not_rescuable"


def test_a_restarted_daemon_keeps_the_bound_of_the_wait_it_had_begun() -> None:
    cloud = cloud_with(vm_state="error", task_state="reboot_started_hard")
    drive = Drive(cloud, "rescue", {"server": {"id": SID}}, Confirm(task_timeout_s=60))
    drive.run()
    drive.later(50)
    again = drive.restarted()  # the journal kept phase check and the busy state
    parked = again.run()
    assert isinstance(parked, Wait)
    assert parked.retry_after_s == 10.0
    assert again.steps == []  # the wait was already recorded
    cloud.servers[SID].task_state = None
    assert isinstance(again.run(), Wait)
    assert cloud.calls["rescue"] == 1


def test_unrescue_asked_while_the_rescue_still_runs_waits_then_unrescues() -> None:
    cloud = cloud_with(vm_state="error", task_state="rescuing")
    drive = Drive(cloud, "unrescue", {"server": {"id": SID}})
    assert isinstance(drive.run(), Wait)
    assert cloud.calls["unrescue"] == 0
    cloud.servers[SID].vm_state, cloud.servers[SID].task_state = "rescued", None
    assert isinstance(drive.run(), Wait)
    assert cloud.calls["unrescue"] == 1


def test_a_resize_waits_for_a_reboot_to_end_then_resizes() -> None:
    cloud = cloud_with(task_state="rebooting")
    drive = resize(cloud)
    assert isinstance(drive.run(), Wait)
    assert cloud.calls["resize"] == 0
    assert cloud.calls["flavor"] == 0
    cloud.servers[SID].task_state = None
    drive.run()
    assert cloud.calls["resize"] == 1


def test_a_resize_whose_waited_task_leaves_the_server_in_error_is_refused() -> None:
    cloud = cloud_with(task_state="reboot_started_hard")
    drive = resize(cloud)
    drive.run()
    cloud.servers[SID].vm_state, cloud.servers[SID].task_state = "error", None
    assert finished(drive.run()) == ("refused", "the server is ERROR (vm_state error)")
    assert cloud.calls["resize"] == 0


def test_unrescue_of_a_server_not_in_rescue_is_refused() -> None:
    cloud = cloud_with()
    outcome, _ = finished(Drive(cloud, "unrescue", {"server": SID}).run())
    assert outcome == "refused"
    assert cloud.calls["unrescue"] == 0


# -- hands off, and quota ------------------------------------------------------


def test_a_policy_can_hold_novas_lock_for_the_whole_operation() -> None:
    cloud = cloud_with()
    drive = Drive(cloud, "resize", {"server": {"id": SID}, "flavor": "m1.large", "lock": True})
    drive.run()
    assert cloud.servers[SID].locked == "nova-autopilot operation op-1"
    assert drive.state["locked"] is True


def test_a_server_locked_by_someone_else_is_left_alone() -> None:
    cloud = cloud_with(locked="maintenance by alice")
    drive = Drive(cloud, "rescue", {"server": {"id": SID}, "lock": True})
    assert finished(drive.run()) == ("refused", "the server is locked by someone else")
    assert cloud.calls["rescue"] == 0


def test_the_lock_is_released_when_the_operation_ends() -> None:
    from nova_autopilot.actions.common import release_lock

    cloud = cloud_with()
    drive = Drive(cloud, "rescue", {"server": {"id": SID}, "lock": "true"})
    drive.run()
    cloud.nova_finishes(SID)
    assert finished(drive.run())[0] == "rescued"
    release_lock(drive.context())  # what the runner does with every Finish
    assert cloud.servers[SID].locked is None
    assert drive.state["locked"] is False


def test_raise_quota_adds_what_the_new_flavor_needs_once() -> None:
    cloud = cloud_with()
    drive = Drive(
        cloud, "resize", {"server": {"id": SID}, "flavor": "m1.large", "raise_quota": True}
    )
    drive.run()
    assert cloud.quota == {"cores": 21, "ram": 52224}
    assert drive.state["quota_raised"]["before"] == {"cores": 20, "ram": 51200}
    again = drive.restarted()
    again.phase = "request"
    again.state.pop("requested")
    cloud.servers[SID].task_state, cloud.servers[SID].flavor = None, "m1.small"
    again.run()
    assert cloud.calls["set_quota"] == 1  # never raised twice


# -- boot verification -----------------------------------------------------------


def verify(cloud: FakeCloud, **params: object) -> Drive:
    return Drive(cloud, "verify_boot", {"server": {"id": SID}, **params}, Confirm(timeout_s=60))


def test_a_console_at_the_login_prompt_is_a_good_boot() -> None:
    cloud = cloud_with(console="[  OK  ] Reached target Multi-User System.\nweb-1 login:")
    assert finished(verify(cloud).run()) == ("boot_ok", None)


def test_a_kernel_panic_on_the_console_is_a_failed_boot() -> None:
    cloud = cloud_with(console="Kernel panic - not syncing: VFS: Unable to mount root fs")
    assert finished(verify(cloud).run()) == ("boot_failed", "the console shows 'Kernel panic'")


def test_boot_markers_can_be_named_by_the_policy() -> None:
    cloud = cloud_with(console="app: READY")
    assert finished(verify(cloud, success=["app: READY"]).run())[0] == "boot_ok"
    cloud.servers[SID].console = "app: FATAL"
    assert finished(verify(cloud, success="READY", failure="FATAL").run())[0] == "boot_failed"


def test_a_console_that_says_nothing_yet_is_watched_until_the_deadline() -> None:
    cloud = cloud_with(console="[    0.51] Run /init as init process")
    drive = verify(cloud, interval=5)
    transition = drive.run()
    assert isinstance(transition, Wait)
    assert transition.retry_after_s == 5
    drive.later(61)
    assert finished(drive.run())[0] == "timed_out"
    assert cloud.calls["console"] == 2


def _gate_detail(drive: Drive, name: str) -> dict[str, object]:
    return [detail for step, detail in drive.details if step == name][-1]


def test_a_passed_gate_records_every_check_it_ran_with_its_result() -> None:
    cloud = cloud_with()
    drive = resize(cloud, gate=(GateCheck("tcp", {"port": 22}),))
    drive.run()
    cloud.nova_finishes(SID)
    drive.run()
    assert _gate_detail(drive, "gate_passed")["checks"] == [
        {"check": "status", "passed": True, "detail": "status is VERIFY_RESIZE"},
        {"check": "flavor", "passed": True, "detail": "flavor is m1.large"},
        {"check": "power_state", "passed": True, "detail": "power state is running"},
        {"check": "tcp", "passed": True, "detail": "port 22 answered"},
    ]


def test_a_failed_gate_records_the_failing_check_beside_those_that_passed() -> None:
    cloud = cloud_with()
    gate = (GateCheck("console", {"contains": "login:", "not_contains": "Kernel panic"}),)
    drive = resize(cloud, gate=gate)
    cloud.servers[SID].console = "Kernel panic - not syncing"
    drive.run()
    cloud.nova_finishes(SID)
    drive.run()
    detail = _gate_detail(drive, "gate_failed")
    assert detail["final"] is True
    assert detail["problems"] == ["console: console shows 'Kernel panic'"]
    checks = detail["checks"]
    assert isinstance(checks, list)
    assert [(c["check"], c["passed"]) for c in checks] == [
        ("status", True),
        ("flavor", True),
        ("power_state", True),
        ("console", False),
    ]
    assert checks[-1]["detail"] == "console shows 'Kernel panic'"


def test_a_gate_retried_records_the_implicit_checks_of_its_first_look_each_time() -> None:
    cloud = cloud_with()
    drive = resize(cloud, gate=(GateCheck("console", {"contains": "login:"}),))
    cloud.servers[SID].console = "booting..."
    drive.run()
    cloud.nova_finishes(SID)
    drive.run()
    first = _gate_detail(drive, "gate_failed")
    assert first["final"] is False
    cloud.servers[SID].console = "web-1 login:"
    drive.later(5)
    drive.run()
    checks = _gate_detail(drive, "gate_passed")["checks"]
    assert isinstance(checks, list)
    assert [c["check"] for c in checks] == ["status", "flavor", "power_state", "console"]
    assert checks[-1] == {"check": "console", "passed": True, "detail": "console shows 'login:'"}


def test_an_implicit_check_that_fails_is_recorded_and_reverts_at_once() -> None:
    cloud = cloud_with()
    drive = resize(cloud)
    drive.run()
    cloud.nova_finishes(SID)
    cloud.servers[SID].power = "shutdown"
    drive.run()
    detail = _gate_detail(drive, "gate_failed")
    assert detail["checks"] == [
        {"check": "status", "passed": True, "detail": "status is VERIFY_RESIZE"},
        {"check": "flavor", "passed": True, "detail": "flavor is m1.large"},
        {"check": "power_state", "passed": False, "detail": "power state is shutdown, was running"},
    ]
    assert cloud.calls["revert"] == 1
