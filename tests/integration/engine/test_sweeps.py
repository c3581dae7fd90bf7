"""Sweeps over an in-memory Nova: which servers become events, with what fields and
keys; no look at Nova when no policy listens; the requests a sweep costs; and,
through the engine on a real journal, one decision per stuck state."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from nova_autopilot.actions.runner import Runner
from nova_autopilot.engine.flow import Engine
from nova_autopilot.engine.sweeps import Sweeper, server_event
from nova_autopilot.events import Event
from nova_autopilot.journal import Journal
from nova_autopilot.logs import redact
from nova_autopilot.policies import PolicySet
from nova_autopilot.policies.model import Confirm, GateCheck
from tests.unit.fakes import Drive, FakeCloud, FakeServer, finished
from tests.unit.policy_helpers import policies

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
HOUR = timedelta(hours=1)
ALL = """
policies:
  - name: confirm-stuck
    when:
      source: sweep
      event: sweep.server.verify_resize
      match: {field: payload.stuck_for_s, longer_than: 1h}
    do: {action: finish_resize, params: {server: {id: "{{ instance_id }}"}}}
  - name: unrescue-stuck
    when: {source: sweep, event: sweep.server.rescue}
    do: {action: unrescue, params: {server: {id: "{{ instance_id }}"}}}
    mode: dry-run
  - name: rescue-broken
    when: {source: sweep, event: sweep.server.error}
    do: {action: rescue, params: {server: {id: "{{ instance_id }}"}}}
    mode: dry-run
"""
ONLY_ERROR = """
policies:
  - name: rescue-broken
    when: {source: sweep, event: sweep.server.error}
    do: {action: rescue, params: {server: {id: "{{ instance_id }}"}}}
"""
NONE_FOR_SWEEPS = """
policies:
  - name: rescue-on-request
    when: {source: request, event: server.rescue.requested}
    do: {action: rescue, params: {server: "{{ payload.server }}"}}
