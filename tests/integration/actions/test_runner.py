"""The runner: waiting without a thread per operation, woken by notifications,
the batched poll, retry delays and deadlines; resuming from the journal."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest
from structlog.testing import capture_logs

from nova_autopilot.actions.runner import Done, Runner, Work
from nova_autopilot.errors import CloudUnavailable
from nova_autopilot.journal import JournalError
from nova_autopilot.policies.model import Confirm
from tests.unit.fakes import FakeCloud, FakeServer, MemoryStore
from tests.unit.policy_helpers import nova_event
from tests.waiting import until

SID = "5e1f7a52-0000-4000-8000-000000000001"


def now() -> datetime:
    return datetime.now(timezone.utc)


class Harness:
    def __init__(self, cloud: FakeCloud, poll_interval_s: float = 60.0) -> None:
        self.cloud = cloud
        self.store = MemoryStore()
        self.done: dict[str, Done] = {}
        self.finished = threading.Event()
        self.runner = Runner(
            cloud=cloud,
            store=self.store,
            clock=now,
            on_done=self._done,
            workers=2,
            poll_interval_s=poll_interval_s,
            retry_base_s=0.01,
        )

    def _done(self, done: Done) -> None:
        self.done[done.op_id] = done
        self.finished.set()

    def resize(self, op_id: str = "op-1", timeout_s: float = 30.0) -> None:
        self.runner.submit(
            Work(
                op_id,
                "resize",
                {"server": {"id": SID}, "flavor": "m1.large"},
                Confirm(timeout_s=timeout_s),
                now(),
            )
        )

    def nova_resizes_then_confirms(self) -> None:
        """Nova moves the waiting resize to VERIFY_RESIZE and says so; once the runner
        asked for the confirmation, Nova confirms and says so."""
        self.cloud.nova_finishes(SID)
        self.runner.notify(nova_event("instance.resize_finish.end", uuid=SID))
        until(lambda: self.cloud.calls["confirm"] == 1 and self.runner.waiting() == 1)
        self.cloud.nova_finishes(SID)
        self.runner.notify(nova_event("instance.resize_confirm.end", uuid=SID))

    def outcome(self, op_id: str = "op-1") -> tuple[str, str | None]:
        assert self.finished.wait(5), "the operation did not finish"
        done = self.done[op_id]
        return done.outcome, done.reason


@pytest.fixture
def cloud() -> FakeCloud:
    cloud = FakeCloud()
    cloud.add(FakeServer(id=SID, name="web-1", flavor="m1.small"))
    return cloud


@pytest.fixture
def harness(cloud: FakeCloud) -> Iterator[Harness]:
    h = Harness(cloud)
    h.runner.start()
    yield h
    h.runner.stop(timeout=5)


def test_notifications_wake_a_resize_through_to_its_confirmed_end(
    harness: Harness, cloud: FakeCloud
) -> None:
    harness.resize()
    until(lambda: harness.runner.waiting() == 1)
    cloud.nova_finishes(SID)
    assert harness.runner.notify(nova_event("instance.resize_finish.end", uuid=SID)) == 1
    until(lambda: cloud.calls["confirm"] == 1 and harness.runner.waiting() == 1)
    cloud.nova_finishes(SID)
    harness.runner.notify(nova_event("instance.resize_confirm.end", uuid=SID))
    assert harness.outcome() == ("confirmed", None)
    assert harness.done["op-1"].nova_requests == 5  # GET, POST resize, GET, POST confirm, GET
    assert harness.store.phases["op-1"][-1] == "verify"
    assert sum(n for _, n in harness.store.steps["op-1"]) == 5


def test_the_table_of_operations_shows_each_one_in_flight_with_its_phase(
    harness: Harness, cloud: FakeCloud
) -> None:
    assert harness.runner.running() == []
    assert set(harness.runner.in_flight_by_action().values()) == {0}
    harness.resize()
    until(lambda: harness.runner.waiting() == 1)
    (running,) = harness.runner.running()
    assert (running.op_id, running.action, running.server_id) == ("op-1", "resize", SID)
    assert running.waiting is True
    assert running.phase == harness.store.phases["op-1"][-1]
    assert harness.runner.in_flight_by_action()["resize"] == 1
    harness.nova_resizes_then_confirms()
    assert harness.outcome() == ("confirmed", None)
    assert harness.runner.running() == []
    assert harness.runner.in_flight_by_action()["resize"] == 0


def test_updates_in_the_middle_of_a_task_do_not_wake_the_operation(
    harness: Harness, cloud: FakeCloud
) -> None:
    harness.resize()
    until(lambda: harness.runner.waiting() == 1)
    busy = nova_event("instance.update", uuid=SID, state="active", task_state="resize_migrating")
    other = nova_event("instance.resize_finish.end", uuid="another-server")
    assert harness.runner.notify(busy) == 0
    assert harness.runner.notify(other) == 0
    assert cloud.calls["server"] == 1


def test_the_batched_poll_catches_a_lost_notification_without_a_get_per_server(
    cloud: FakeCloud,
) -> None:
    h = Harness(cloud, poll_interval_s=0.05)
    h.runner.start()
    try:
        h.resize()
        until(lambda: h.runner.waiting() == 1)
        cloud.nova_finishes(SID)  # ... and the notification is lost
        until(lambda: cloud.calls["confirm"] == 1, timeout=5)
        cloud.nova_finishes(SID)
        assert h.outcome() == ("confirmed", None)
        assert cloud.calls["list"] >= 2
        assert cloud.calls["server"] == 1  # only the first check: the poll's snapshots did the rest
    finally:
        h.runner.stop(timeout=5)


def test_nova_answering_500_twice_is_retried_with_backoff_then_succeeds(
    harness: Harness, cloud: FakeCloud
) -> None:
    error = CloudUnavailable("500 Internal Server Error", status=500)
    cloud.fail["server"] = [error, error]
    harness.resize()
    until(lambda: cloud.calls["resize"] == 1)
    names = [name for name, _ in harness.store.steps["op-1"]]
    assert names[:2] == ["check.retry", "check.retry"]
    assert cloud.calls["server"] == 3


def test_an_operation_past_its_deadline_times_out(harness: Harness) -> None:
    harness.resize(timeout_s=0.2)
    outcome, reason = harness.outcome()
    assert outcome == "timed_out"
    assert reason is not None


def test_nova_unreachable_past_the_deadline_ends_the_operation_timed_out_after_backoff(
    harness: Harness, cloud: FakeCloud
) -> None:
    """Nova answers nothing while the resize waits: retried with growing delays until
    its deadline, then timed out (retried at once past it, the operation used to spin
    until the delay's arithmetic overflowed)."""
    harness.resize(timeout_s=2.0)
    until(lambda: harness.runner.waiting() == 1)
    cloud.fail["server"] = [CloudUnavailable("connection refused")] * 10_000
    cloud.nova_finishes(SID)
    harness.runner.notify(nova_event("instance.resize_finish.end", uuid=SID))

    outcome, reason = harness.outcome()

    assert outcome == "timed_out"
    assert reason == "wait_verify: past the deadline, connection refused"
    names = [name for name, _ in harness.store.steps["op-1"]]
    retries = names.count("wait_verify.retry")
    assert 2 <= retries <= 12, names  # 10 ms, 20 ms, 40 ms... within the 2 s, then the end


def test_unfinished_work_from_the_journal_resumes_in_its_phase(
    harness: Harness, cloud: FakeCloud
) -> None:
    server = cloud.servers[SID]
    server.vm_state, server.flavor, server.old_flavor = "resized", "m1.large", "m1.small"
    state = {
        "server_id": SID,
        "old_flavor": "m1.small",
        "new_flavor": "m1.large",
        "new_flavor_id": "id-m1.large",
        "final_status": "ACTIVE",
        "power_state": "running",
        "requested": True,
    }
    started = now() - timedelta(seconds=5)
    harness.store.versions["op-9"] = 7
    harness.runner.resume(
        [
            Work(
                "op-9",
                "resize",
                {"server": {"id": SID}, "flavor": "m1.large"},
                Confirm(),
                started,
                "wait_verify",
                state,
                7,
            )
        ]
    )
    until(lambda: cloud.calls["confirm"] == 1)
    assert cloud.calls["resize"] == 0
    cloud.nova_finishes(SID)
    harness.runner.notify(nova_event("instance.resize_confirm.end", uuid=SID))
    assert harness.outcome("op-9") == ("confirmed", None)


def test_a_bug_in_a_phase_fails_that_operation_and_the_runner_goes_on(
    harness: Harness, cloud: FakeCloud
) -> None:
    def explode(call: str) -> None:
        if call == "server":
            cloud.on_call = None
            raise ZeroDivisionError("bug")

    cloud.on_call = explode
    harness.resize()
    assert harness.outcome() == ("failed", "internal error: see the daemon's log")
    harness.finished.clear()
    harness.resize("op-2")
    until(lambda: cloud.calls["resize"] == 1)


@pytest.mark.parametrize("refused", ["record_step", "advance", "finish"])
def test_a_journal_out_of_reach_at_a_phases_write_retries_the_phase_then_goes_on(
    harness: Harness, cloud: FakeCloud, monkeypatch: pytest.MonkeyPatch, refused: str
) -> None:
    """The journal takes no write twice (its database away): the phase runs again
    after a delay, from what the journal holds, and the resize ends confirmed, once;
    the operation neither crashes nor stays in flight unwoken."""
    write = getattr(harness.store, refused)
    failures = iter([True, True])

    def flaky(*args: object, **kwargs: object) -> object:
        if next(failures, False):
            raise JournalError("journal database unavailable: connection refused")
        return write(*args, **kwargs)

    monkeypatch.setattr(harness.store, refused, flaky)
    harness.resize()
    until(lambda: cloud.calls["resize"] == 1 and harness.runner.waiting() == 1)
    harness.nova_resizes_then_confirms()

    assert harness.outcome() == ("confirmed", None)
    assert next(failures, False) is False  # both refusals met
    assert harness.store.outcomes["op-1"] == ("confirmed", None)
    assert (cloud.calls["resize"], cloud.calls["confirm"]) == (1, 1)


def test_stopping_leaves_waiting_operations_in_the_journal(cloud: FakeCloud) -> None:
    h = Harness(cloud)
    h.runner.start()
    h.resize()
    until(lambda: h.runner.waiting() == 1)
    h.runner.stop(timeout=5)
    assert h.store.phases["op-1"][-1] == "wait_verify"
    assert "op-1" not in h.store.outcomes
    h.runner.submit(Work("op-2", "resize", {}, Confirm(), now()))  # refused quietly once stopped
    assert "op-2" not in h.store.phases


def test_a_thousand_waiting_operations_need_no_thread_each(cloud: FakeCloud) -> None:
    for i in range(1000):
        cloud.add(FakeServer(id=f"srv-{i}", name=f"s{i}", flavor="m1.small"))
    h = Harness(cloud)
    h.runner.start()
    threads_before = threading.active_count()
    try:
        for i in range(1000):
            h.runner.submit(
                Work(
                    f"op-{i}",
                    "resize",
                    {"server": {"id": f"srv-{i}"}, "flavor": "m1.large"},
                    Confirm(),
                    now(),
                )
            )
        until(lambda: h.runner.waiting() == 1000, timeout=30)
        assert threading.active_count() <= threads_before + 2
    finally:
        h.runner.stop(timeout=5)


def test_a_notification_that_arrives_while_the_phase_still_runs_is_not_missed(
    harness: Harness, cloud: FakeCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    confirm = cloud.confirm_resize

    def nova_is_quick(server_id: str) -> None:
        confirm(server_id)  # Nova confirms and notifies before the phase has parked
        cloud.nova_finishes(server_id)
        harness.runner.notify(nova_event("instance.resize_confirm.end", uuid=SID))

    monkeypatch.setattr(cloud, "confirm_resize", nova_is_quick)
    harness.resize()
    until(lambda: harness.runner.waiting() == 1)
    cloud.nova_finishes(SID)
    harness.runner.notify(nova_event("instance.resize_finish.end", uuid=SID))
    assert harness.outcome() == ("confirmed", None)  # no poll: the poll interval is a minute


def test_a_failing_report_leaves_the_recorded_outcome_alone(cloud: FakeCloud) -> None:
    store = MemoryStore()
    reports: list[str] = []

    def broken_reporter(done: Done) -> None:
        reports.append(done.op_id)
        raise ConnectionError("the broker is gone")

    runner = Runner(cloud=cloud, store=store, clock=now, on_done=broken_reporter, workers=1)
    runner.start()
    try:
        runner.submit(
            Work("op-1", "resize", {"server": {"id": SID}, "flavor": "m9"}, Confirm(), now())
        )
        until(lambda: reports == ["op-1"])
        assert store.outcomes["op-1"][0] == "refused"
        assert store.finish_calls == 1  # not finished again as an internal failure
        assert runner.in_flight() == 0
    finally:
        runner.stop(timeout=5)


def test_the_poll_leaves_an_operation_parked_while_its_server_is_still_busy(
    cloud: FakeCloud,
) -> None:
    h = Harness(cloud, poll_interval_s=0.05)
    h.runner.start()
    try:
        h.resize()
        until(lambda: h.runner.waiting() == 1)
        until(lambda: cloud.calls["list"] >= 3)  # several polls see the server mid-resize
        assert cloud.calls["server"] == 1  # ... and none woke the operation
        assert h.store.phases["op-1"].count("wait_verify") == 1
    finally:
        h.runner.stop(timeout=5)


def test_each_step_lists_the_nova_calls_it_made_and_their_count(
    harness: Harness, cloud: FakeCloud
) -> None:
    harness.resize()
    until(lambda: harness.runner.waiting() == 1)
    harness.nova_resizes_then_confirms()
    harness.outcome()
    steps = harness.store.steps["op-1"]
    details = harness.store.details["op-1"]
    listed = [
        (name, [(c["method"], c["path"], c["status"]) for c in detail.get("calls", [])])
        for (name, _), detail in zip(steps, details, strict=True)
    ]
    assert listed == [
        ("checked", [("GET", "/server", 200)]),
        ("resize_requested", [("POST", "/resize", 200)]),
        ("verify_resize", [("GET", "/server", 200)]),
        ("gate_passed", []),
        ("confirm_requested", [("POST", "/confirm", 200)]),
        ("settled", [("GET", "/server", 200)]),
    ]
    for (name, count), detail in zip(steps, details, strict=True):
        assert len(detail.get("calls", [])) == count, name
        assert "calls_omitted" not in detail


def test_a_step_with_more_calls_than_kept_says_how_many_are_left_out(
    cloud: FakeCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("nova_autopilot.cloud.accounting.CALLS_KEPT", 1)
    monkeypatch.setattr("nova_autopilot.actions.runner.CALLS_KEPT", 1)
    h = Harness(cloud)
    h.runner.start()
    try:
        params = {"server": {"id": SID}, "flavor": "m1.large", "raise_quota": True}
        h.runner.submit(Work("op-1", "resize", params, Confirm(timeout_s=30), now()))
        until(lambda: h.runner.waiting() == 1)
    finally:
        h.runner.stop(timeout=5)
    names = [name for name, _ in h.store.steps["op-1"]]
    steps = dict(zip(names, h.store.details["op-1"], strict=True))
    assert dict(h.store.steps["op-1"])["quota_raised"] == 2  # read the quota, then set it
    assert steps["quota_raised"]["calls"] == [
        {"call": None, "method": "POST", "path": "/quota", "status": 200}
    ]
    assert steps["quota_raised"]["calls_omitted"] == 1
    assert sum(n for _, n in h.store.steps["op-1"]) == cloud.requests.for_operation("op-1")


def rescue_work(task_timeout_s: float = 120.0) -> Work:
    return Work(
        "op-1",
        "rescue",
        {"server": {"id": SID}},
        Confirm(timeout_s=30, task_timeout_s=task_timeout_s, on_failure="leave"),
        now(),
    )


def failed_reboot(cloud: FakeCloud) -> None:
    """Nova has put the server in ERROR and not yet cleared its reboot task."""
    server = cloud.servers[SID]
    server.vm_state, server.task_state = "error", "reboot_started_hard"


def test_a_rescue_parked_on_a_busy_server_wakes_when_nova_clears_the_task(
    harness: Harness, cloud: FakeCloud
) -> None:
    failed_reboot(cloud)
    harness.runner.submit(rescue_work())
    until(lambda: harness.runner.waiting() == 1)
    still = nova_event("instance.update", uuid=SID, state="error", task_state="reboot_started_hard")
    assert harness.runner.notify(still) == 0
    cloud.servers[SID].task_state = None
    cleared = nova_event("instance.update", uuid=SID, state="error", task_state=None)
    assert harness.runner.notify(cleared) == 1
    until(lambda: cloud.calls["rescue"] == 1 and harness.runner.waiting() == 1)
    cloud.nova_finishes(SID)
    harness.runner.notify(nova_event("instance.rescue.end", uuid=SID))
    assert harness.outcome() == ("rescued", None)
    # GET (busy), GET (task ended), POST rescue, GET (rescued): no polling of the busy server
    assert harness.done["op-1"].nova_requests == 4
    assert [name for name, _ in harness.store.steps["op-1"]][:3] == [
        "waiting_for_task",
        "task_ended",
        "checked",
    ]


def test_a_busy_server_whose_task_never_ends_is_refused_at_the_bound(
    harness: Harness, cloud: FakeCloud
) -> None:
    failed_reboot(cloud)
    harness.runner.submit(rescue_work(task_timeout_s=0.2))
    assert harness.outcome() == (
        "refused",
        "task reboot_started_hard is still in progress after 0s",
    )
    assert cloud.calls["rescue"] == 0
    assert cloud.calls["server"] == 2  # the first look, and one at the bound


def test_the_batched_poll_wakes_a_busy_wait_whose_notification_was_lost(
    cloud: FakeCloud,
) -> None:
    h = Harness(cloud, poll_interval_s=0.05)
    h.runner.start()
    try:
        failed_reboot(cloud)
        h.runner.submit(rescue_work())
        until(lambda: h.runner.waiting() == 1)
        cloud.servers[SID].task_state = None  # ... and the instance.update is lost
        until(lambda: cloud.calls["rescue"] == 1)
        assert cloud.calls["server"] == 1  # the poll's snapshot did the second look
    finally:
        h.runner.stop(timeout=5)


def test_nova_clearing_the_task_while_the_first_phase_reads_the_server_wakes_it_at_once(
    harness: Harness, cloud: FakeCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The failed reboot's task is reverted moments after the rescue's first read, and
    Nova's instance.update comes before the phase parks, while the runner did not know
    the server yet: the notification still wakes it, without waiting for the poll."""
    failed_reboot(cloud)
    find_server = cloud.find_server

    def nova_clears_the_task_meanwhile(ref: object) -> object:
        server = find_server(ref)  # type: ignore[arg-type]
        cloud.servers[SID].task_state = None
        cleared = nova_event("instance.update", uuid=SID, state="error", task_state=None)
        assert harness.runner.notify(cleared) == 0  # nothing parked yet
        return server

    monkeypatch.setattr(cloud, "find_server", nova_clears_the_task_meanwhile)
    harness.runner.submit(rescue_work())
    until(lambda: cloud.calls["rescue"] == 1)  # no poll: the poll interval is a minute
    names = [name for name, _ in harness.store.steps["op-1"]]
    assert names[:2] == ["waiting_for_task", "task_ended"]
    assert harness.store.details["op-1"][1]["woken_by"] == {
        "by": "notification",
        "event": "instance.update",
    }


def test_the_first_step_of_a_woken_phase_says_what_woke_it(
    harness: Harness, cloud: FakeCloud
) -> None:
    failed_reboot(cloud)
    harness.runner.submit(rescue_work())
    until(lambda: harness.runner.waiting() == 1)
    cloud.servers[SID].task_state = None
    harness.runner.notify(nova_event("instance.update", uuid=SID, state="error", task_state=None))
    until(lambda: cloud.calls["rescue"] == 1 and harness.runner.waiting() == 1)
    cloud.nova_finishes(SID)
    harness.runner.notify(nova_event("instance.rescue.end", uuid=SID))
    assert harness.outcome() == ("rescued", None)
    woken = [
        (name, detail.get("woken_by"))
        for (name, _), detail in zip(
            harness.store.steps["op-1"], harness.store.details["op-1"], strict=True
        )
    ]
    assert woken[0] == ("waiting_for_task", None)  # the first run was not woken
    assert woken[1] == ("task_ended", {"by": "notification", "event": "instance.update"})
    assert ("rescued", {"by": "notification", "event": "instance.rescue.end"}) in woken


def test_a_phase_woken_by_the_poll_or_a_timer_says_so(cloud: FakeCloud) -> None:
    h = Harness(cloud, poll_interval_s=0.05)
    h.runner.start()
    try:
        failed_reboot(cloud)
        h.runner.submit(rescue_work(task_timeout_s=60.0))
        until(lambda: h.runner.waiting() == 1)
        cloud.servers[SID].task_state = None  # ... and the instance.update is lost
        until(lambda: cloud.calls["rescue"] == 1)
        assert h.store.details["op-1"][1]["woken_by"] == {"by": "poll"}
    finally:
        h.runner.stop(timeout=5)
    timed = Harness(cloud)
    timed.runner.start()
    try:
        cloud.servers[SID].vm_state, cloud.servers[SID].task_state = "active", "rebooting"
        timed.runner.submit(rescue_work(task_timeout_s=0.2))
        assert timed.outcome() == ("refused", "task rebooting is still in progress after 0s")
        assert timed.store.details["op-1"][-1]["woken_by"] == {"by": "timer"}
    finally:
        timed.runner.stop(timeout=5)


def parked_in(harness: Harness, phase: str) -> bool:
    """Whether the operation waits for Nova in ``phase`` (or has ended already)."""
    return harness.finished.is_set() or any(
        running.phase == phase and running.waiting for running in harness.runner.running()
    )


def nova_rescues(harness: Harness, cloud: FakeCloud) -> None:
    """Once the runner waits on the asked rescue, Nova ends it and says so."""
    until(lambda: parked_in(harness, "wait"))
    cloud.nova_finishes(SID)
    harness.runner.notify(nova_event("instance.rescue.end", uuid=SID))


def test_a_rescue_whose_request_nova_never_received_is_asked_again_after_a_look(
    harness: Harness, cloud: FakeCloud
) -> None:
    """Nova's API is away as the rescue is sent (connection refused): the phase is
    retried with backoff from the operation's first look at the server, which finds no
    rescue under way, and the rescue is asked once Nova answers."""
    cloud.fail["rescue"] = [CloudUnavailable("ConnectFailure: connection refused")]
    harness.runner.submit(rescue_work())
    nova_rescues(harness, cloud)

    assert harness.outcome() == ("rescued", None)
    assert cloud.calls["rescue"] == 2  # the one refused at the door, the one Nova took
    names = [name for name, _ in harness.store.steps["op-1"]]
    assert names == ["checked", "request.retry", "checked", "rescue_requested", "rescued"]


@pytest.mark.parametrize("action", ["rescue", "resize"])
def test_a_write_whose_answer_was_lost_is_not_asked_again(
    harness: Harness, cloud: FakeCloud, monkeypatch: pytest.MonkeyPatch, action: str
) -> None:
    """Nova took the write but its answer never came back (the API went away in the
    middle of the call): the retry finds the request under way in Nova and waits for
    it; it does not ask again (a second request would be refused with a 409, and the
    operation would end refused while Nova carries out the first)."""
    ask = getattr(cloud, action)
    lost = iter([True])

    def answer_lost(*args: object, **kwargs: object) -> None:
        ask(*args, **kwargs)
        if next(lost, False):
            raise CloudUnavailable("ConnectFailure: Connection aborted, RemoteDisconnected")

    monkeypatch.setattr(cloud, action, answer_lost)
    if action == "rescue":
        harness.runner.submit(rescue_work())
        nova_rescues(harness, cloud)
        expected = ("rescued", None)
    else:
        harness.resize()
        until(lambda: parked_in(harness, "wait_verify"))
        if not harness.finished.is_set():
            harness.nova_resizes_then_confirms()
        expected = ("confirmed", None)

    assert harness.outcome() == expected
    assert cloud.calls[action] == 1
    names = [name for name, _ in harness.store.steps["op-1"]]
    assert names[:3] == ["checked", "request.retry", "resumed"], names


def test_a_phase_waiting_out_a_retry_delay_runs_at_once_when_nova_answers_again(
    cloud: FakeCloud,
) -> None:
    """The retry delay doubles up to minutes while Nova is away; once the daemon sees
    Nova answer again (retry_now), the waiting phase runs then, and says what woke it.
    Operations parked for anything else (here a resize waiting for VERIFY_RESIZE)
    stay parked."""
    other = "5e1f7a52-0000-4000-8000-000000000002"
    cloud.add(FakeServer(id=other, name="web-2", flavor="m1.small"))
    store = MemoryStore()
    runner = Runner(
        cloud=cloud, store=store, clock=now, on_done=lambda done: None, retry_base_s=600.0
    )
    runner.start()
    try:
        runner.submit(
            Work("op-2", "resize", {"server": {"id": other}, "flavor": "m1.large"},
                 Confirm(timeout_s=3600), now())
        )  # fmt: skip
        until(lambda: runner.waiting() == 1 and cloud.calls["resize"] == 1)
        cloud.fail["server"] = [CloudUnavailable("connection refused")]
        runner.submit(
            Work("op-1", "resize", {"server": {"id": SID}, "flavor": "m1.large"},
                 Confirm(timeout_s=3600), now())
        )  # fmt: skip
        until(lambda: store.steps.get("op-1"))
        assert [name for name, _ in store.steps["op-1"]] == ["check.retry"]  # for minutes

        until(lambda: runner.retry_now() == 1)  # op-1 once parked; never op-2's wait
        until(lambda: cloud.calls["resize"] == 2)
        until(lambda: len(store.steps["op-1"]) == 3)
        steps = store.steps["op-1"]
        assert [name for name, _ in steps] == ["check.retry", "checked", "resize_requested"]
        assert store.details["op-1"][1]["woken_by"] == {"by": "recovery"}
        assert runner.retry_now() == 0
    finally:
        runner.stop(timeout=5)


def test_a_rescue_nova_took_and_failed_at_once_while_its_answer_was_lost_is_not_asked_again(
    harness: Harness, cloud: FakeCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The answer to the rescue is lost, and by the retry's look Nova has already
    failed it: the server is back in ERROR with no task. Only Nova's instance actions
    still say the request arrived: the operation waits for the outcome Nova reached
    (failed), and does not ask for a second rescue."""
    ask = cloud.rescue

    def taken_failed_and_lost(*args: object, **kwargs: object) -> None:
        ask(*args, **kwargs)
        cloud.nova_finishes(SID, fail="No valid host was found")
        raise CloudUnavailable("ConnectFailure: Connection aborted, RemoteDisconnected")

    monkeypatch.setattr(cloud, "rescue", taken_failed_and_lost)
    harness.runner.submit(rescue_work())

    outcome, reason = harness.outcome()
    assert cloud.calls["rescue"] == 1
    assert outcome == "failed", (outcome, reason)
    names = [name for name, _ in harness.store.steps["op-1"]]
    assert names[:3] == ["checked", "request.retry", "resumed"], names


def test_a_progress_report_the_journal_cannot_make_is_a_warning_and_the_operation_goes_on(
    cloud: FakeCloud,
) -> None:
    """The phase's progress (what `send --wait` shows) is read back from the journal;
    a journal away then costs that report only, said as a warning, not as an error
    with a traceback (which is for a bug)."""
    done: list[Done] = []

    def report(op_id: str, phase: str) -> None:
        raise JournalError("journal database unavailable: connection refused")

    store = MemoryStore()
    runner = Runner(cloud=cloud, store=store, clock=now, on_done=done.append, on_phase=report)
    runner.start()
    try:
        with capture_logs() as logs:
            runner.submit(
                Work("op-1", "resize", {"server": {"id": SID}, "flavor": "m1.large"},
                     Confirm(timeout_s=30), now())
            )  # fmt: skip
            until(lambda: runner.waiting() == 1)
        reports = [e for e in logs if e["event"] == "operation.phase_report_failed"]
        assert reports, logs
        assert {e["log_level"] for e in reports} == {"warning"}
        assert "connection refused" in reports[0]["error"]
        cloud.nova_finishes(SID)
        runner.notify(nova_event("instance.resize_finish.end", uuid=SID))
        until(lambda: cloud.calls["confirm"] == 1)
    finally:
        runner.stop(timeout=5)
