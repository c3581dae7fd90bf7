"""The sandbox's parts alone: states, scheduler, faults, durations, console, microversions."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from nova_autopilot.sandbox import states
from nova_autopilot.sandbox.clock import ManualClock
from nova_autopilot.sandbox.console import console_log, tail
from nova_autopilot.sandbox.durations import Durations
from nova_autopilot.sandbox.errors import ApiError
from nova_autopilot.sandbox.faults import FaultBook, HttpFault, ServerFaults
from nova_autopilot.sandbox.microversion import MAX_VERSION, MIN_VERSION, Version, requested
from nova_autopilot.sandbox.scheduler import Flow, Scheduler
from tests.unit.sandbox_support import running_scheduler


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met before the deadline"
        time.sleep(0.005)


# -- states -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("vm_state", "task_state", "status"),
    [
        ("active", None, "ACTIVE"),
        ("active", "resize_prep", "RESIZE"),
        ("stopped", "resize_migrating", "RESIZE"),
        ("resized", None, "VERIFY_RESIZE"),
        ("resized", "resize_reverting", "REVERT_RESIZE"),
        ("resized", "powering-off", "VERIFY_RESIZE"),
        ("active", "rescuing", "ACTIVE"),
        ("error", "rescuing", "ERROR"),
        ("rescued", "unrescuing", "RESCUE"),
        ("active", "reboot_started_hard", "HARD_REBOOT"),
        ("building", "spawning", "BUILD"),
        ("deleted", None, "DELETED"),
        ("nonsense", None, "UNKNOWN"),
    ],
)
def test_the_status_is_derived_from_vm_and_task_state_as_nova_does(
    vm_state: str, task_state: str | None, status: str
) -> None:
    assert states.status_from_state(vm_state, task_state) == status


def test_a_status_filter_by_active_ignores_the_task_but_resize_needs_a_resize_task() -> None:
    vm_states, tasks = states.states_for_statuses(["ACTIVE"])
    assert vm_states == {"active"}
    assert None in tasks

    vm_states, tasks = states.states_for_statuses(["resize"])
    assert vm_states == {"active", "stopped"}
    assert None not in tasks
    assert "resize_prep" in tasks


# -- scheduler ----------------------------------------------------------------------------


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def scheduler(clock: ManualClock) -> Iterator[Scheduler]:
    with running_scheduler(clock) as running:
        yield running


def steps(log: list[str], name: str, delays: list[float]) -> Flow:
    for index, delay in enumerate(delays):
        yield delay
        log.append(f"{name}{index}")


def test_a_flow_step_runs_only_once_its_time_has_come(
    scheduler: Scheduler, clock: ManualClock
) -> None:
    log: list[str] = []
    scheduler.spawn("a", steps(log, "a", [10.0, 5.0]))

    clock.advance(9.0)
    wait_until(scheduler.settled)
    assert log == []

    clock.advance(1.0)
    wait_until(lambda: log == ["a0"])
    clock.advance(5.0)
    wait_until(lambda: log == ["a0", "a1"])
    wait_until(lambda: scheduler.pending() == 0)


def test_flows_interleave_by_due_time(scheduler: Scheduler, clock: ManualClock) -> None:
    log: list[str] = []
    scheduler.spawn("a", steps(log, "a", [2.0, 2.0]))
    scheduler.spawn("b", steps(log, "b", [1.0, 2.0]))

    for _ in range(4):
        clock.advance(1.0)
        wait_until(scheduler.settled)

    assert log == ["b0", "a0", "b1", "a1"]


def test_cancelling_a_key_drops_its_pending_flows_only(
    scheduler: Scheduler, clock: ManualClock
) -> None:
    log: list[str] = []
    scheduler.spawn("a", steps(log, "a", [1.0]))
    scheduler.spawn("b", steps(log, "b", [1.0]))

    assert scheduler.cancel("a") == 1
    clock.advance(1.0)
    wait_until(lambda: log == ["b0"])
    assert scheduler.pending() == 0


def test_a_broken_flow_is_reported_and_the_others_go_on(clock: ManualClock) -> None:
    failures: list[str] = []
    log: list[str] = []
    sched = Scheduler(
        clock=clock, lock=threading.RLock(), on_error=lambda key, exc: failures.append(key)
    )

    def broken() -> Flow:
        yield 0.0
        raise RuntimeError("boom")

    sched.start()
    try:
        sched.spawn("bad", broken())
        sched.spawn("good", steps(log, "g", [0.0, 1.0]))
        clock.advance(1.0)
        wait_until(lambda: log == ["g0", "g1"])
        assert failures == ["bad"]
    finally:
        sched.stop()


# -- faults and durations -----------------------------------------------------------------


def test_an_http_fault_answers_only_matching_requests_and_only_so_many_times() -> None:
    book = FaultBook()
    route = "/v2.1/servers/{server_id}/action"
    book.add_http(HttpFault(503, times=2, method="POST", route=route, action="confirmResize"))

    assert book.take_http("POST", route, "resize", "s1") is None
    assert book.take_http("GET", "/v2.1/servers/{server_id}", None, "s1") is None
    assert book.take_http("POST", route, "confirmResize", "s1") == 503
    assert book.take_http("POST", route, "confirmResize", "s2") == 503
    assert book.take_http("POST", route, "confirmResize", "s1") is None


def test_server_faults_add_up_from_everyone_name_prefix_and_server() -> None:
    book = FaultBook()
    book.set_everyone(ServerFaults(console="emergency"))
    book.add_server("s1", ServerFaults(fail=frozenset({"resize"}), delays={"rescue": 3.0}))

    plan = book.plan("s1", "fail-boot-web")
    assert plan.fail == {"resize", "reboot", "power_on"}
    assert plan.console == "emergency"
    assert book.delay("s1", "fail-boot-web", "rescue", Durations()) == 3.0
    assert book.delay("s2", "web", "rescue", Durations()) == Durations().rescue
    assert book.plan("s2", "web").fail == frozenset()


def test_unknown_operations_and_phases_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown operations"):
        ServerFaults(fail=frozenset({"explode"}))
    with pytest.raises(ValueError, match="unknown phases"):
        ServerFaults(delays={"nap": 1.0})
    with pytest.raises(ValueError, match="unknown fault fields"):
        ServerFaults.from_dict({"fail": ["spawn"], "colour": "red"})


def test_durations_scale_and_can_be_instant() -> None:
    assert Durations().scaled(2).resize_migrate == 2 * Durations().resize_migrate
    assert all(Durations.instant().of(p) == 0.0 for p in Durations.phases())
    with pytest.raises(KeyError):
        Durations().of("nap")


# -- console and microversions ------------------------------------------------------------


def test_a_console_tail_counts_lines_as_nova_does() -> None:
    log = console_log("ok", "web-1")
    assert log.endswith("web-1 login:\n")
    assert tail(log, 2) == "web-1 login:\n"
    assert tail(log, 0) == ""
    assert tail(log, None) == log
    assert "Kernel panic" in console_log("panic", "web-1")


@pytest.mark.parametrize(
    ("headers", "version"),
    [
        ({}, MIN_VERSION),
        ({"OpenStack-API-Version": "compute 2.100"}, Version(2, 100)),
        ({"openstack-api-version": "volume 3.0, compute 2.47"}, Version(2, 47)),
        ({"X-OpenStack-Nova-API-Version": "2.60"}, Version(2, 60)),
        (
            {"OpenStack-API-Version": "compute 2.73", "X-OpenStack-Nova-API-Version": "2.60"},
            Version(2, 73),
        ),
        ({"OpenStack-API-Version": "compute latest"}, MAX_VERSION),
    ],
)
def test_the_requested_microversion_is_read_from_the_headers(
    headers: dict[str, str], version: Version
) -> None:
    assert requested(headers) == version


def test_a_microversion_out_of_range_or_malformed_is_refused_with_novas_words() -> None:
    with pytest.raises(ApiError) as too_high:
        requested({"OpenStack-API-Version": "compute 2.200"})
    assert too_high.value.status == 406
    assert too_high.value.message == (
        "Version 2.200 is not supported by the API. Minimum is 2.1 and maximum is 2.104."
    )
    with pytest.raises(ApiError) as malformed:
        requested({"OpenStack-API-Version": "compute 2.x"})
    assert malformed.value.status == 400