"""


def sid(n: int) -> str:
    return f"5e1f7a52-0000-4000-8000-{n:012d}"


def stamp(ago: timedelta) -> str:
    return (NOW - ago).strftime("%Y-%m-%dT%H:%M:%SZ")


def cloud_with_every_state() -> FakeCloud:
    cloud = FakeCloud()
    hour = timedelta(hours=1)
    cloud.add(FakeServer(id=sid(1), name="ok", flavor="m1.small", updated=stamp(hour)))
    cloud.add(
        FakeServer(
            id=sid(2),
            name="resized",
            flavor="m1.large",
            vm_state="resized",
            old_flavor="m1.small",
            updated=stamp(2 * hour),
        )
    )
    cloud.add(FakeServer(id=sid(3), name="rescued", flavor="m1.small", vm_state="rescued"))
    cloud.add(
        FakeServer(
            id=sid(4),
            name="broken",
            flavor="m1.small",
            vm_state="error",
            fault="disk full",
            updated=stamp(timedelta(minutes=5)),
        )
    )
    cloud.add(
        FakeServer(
            id=sid(5),
            name="never-booted",
            flavor="m1.small",
            vm_state="error",
            launched=False,
            updated=stamp(hour),
        )
    )
    return cloud


def sweeper(cloud: FakeCloud, policy_set: PolicySet, **kwargs: object) -> Sweeper:
    handled: list[Event] = []
    s = Sweeper(
        cloud=cloud,
        policies=lambda: policy_set,
        decide=lambda events: [handled.append(event) or [] for event in events],
        clock=lambda: NOW,
        interval_s=300,
        **kwargs,  # type: ignore[arg-type]
    )
    s.handled = handled  # type: ignore[attr-defined]
    return s


def test_a_sweep_emits_one_event_per_server_in_a_state_policies_can_match() -> None:
    cloud = cloud_with_every_state()
    s = sweeper(cloud, policies(ALL))
    result = s.sweep()
    by_server = {e.instance_id: e for e in s.handled}  # type: ignore[attr-defined]
    assert {k: e.event_type for k, e in by_server.items()} == {
        sid(2): "sweep.server.verify_resize",
        sid(3): "sweep.server.rescue",
        sid(4): "sweep.server.error",
    }
    assert (result.statuses, result.servers, len(result.events)) == (
        ("VERIFY_RESIZE", "RESCUE", "ERROR"),
        4,
        3,
    )
    assert result.requests == 3  # one list call per status


def test_a_sweep_event_is_shaped_like_an_instance_notification() -> None:
    cloud = cloud_with_every_state()
    event = server_event(cloud.servers[sid(4)].state(), NOW)
    assert event is not None
    assert (event.source, event.format, event.project_id, event.host) == (
        "sweep",
        "sweep",
        "project-1",
        "compute-1",
    )
    assert event.timestamp == NOW
    payload = event.payload
    assert payload["uuid"] == sid(4)
    assert payload["display_name"] == "broken"
    assert (payload["state"], payload["task_state"], payload["status"]) == ("error", None, "ERROR")
    assert payload["flavor"] == {"name": "m1.small"}
    assert (payload["host"], payload["availability_zone"]) == ("compute-1", "az-1")
    assert payload["fault"] == {"message": "disk full"}
    assert payload["stuck_for_s"] == 300
    assert event.get(("payload", "flavor", "name")) == "m1.small"


def test_a_server_nova_is_working_on_is_not_stuck() -> None:
    confirming = FakeServer(
        id=sid(2), name="r", flavor="m1.large", vm_state="resized", task_state="resize_confirming"
    )
    assert server_event(confirming.state(), NOW) is None


def test_a_server_without_an_updated_time_has_no_age_and_no_age_condition_holds() -> None:
    cloud = cloud_with_every_state()
    event = server_event(cloud.servers[sid(3)].state(), NOW)
    assert event is not None
    assert event.payload["stuck_for_s"] is None
    set_ = policies(
        """
        policies:
          - name: old-rescue
            when:
              source: sweep
              event: sweep.server.rescue
              match: {field: payload.stuck_for_s, longer_than: 1s}
            do: {action: unrescue, params: {server: {id: "{{ instance_id }}"}}}
        """
    )
    assert set_.match(event) == []


def test_the_dedupe_key_is_the_server_its_status_and_novas_updated_time() -> None:
    server = FakeServer(
        id=sid(2), name="r", flavor="m1.large", vm_state="resized", updated=stamp(timedelta(0))
    )
    first = server_event(server.state(), NOW)
    again = server_event(server.state(), NOW + timedelta(minutes=5))
    assert first is not None
    assert again is not None
    assert first.dedupe_key == again.dedupe_key == f"sweep:{sid(2)}:VERIFY_RESIZE:{server.updated}"
    server.updated = stamp(timedelta(minutes=-30))  # stuck again later
    later = server_event(server.state(), NOW + timedelta(hours=1))
    assert later is not None
    assert later.dedupe_key != first.dedupe_key


def test_no_policy_listening_to_sweeps_means_no_look_at_nova() -> None:
    cloud = cloud_with_every_state()
    s = sweeper(cloud, policies(NONE_FOR_SWEEPS))
    result = s.sweep()
    assert result.skipped == "no_policy"
    assert (result.requests, cloud.calls["list"], s.handled) == (0, 0, [])  # type: ignore[attr-defined]


def test_only_the_statuses_some_policy_listens_to_are_listed() -> None:
    cloud = cloud_with_every_state()
    s = sweeper(cloud, policies(ONLY_ERROR))
    result = s.sweep()
    assert result.statuses == ("ERROR",)
    assert (result.requests, cloud.calls["list"]) == (1, 1)
    assert [e.instance_id for e in s.handled] == [sid(4)]  # type: ignore[attr-defined]


def test_a_catch_all_policy_listens_to_sweeps_too() -> None:
    cloud = cloud_with_every_state()
    catch_all = policies(
        """
        policies:
          - name: everything
            when: {event: "sweep.server.*"}
            do: {action: rescue, params: {server: {id: "{{ instance_id }}"}}}
            mode: dry-run
        """
    )
    assert sweeper(cloud, catch_all).sweep().statuses == ("VERIFY_RESIZE", "RESCUE", "ERROR")


def test_a_sweep_of_many_servers_costs_a_request_per_page() -> None:
    cloud = FakeCloud(max_limit=1000)
    for n in range(2500):
        cloud.add(FakeServer(id=sid(n), name=f"s{n}", flavor="m1.small", vm_state="error"))
    result = sweeper(cloud, policies(ONLY_ERROR)).sweep()
    assert (result.servers, len(result.events), result.requests) == (2500, 2500, 3)


def test_a_daemon_that_is_not_the_leader_does_not_sweep() -> None:
    cloud = cloud_with_every_state()
    leading = [False]
    s = sweeper(cloud, policies(ALL), leader=lambda: leading[0])
    assert s.sweep().skipped == "not_leader"
    assert cloud.calls["list"] == 0
    leading[0] = True
    assert s.sweep().skipped is None
    assert s.state()["sweeps"] == 2


def test_a_failing_look_at_nova_is_reported_and_the_next_sweep_tries_again() -> None:
    from nova_autopilot.errors import CloudUnavailable

    cloud = cloud_with_every_state()
    cloud.fail["list"] = [CloudUnavailable("Nova is down", call="list_servers")]
    s = sweeper(cloud, policies(ONLY_ERROR))
    failed = s.sweep()
    assert failed.error == "Nova is down"
    assert s.handled == []
    assert s.state()["last"]["error"] == "Nova is down"
    assert len(s.sweep().events) == 1


# -- through the engine ---------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


def through_engine(
    tmp_path: Path, policy_text: str, cloud: FakeCloud
) -> tuple[Journal, Sweeper, Clock]:
    """A sweeper handing its events to an engine on a SQLite journal (runner not started:
    the decisions are recorded, nothing runs)."""
    journal = Journal.open(f"sqlite:///{tmp_path}/journal.sqlite", redact=redact)
    clock = Clock()
    engine: Engine
    runner = Runner(
        cloud=cloud,
        store=journal,
        clock=clock,
        on_done=lambda done: engine.on_done(done),
        workers=1,
    )
    policy_set = policies(policy_text)
    engine = Engine(policies=lambda: policy_set, journal=journal, runner=runner, clock=clock)
    s = Sweeper(
        cloud=cloud,
        policies=lambda: policy_set,
        decide=engine.handle_events,
        clock=clock,
        interval_s=300,
    )
    return journal, s, clock


@pytest.fixture
def engine_world(tmp_path: Path) -> Iterator[tuple[FakeCloud, Journal, Sweeper, Clock]]:
    cloud = cloud_with_every_state()
    journal, s, clock = through_engine(tmp_path, ALL, cloud)
    yield cloud, journal, s, clock
    journal.close()


def test_sweep_decisions_meet_the_same_guards_as_any_decision(tmp_path: Path) -> None:
    cloud = FakeCloud()
    for n in (1, 2, 3):
        cloud.add(
            FakeServer(
                id=sid(n), name=f"b{n}", flavor="m1.small", vm_state="error", updated=stamp(HOUR)
            )
        )
    budgeted = ONLY_ERROR + "    limits: {budget: {max: 2, per: 1h}}\n"
    journal, s, _clock = through_engine(tmp_path, budgeted, cloud)
    try:
        assert s.sweep().operations == 3
        decided = journal.history()
        assert sorted(op.outcome or "run" for op in decided) == ["refused", "run", "run"]
        (refused,) = [op for op in decided if op.outcome == "refused"]
        assert refused.reason is not None
        assert refused.reason.startswith("budget(policy)")
        assert refused.event["source"] == "sweep"
    finally:
        journal.close()


def test_a_stuck_state_leads_to_one_decision_whatever_the_number_of_sweeps(
    engine_world: tuple[FakeCloud, Journal, Sweeper, Clock],
) -> None:
    cloud, journal, s, clock = engine_world
    first = s.sweep()
    # VERIFY_RESIZE for 2h (> 1h): decided; RESCUE and ERROR: dry-run decisions.
    assert first.operations == 3
    operations = {op.server_id: op for op in journal.history()}
    dry = operations[sid(4)]
    assert (dry.policy, dry.outcome, dry.event["source"]) == ("rescue-broken", "dry_run", "sweep")
    assert dry.event["event_type"] == "sweep.server.error"
    assert (dry.host, dry.availability_zone) == ("compute-1", "az-1")
    clock.now += timedelta(minutes=5)
    assert s.sweep().operations == 0  # the same stuck states: duplicates
    assert len(journal.history()) == 3
    cloud.servers[sid(4)].updated = stamp(timedelta(minutes=-4))  # broken again, later
    assert s.sweep().operations == 1
    assert len(journal.history()) == 4


def test_a_server_not_yet_stuck_long_enough_is_decided_once_it_is(
    engine_world: tuple[FakeCloud, Journal, Sweeper, Clock],
) -> None:
    cloud, journal, s, clock = engine_world
    server = cloud.servers[sid(2)]
    server.updated = stamp(timedelta(minutes=30))
    s.sweep()
    assert not [op for op in journal.history() if op.server_id == sid(2)]
    clock.now += timedelta(minutes=31)
    s.sweep()
    (decided,) = [op for op in journal.history() if op.server_id == sid(2)]
    assert (decided.policy, decided.action) == ("confirm-stuck", "finish_resize")
    assert "payload.stuck_for_s is longer than 3600s" in decided.why


RESCUED_TOO_LONG = """
policies:
  - name: unrescue-forgotten
    when:
      source: sweep
      event: sweep.server.rescue
      match: {field: payload.stuck_for_s, longer_than: 2h}
    do: {action: unrescue, params: {server: {id: "{{ instance_id }}"}}}
