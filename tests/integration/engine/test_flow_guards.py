"""Guards in the engine, on a real journal (SQLite): every refusal is an operation with
outcome ``refused`` and a reason naming its guard, counted by guard; the circuit
breakers live in the journal, so a reset from another process takes effect at once."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from nova_autopilot.actions.runner import Done, Work
from nova_autopilot.cli import main
from nova_autopilot.engine.flow import Engine
from nova_autopilot.events import Event
from nova_autopilot.guards import BreakerLimits, GuardSettings
from nova_autopilot.journal import Journal, Operation
from nova_autopilot.logs import redact
from nova_autopilot.policies.model import Budget
from tests.integration.engine.support import decision
from tests.integration.journal.behaviour import Clock
from tests.unit.policy_helpers import nova_event, policies, request_event

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
POLICIES = """
policies:
  - name: rescue-on-error
    when: {source: nova, event: instance.update, match: {field: payload.state, equals: error}}
    do: {action: rescue, params: {server: "{{ instance_id }}"}}
  - name: grow
    when: {source: request, event: quota.request.approved}
    do: {action: resize, params: {server: "{{ payload.server }}", flavor: m1.large}}
    limits: {cooldown: 0}
"""


class Runner:
    """Takes the work and runs none of it: the tests finish operations by hand."""

    def __init__(self) -> None:
        self.submitted: list[Work] = []

    def notify(self, event: Event) -> int:
        return 0

    def submit(self, work: Work) -> None:
        self.submitted.append(work)

    def resume(self, works: Any) -> int:
        return 0


class Results:
    def __init__(self) -> None:
        self.published: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def publish(
        self, result: Mapping[str, Any], *, correlation_id: str | None, reply_to: str | None
    ) -> None:
        with self.lock:
            self.published.append(dict(result))

    def of(self, action: str) -> list[dict[str, Any]]:
        return [r for r in self.published if r["action"] == action]

    def progress(
        self, update: Mapping[str, Any], *, correlation_id: str | None, reply_to: str | None
    ) -> None:
        return None  # these tests look at results


class World:
    def __init__(self, tmp_path: Path, settings: GuardSettings, text: str = POLICIES) -> None:
        self.clock = Clock(T0)
        self.url = f"sqlite:///{tmp_path}/journal.sqlite"
        self.journal = Journal.open(self.url, redact=redact, clock=self.clock)
        self.runner = Runner()
        self.results = Results()
        policy_set = policies(text)
        self.engine = Engine(
            policies=lambda: policy_set,
            journal=self.journal,
            runner=self.runner,  # type: ignore[arg-type]
            clock=self.clock,
            reporter=self.results,
            guard_settings=settings,
        )
        self.serial = 0

    def error(self, server: str, **payload: Any) -> Operation:
        """Nova says the server went to ERROR: the rescue policy decides."""
        self.serial += 1
        event = nova_event(
            "instance.update", uuid=server, state="error", tenant_id="project-1", **payload
        )
        (op_id,) = self.engine.handle(event)
        return self.journal.get(op_id)

    def request(self, server: str) -> Operation:
        self.serial += 1
        event = request_event(id=f"r-{self.serial}", server={"id": server})
        (op_id,) = self.engine.handle(event)
        return self.journal.get(op_id)

    def end(self, op: Operation, outcome: str, reason: str | None = None) -> None:
        self.journal.finish(op.id, outcome=outcome, reason=reason, now=self.clock())
        self.engine.on_done(Done(op.id, outcome, reason, op.server_id, 1, {}))


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Any]:
    made: list[World] = []

    def make_(settings: GuardSettings, text: str = POLICIES) -> World:
        world = World(tmp_path, settings, text)
        made.append(world)
        return world

    yield make_
    for world in made:
        world.journal.close()


def server(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def refused(op: Operation, guard: str) -> None:
    assert op.outcome == "refused"
    assert op.reason is not None
    assert op.reason.startswith(f"{guard}: ")


def test_the_default_cooldown_keeps_a_policy_off_a_server_it_just_acted_on(make: Any) -> None:
    world = make(GuardSettings(default_cooldown_s=1800))
    first = world.error(server(1))
    world.end(first, "rescued")
    world.clock.advance(minutes=10)

    refused(world.error(server(1)), "cooldown")
    assert world.error(server(2)).outcome is None  # another server: runs
    world.clock.advance(minutes=21)
    assert world.error(server(1)).outcome is None
    assert world.engine.tally.snapshot().refusals == {"cooldown": 1}


def test_budgets_per_host_zone_project_and_global_count_every_policy(make: Any) -> None:
    world = make(
        GuardSettings(
            budgets={
                "host": Budget(2, 3600),
                "zone": Budget(3, 3600),
                "project": Budget(4, 3600),
                "all": Budget(5, 3600),
            }
        )
    )
    on = {"host": "compute-1", "availability_zone": "az-1"}
    a, b = world.error(server(1), **on), world.error(server(2), **on)
    assert (a.host, a.availability_zone) == ("compute-1", "az-1")
    assert a.outcome is None
    assert b.outcome is None
    refused(world.error(server(3), **on), "budget(host)")
    assert world.error(server(4), host="compute-2", availability_zone="az-1").outcome is None
    refused(world.error(server(5), host="compute-3", availability_zone="az-1"), "budget(zone)")
    assert world.error(server(6), host="compute-3", availability_zone="az-2").outcome is None
    refused(world.error(server(7), host="compute-4", availability_zone="az-3"), "budget(project)")
    assert world.request(server(8)).outcome is None  # a request: no project, host or zone
    refused(world.request(server(9)), "budget(global)")
    assert world.engine.tally.snapshot().refusals == {
        "budget(host)": 1,
        "budget(zone)": 1,
        "budget(project)": 1,
        "budget(global)": 1,
    }
    reasons = [op.reason for op in world.journal.history(outcome="refused")]
    assert any("on host compute-1" in (r or "") for r in reasons)
    world.clock.advance(hours=1, seconds=1)
    assert world.error(server(3), **on).outcome is None  # the window moved on


def test_refused_and_dry_run_decisions_do_not_use_budgets(make: Any) -> None:
    world = make(GuardSettings(budgets={"all": Budget(1, 3600)}, dry_run=True))
    for n in range(3):
        assert world.error(server(n)).outcome == "dry_run"


def test_a_request_is_counted_on_the_host_its_server_was_last_seen_on(make: Any) -> None:
    world = make(GuardSettings(budgets={"host": Budget(1, 3600)}))
    first = world.error(server(1), host="compute-1", availability_zone="az-1")
    world.end(first, "rescued")

    second = world.request(server(1))

    assert (second.host, second.availability_zone) == ("compute-1", "az-1")
    refused(second, "budget(host)")


def test_the_runner_records_where_a_requested_server_runs(make: Any) -> None:
    world = make(GuardSettings())
    op = world.request(server(1))
    assert op.host is None
    world.journal.place(op.id, host="compute-9", availability_zone="az-9")
    world.journal.place(op.id, host="compute-0", availability_zone=None)  # known: kept
    assert (world.journal.get(op.id).host, world.journal.get(op.id).availability_zone) == (
        "compute-9",
        "az-9",
    )


def test_beyond_the_concurrency_cap_decisions_are_refused_until_one_ends(make: Any) -> None:
    world = make(GuardSettings(max_concurrent=2))
    a, _ = world.error(server(1)), world.error(server(2))
    third = world.error(server(3))
    refused(third, "concurrency")
    assert third.reason == "concurrency: 2 operations unfinished (at most 2 at once)"
    world.end(a, "rescued")
    assert world.error(server(3)).outcome is None
    assert len(world.runner.submitted) == 3


def test_a_server_operated_on_again_and_again_is_refused_as_a_loop_logged_as_an_error(
    make: Any,
) -> None:
    world = make(GuardSettings(loop=Budget(2, 3600)))
    world.end(world.error(server(1)), "rescued")
    world.end(world.request(server(1)), "confirmed")  # another policy acts on it too
    with capture_logs() as logs:
        looped = world.error(server(1))
    refused(looped, "loop")
    assert [e["event"] for e in logs if e["log_level"] == "error"] == ["guard.loop"]
    assert world.engine.tally.snapshot().refusals == {"loop": 1}
    assert world.error(server(2)).outcome is None


# --- circuit breakers -------------------------------------------------------------------

BREAKER = BreakerLimits(failures=3, window_s=600, half_open_after_s=1800)


def fail_three(world: World) -> None:
    for n in range(3):
        op = world.error(server(n))
        world.clock.advance(seconds=10)
        world.end(op, "failed", f"Nova said no to {n}")


def test_a_run_of_failures_opens_the_policy_breaker_loudly_and_it_refuses(make: Any) -> None:
    world = make(GuardSettings(policy_breaker=BREAKER))
    with capture_logs() as logs:
        fail_three(world)
        blocked = world.error(server(10))
        also = world.error(server(11))

    refused(blocked, "breaker(policy)")
    refused(also, "breaker(policy)")
    assert world.request(server(12)).outcome is None  # another policy is not concerned
    (row,) = world.journal.breakers().values()
    assert (row.scope, row.state, row.failures) == ("policy:rescue-on-error", "open", 3)
    assert row.reason == "rescue failed: Nova said no to 2"
    (message,) = world.results.of("breaker")
    assert (message["outcome"], message["scope"], message["policy"]) == (
        "opened",
        "policy:rescue-on-error",
        "rescue-on-error",
    )
    levels = [(e["log_level"], e["event"]) for e in logs]
    assert levels.count(("error", "breaker.opened")) == 1
    assert levels.count(("warning", "breaker.refused")) == 2
    assert world.engine.tally.snapshot().refusals == {"breaker": 2}


def test_failures_outside_the_window_or_neutral_outcomes_do_not_open_it(make: Any) -> None:
    world = make(GuardSettings(policy_breaker=BREAKER))
    for n in range(3):
        op = world.error(server(n))
        world.end(op, "failed" if n != 1 else "not_rescuable")
    world.clock.advance(minutes=11)
    world.end(world.error(server(5)), "timed_out")
    assert world.journal.breakers() == {}
    assert world.error(server(6)).outcome is None


def test_after_the_wait_one_trial_passes_and_its_success_closes_the_breaker(make: Any) -> None:
    world = make(GuardSettings(breaker=BREAKER))
    fail_three(world)
    refused(world.request(server(20)), "breaker(global)")
    world.clock.advance(minutes=30)

    trial = world.error(server(21))
    assert trial.outcome is None
    assert world.journal.breakers()["global"].state == "half_open"
    refused(world.error(server(22)), "breaker(global)")  # one trial at a time
    world.end(trial, "rescued")

    assert world.journal.breakers()["global"].state == "closed"
    assert world.request(server(23)).outcome is None
    assert [m["outcome"] for m in world.results.of("breaker")] == ["opened", "closed"]


def test_a_failed_trial_opens_the_breaker_again_for_another_wait(make: Any) -> None:
    world = make(GuardSettings(breaker=BREAKER))
    fail_three(world)
    world.clock.advance(minutes=30)
    trial = world.error(server(21))
    world.clock.advance(seconds=5)
    world.end(trial, "timed_out", "slow")

    breaker = world.journal.breakers()["global"]
    assert (breaker.state, breaker.opened_at) == ("open", world.clock())
    refused(world.error(server(22)), "breaker(global)")
    assert [m["outcome"] for m in world.results.of("breaker")] == ["opened", "reopened"]
    world.clock.advance(minutes=30)
    assert world.error(server(23)).outcome is None  # the next trial


def test_a_reset_by_the_command_on_the_same_journal_takes_effect_at_once(
    make: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    world = make(GuardSettings(breaker=BREAKER, policy_breaker=BREAKER))
    fail_three(world)
    refused(world.error(server(30)), "breaker(global)")
    conf = tmp_path / "nova-autopilot.conf"
    conf.write_text(f"[DEFAULT]\nstate_dir = {tmp_path}\n")
    capsys.readouterr()

    assert main(["--config-file", str(conf), "breaker", "reset", "--all"]) == 0

    assert capsys.readouterr().out.splitlines() == [
        "reset global: closed",
        "reset policy:rescue-on-error: closed",
    ]

    assert world.error(server(31)).outcome is None
    world.end(world.error(server(32)), "failed")  # failures before the reset do not count
    assert world.journal.breakers()["global"].state == "closed"


def test_two_engines_on_one_journal_open_the_breaker_once(make: Any, tmp_path: Path) -> None:
    world = make(GuardSettings(breaker=BREAKER))
    other = Engine(
        policies=lambda: policies(POLICIES),
        journal=world.journal,
        runner=Runner(),  # type: ignore[arg-type]
        clock=world.clock,
        reporter=world.results,
        guard_settings=GuardSettings(breaker=BREAKER),
    )
    ops = [world.error(server(n)) for n in range(4)]
    for op in ops:
        world.journal.finish(op.id, outcome="failed", now=world.clock())
    done = [Done(op.id, "failed", None, op.server_id, 1, {}) for op in ops]
    threads = [
        threading.Thread(target=engine.on_done, args=(d,))
        for d in done
        for engine in (world.engine, other)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert [m["outcome"] for m in world.results.of("breaker")] == ["opened"]
    assert world.journal.breakers()["global"].state == "open"


def test_a_trial_whose_decision_lost_the_race_is_refused(make: Any) -> None:
    world = make(GuardSettings(breaker=BREAKER))
    fail_three(world)
    world.clock.advance(minutes=30)
    breaker = world.journal.breakers()["global"]
    # Another daemon takes the trial between this decision's check and its claim.
    original = world.journal.breakers

    def racing(scopes: Any = None) -> Any:
        found = original(scopes)
        if world.journal.breakers is racing:
            world.journal.breakers = original  # type: ignore[method-assign]
            taken = world.journal.save_breaker(
                type(breaker)(
                    scope="global",
                    state="half_open",
                    failures=3,
                    opened_at=breaker.opened_at,
                    trial_operation_id="someone-else",
                ),
                expect_version=breaker.version,
            )
            assert taken is not None
        return found

    world.journal.breakers = racing  # type: ignore[method-assign]
    lost = world.error(server(40))
    assert lost.outcome == "refused"
    assert lost.reason == "breaker: half-open, another decision took the trial"
    assert world.journal.breakers()["global"].trial_operation_id == "someone-else"
    assert world.clock() - T0 >= timedelta(minutes=30)


APPROVED = POLICIES.replace("  - name: grow\n", "  - name: grow\n    mode: approve\n").replace(
    "limits: {cooldown: 0}", "limits: {cooldown: 0, breaker: {failures: 0}}"
)


def test_an_approved_operation_is_checked_by_the_breakers_when_it_would_run(
    make: Any,
) -> None:
    world = make(GuardSettings(breaker=BREAKER), APPROVED)
    waiting, later = world.request(server(50)), world.request(server(51))
    assert (waiting.phase, waiting.outcome) == ("awaiting_approval", None)
    fail_three(world)  # the global breaker opens meanwhile

    world.engine.handle(decision("approve", waiting.id, "ok-1"))

    refused(world.journal.get(waiting.id), "breaker(global)")
    world.clock.advance(minutes=30)
    world.engine.handle(decision("approve", later.id, "ok-2"))  # due: it is the trial
    assert world.journal.breakers()["global"].trial_operation_id == later.id
    assert [w.op_id for w in world.runner.submitted][-1] == later.id
    world.end(world.journal.get(later.id), "confirmed")
    assert world.journal.breakers()["global"].state == "closed"
