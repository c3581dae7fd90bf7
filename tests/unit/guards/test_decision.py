"""The guards as pure decisions: each one stops what it should, lets the rest through,
and names itself in its reason; facts are asked only when a guard needs them."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from nova_autopilot import guards
from nova_autopilot.guards import breaker as breakers
from nova_autopilot.guards.limits import BreakerLimits, GuardSettings
from nova_autopilot.journal import Breaker
from nova_autopilot.policies.model import Budget, Policy
from tests.unit.policy_helpers import policies

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)


def policy(limits: str = "{}", mode: str = "enforce") -> Policy:
    (found,) = policies(
        f"""
        policies:
          - name: grow
            mode: {mode}
            when: {{source: request, event: quota.request.approved}}
            do: {{action: resize, params: {{server: x, flavor: y}}}}
            limits: {limits}
        """
    ).policies
    return found


@dataclass
class Facts:
    """Facts given outright; records which were asked for."""

    busy: bool = False
    last: datetime | None = None
    counts: dict[tuple[str, bool], int] = field(default_factory=dict)
    places: dict[str, str | None] = field(
        default_factory=lambda: {"all": "", "project": "p-1", "host": "h-1", "zone": "az-1"}
    )
    open_ops: dict[bool, int] = field(default_factory=dict)
    breaker_rows: dict[str, Breaker] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)

    def breakers(self) -> Mapping[str, Breaker]:
        self.asked.append("breakers")
        return self.breaker_rows

    def server_busy(self) -> bool:
        self.asked.append("busy")
        return self.busy

    def last_acted_at(self) -> datetime | None:
        self.asked.append("last")
        return self.last

    def acted(self, scope: Any, *, policy_only: bool, since: datetime) -> int:
        self.asked.append(f"acted:{scope}:{policy_only}")
        return self.counts.get((scope, policy_only), 0)

    def where(self, scope: Any) -> str | None:
        return self.places[scope]

    def unfinished(self, *, policy_only: bool) -> int:
        self.asked.append(f"unfinished:{policy_only}")
        return self.open_ops.get(policy_only, 0)


def decide(p: Policy, facts: Facts, settings: GuardSettings | None = None) -> guards.Verdict:
    settings = settings or GuardSettings()
    return guards.decide(p, guards.for_policy(p, settings), settings, facts, now=NOW)


def test_with_no_limits_a_decision_runs_after_the_cheap_checks_only() -> None:
    facts = Facts()
    assert decide(policy(), facts) == guards.Verdict("run")
    assert facts.asked == ["breakers", "busy"]


def test_a_busy_server_is_refused_before_anything_is_counted() -> None:
    facts = Facts(busy=True, counts={("all", True): 99})
    verdict = decide(policy("{budget: {max: 1, per: 1h}}"), facts)
    assert (verdict.decision, verdict.guard) == ("refuse", "busy")
    assert facts.asked == ["breakers", "busy"]


def test_the_default_cooldown_applies_when_the_policy_sets_none() -> None:
    settings = GuardSettings(default_cooldown_s=600)
    recent = Facts(last=NOW - timedelta(seconds=599))
    verdict = decide(policy(), recent, settings)
    assert verdict.guard == "cooldown"
    assert verdict.reason is not None
    assert verdict.reason.startswith("cooldown: ")
    assert decide(policy(), Facts(last=NOW - timedelta(seconds=600)), settings).decision == "run"


def test_a_policy_cooldown_overrides_the_default_and_zero_turns_it_off() -> None:
    settings = GuardSettings(default_cooldown_s=3600)
    facts = Facts(last=NOW - timedelta(minutes=10))
    assert decide(policy("{cooldown: 5m}"), facts, settings).decision == "run"
    assert decide(policy("{cooldown: 0}"), Facts(last=NOW), settings).decision == "run"
    assert decide(policy("{cooldown: 1h}"), facts, settings).guard == "cooldown"


@pytest.mark.parametrize(
    ("limits", "counts", "guard", "where"),
    [
        ("{budget: {max: 2, per: 1h}}", {("all", True): 2}, "budget(policy)", "by this policy"),
        (
            "{budget_per_project: {max: 2, per: 1h}}",
            {("project", True): 2},
            "budget(project)",
            "in project p-1",
        ),
        ("{budget_per_host: {max: 1, per: 1h}}", {("host", True): 1}, "budget(host)", "host h-1"),
        ("{budget_per_zone: {max: 3, per: 1h}}", {("zone", True): 3}, "budget(zone)", "zone az-1"),
    ],
)
def test_a_policy_budget_refuses_once_its_scope_used_it(
    limits: str, counts: dict[tuple[str, bool], int], guard: str, where: str
) -> None:
    verdict = decide(policy(limits), Facts(counts=counts))
    assert (verdict.decision, verdict.guard) == ("refuse", guard)
    assert verdict.reason is not None
    assert verdict.reason.startswith(f"{guard}: ")
    assert where in verdict.reason
    below = {key: value - 1 for key, value in counts.items()}
    assert decide(policy(limits), Facts(counts=below)).decision == "run"


@pytest.mark.parametrize(
    ("scope", "guard"),
    [("all", "budget(global)"), ("project", "budget(project)"), ("host", "budget(host)")],
)
def test_a_global_budget_counts_every_policy(scope: str, guard: str) -> None:
    settings = GuardSettings(budgets={scope: Budget(10, 3600)})  # type: ignore[dict-item]
    verdict = decide(policy(), Facts(counts={(scope, False): 10}), settings)
    assert verdict.guard == guard
    assert verdict.reason is not None
    assert "by all policies" in verdict.reason
    assert decide(policy(), Facts(counts={(scope, False): 9}), settings).decision == "run"


def test_a_budget_whose_host_is_unknown_is_not_counted() -> None:
    settings = GuardSettings(budgets={"host": Budget(1, 3600)})
    facts = Facts(counts={("host", False): 5})
    facts.places["host"] = None
    assert decide(policy(), facts, settings).decision == "run"
    assert "acted:host:False" not in facts.asked


def test_the_concurrency_cap_counts_unfinished_operations_globally_and_per_policy() -> None:
    settings = GuardSettings(max_concurrent=10)
    full = decide(policy(), Facts(open_ops={False: 10}), settings)
    assert full.guard == "concurrency"
    assert full.reason == "concurrency: 10 operations unfinished (at most 10 at once)"
    assert decide(policy(), Facts(open_ops={False: 9}), settings).decision == "run"
    own = decide(policy("{max_concurrent: 2}"), Facts(open_ops={True: 2, False: 2}), settings)
    assert own.guard == "concurrency(policy)"


def test_a_server_operated_on_too_often_by_any_policy_is_a_loop() -> None:
    settings = GuardSettings(loop=Budget(3, 3600))
    verdict = decide(policy(), Facts(counts={("server", False): 3}), settings)
    assert verdict.guard == "loop"
    assert verdict.reason is not None
    assert "by any policy" in verdict.reason
    assert decide(policy(), Facts(counts={("server", False): 2}), settings).decision == "run"
    looser = decide(policy("{loop: {max: 10, per: 1h}}"), Facts(counts={("server", False): 3}))
    assert looser.decision == "run"


def test_dry_run_comes_after_every_guard() -> None:
    assert decide(policy(mode="dry-run"), Facts()).decision == "dry_run"
    settings = GuardSettings(dry_run=True, max_concurrent=1)
    assert decide(policy(), Facts(), settings).reason == "dry-run (global)"
    assert decide(policy(), Facts(open_ops={False: 1}), settings).guard == "concurrency"


# --- circuit breakers -------------------------------------------------------------------

LIMITS = BreakerLimits(failures=3, window_s=600, half_open_after_s=1800)


def opened(scope: str = "global", at: datetime = NOW, **fields: Any) -> Breaker:
    return Breaker(
        scope=scope, state="open", failures=3, reason="resize failed", opened_at=at, **fields
    )


def test_an_open_breaker_refuses_every_decision_until_it_half_opens() -> None:
    settings = GuardSettings(breaker=LIMITS)
    facts = Facts(breaker_rows={"global": opened(at=NOW - timedelta(minutes=29))})
    verdict = decide(policy(), facts, settings)
    assert (verdict.decision, verdict.guard) == ("refuse", "breaker")
    assert verdict.reason is not None
    assert verdict.reason.startswith("breaker(global): breaker open since")
    assert facts.asked == ["breakers"]

    due = Facts(breaker_rows={"global": opened(at=NOW - timedelta(minutes=30))})
    assert decide(policy(), due, settings) == guards.Verdict("run", trials=("global",))


def test_a_policy_breaker_refuses_only_that_policy_and_a_half_open_one_refuses_too() -> None:
    settings = GuardSettings(policy_breaker=LIMITS)
    trial = dataclasses.replace(opened("policy:grow"), state="half_open", trial_operation_id="op-7")
    verdict = decide(policy(), Facts(breaker_rows={"policy:grow": trial}), settings)
    assert verdict.reason == "breaker(policy): half-open, trial operation op-7 running"
    other = Facts(breaker_rows={"policy:other": opened("policy:other")})
    assert decide(policy(), other, settings).decision == "run"


def test_a_breaker_turned_off_no_longer_refuses() -> None:
    off = GuardSettings(breaker=BreakerLimits(0, 600, 1800))
    assert decide(policy(), Facts(breaker_rows={"global": opened()}), off).decision == "run"


def test_a_run_of_failures_trips_the_breaker_and_a_trial_settles_it() -> None:
    assert breakers.trip(None, LIMITS, scope="global", failures=2, reason="x", now=NOW) is None
    tripped = breakers.trip(None, LIMITS, scope="global", failures=3, reason="x", now=NOW)
    assert tripped is not None
    assert (tripped.state, tripped.opened_at) == ("open", NOW)
    assert breakers.trip(tripped, LIMITS, scope="global", failures=9, reason="x", now=NOW) is None

    trial = breakers.take_trial(tripped, "op-1")
    later = NOW + timedelta(hours=1)
    assert (
        breakers.settle_trial(trial, operation_id="op-2", outcome="failed", reason=None, now=later)
        is None
    )
    closed = breakers.settle_trial(
        trial, operation_id="op-1", outcome="confirmed", reason=None, now=later
    )
    assert closed is not None
    assert (closed.state, closed.closed_at) == ("closed", later)
    again = breakers.settle_trial(
        trial, operation_id="op-1", outcome="timed_out", reason="slow", now=later
    )
    assert again is not None
    assert (again.state, again.opened_at) == ("open", later)
    neutral = breakers.settle_trial(
        trial, operation_id="op-1", outcome="refused", reason=None, now=later
    )
    assert neutral is not None
    assert (neutral.state, neutral.opened_at) == ("open", NOW)


def test_failures_before_the_last_close_do_not_count_again() -> None:
    closed = Breaker(scope="global", state="closed", closed_at=NOW - timedelta(seconds=30))
    assert breakers.counting_since(closed, LIMITS, now=NOW) == NOW - timedelta(seconds=30)
    assert breakers.counting_since(None, LIMITS, now=NOW) == NOW - timedelta(seconds=600)


def test_a_policys_limits_follow_the_settings_and_the_policy_they_are_asked_for() -> None:
    p = policy("{cooldown: 5m}")
    q = policy("{max_concurrent: 3}")
    loose = GuardSettings(default_cooldown_s=60.0)
    strict = GuardSettings(default_cooldown_s=60.0, policy_breaker=BreakerLimits(2, 60.0, 30.0))

    assert guards.for_policy(p, loose) is guards.for_policy(p, loose)
    assert guards.for_policy(p, loose).cooldown_s == 300.0
    assert guards.for_policy(q, loose).cooldown_s == 60.0
    assert guards.for_policy(q, loose).max_concurrent == 3
    assert guards.for_policy(p, loose).breaker.failures == 0
    assert guards.for_policy(p, strict).breaker.failures == 2