"""


def test_a_rescue_sweep_with_a_duration_fires_past_it_and_not_before(tmp_path: Path) -> None:
    cloud = FakeCloud()
    cloud.add(
        FakeServer(
            id=sid(3),
            name="rescued",
            flavor="m1.small",
            vm_state="rescued",
            updated=stamp(HOUR + timedelta(minutes=59)),
        )
    )
    journal, s, clock = through_engine(tmp_path, RESCUED_TOO_LONG, cloud)
    try:
        before = s.sweep()  # in RESCUE for 1h59m: not yet 2h
        assert before.statuses == ("RESCUE",)
        (event,) = before.events  # seen, and no policy matched it yet
        assert event.payload["stuck_for_s"] == 7140
        assert before.operations == 0
        assert journal.history() == []
        clock.now += timedelta(minutes=1)  # exactly 2h: not longer than 2h
        assert s.sweep().operations == 0
        clock.now += timedelta(seconds=1)  # 2h and a second
        assert s.sweep().operations == 1
        (decided,) = journal.history()
        assert (decided.server_id, decided.policy, decided.action) == (
            sid(3),
            "unrescue-forgotten",
            "unrescue",
        )
        assert decided.event["event_type"] == "sweep.server.rescue"
        assert "payload.stuck_for_s is longer than 7200s" in decided.why
    finally:
        journal.close()


# -- the finish_resize action ----------------------------------------------------


def stuck_resize(cloud: FakeCloud, **server: object) -> Drive:
    cloud.add(
        FakeServer(
            id=sid(9),
            name="web",
            flavor="m1.large",
            vm_state="resized",
            old_flavor="m1.small",
            **server,  # type: ignore[arg-type]
        )
    )
    return Drive(cloud, "finish_resize", {"server": {"id": sid(9)}}, Confirm(timeout_s=60))


def test_finish_resize_confirms_a_resize_left_waiting_and_checks_the_new_flavor() -> None:
    cloud = FakeCloud()
    drive = stuck_resize(cloud)
    drive.run()
    assert cloud.calls["confirm"] == 1
    cloud.nova_finishes(sid(9))
    assert finished(drive.run()) == ("confirmed", None)
    assert drive.steps == ["checked", "gate_passed", "confirm_requested", "settled"]
    assert cloud.servers[sid(9)].flavor == "m1.large"


def test_finish_resize_reverts_when_the_gate_fails_and_verifies_the_flavor_changed_back() -> None:
    cloud = FakeCloud()
    drive = stuck_resize(cloud)
    drive.confirm = Confirm(
        timeout_s=60, gate=(GateCheck("console", {"contains": "login:"}),), gate_timeout_s=0
    )
    cloud.servers[sid(9)].console = "Kernel panic"
    drive.run()
    assert (cloud.calls["revert"], cloud.calls["confirm"]) == (1, 0)
    cloud.nova_finishes(sid(9))
    outcome, reason = finished(drive.run())
    assert outcome == "reverted"
    assert reason is not None
    assert "health gate failed" in reason
    assert cloud.servers[sid(9)].flavor == "m1.small"


def test_finish_resize_refuses_a_server_no_longer_waiting_for_confirmation() -> None:
    cloud = FakeCloud()
    cloud.add(FakeServer(id=sid(9), name="web", flavor="m1.large"))
    drive = Drive(cloud, "finish_resize", {"server": {"id": sid(9)}}, Confirm(timeout_s=60))
    outcome, reason = finished(drive.run())
    assert outcome == "refused"
    assert reason is not None
    assert "ACTIVE" in reason
    assert (cloud.calls["confirm"], cloud.calls["revert"]) == (0, 0)


def test_the_metrics_count_sweeps_by_result_and_the_events_they_emitted() -> None:
    from nova_autopilot.daemon.metrics import Metrics
    from tests.unit.daemon.metrics_support import Parts, scrape, value

    leading = [False]
    s = sweeper(cloud_with_every_state(), policies(ALL), leader=lambda: leading[0])
    metrics = Metrics(dataclasses.replace(Parts().sources(), sweeps=s.counts))
    last = "nova_autopilot_sweep_last_done_timestamp_seconds"
    assert last not in {name for name, _ in scrape(metrics)}
    s.sweep()
    leading[0] = True
    s.sweep()
    s.sweep()
    samples = scrape(metrics)
    results = {r: value(samples, "nova_autopilot_sweeps_total", result=r) for r in RESULTS}
    assert results == {"done": 2, "failed": 0, "not_leader": 1, "no_policy": 0}
    assert value(samples, "nova_autopilot_sweep_events_total") == 6
    assert value(samples, last) == NOW.timestamp()


RESULTS = ("done", "failed", "not_leader", "no_policy")
