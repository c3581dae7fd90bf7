"""Circuit breakers, as pure transitions over the journal's :class:`Breaker` rows.

One breaker per policy and one for everything (``global``). A closed breaker lets
decisions pass; ``failures`` failed operations (:data:`FAILURES`) within its window open
it, and every decision in its scope is refused. After ``half_open_after`` one decision
passes as the trial (the breaker is half-open while it runs): its success closes the
breaker, its failure opens it again. An operation that ends neither way (refused by
Nova's state, say) leaves the breaker open, ready for the next trial.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from nova_autopilot.guards.limits import BreakerLimits
from nova_autopilot.journal import FAILURES, Breaker

GLOBAL: Final = "global"
#: Outcomes that neither prove nor disprove anything: Nova was not asked to change.
NEUTRAL: Final = ("refused", "dry_run", "not_rescuable")


def policy_scope(policy: str) -> str:
    return f"policy:{policy}"


def label(scope: str) -> str:
    """How a refusal names the breaker: ``breaker(global)``, ``breaker(policy)``."""
    return "breaker(global)" if scope == GLOBAL else "breaker(policy)"


@dataclass(frozen=True, slots=True)
class Gate:
    """What one breaker says of a decision: refused (with the reason), or passes,
    as the trial of a half-open breaker when ``trial``."""

    refusal: str | None = None
    trial: bool = False


def check(breaker: Breaker | None, limits: BreakerLimits, *, now: datetime) -> Gate:
    if breaker is None or breaker.state == "closed" or not limits.enabled:
        return Gate()
    name = label(breaker.scope)
    if breaker.state == "half_open":
        return Gate(f"{name}: half-open, trial operation {breaker.trial_operation_id} running")
    opened = breaker.opened_at or now
    due = opened + timedelta(seconds=limits.half_open_after_s)
    if now >= due:
        return Gate(trial=True)
    return Gate(
        f"{name}: breaker open since {opened.isoformat()} after {breaker.failures} failed "
        f"operations (last: {breaker.reason or 'no reason given'}); "
        f"one trial operation from {due.isoformat()}"
    )


def counting_since(breaker: Breaker | None, limits: BreakerLimits, *, now: datetime) -> datetime:
    """Failures finished since then count: the window, but nothing before the last close."""
    since = now - timedelta(seconds=limits.window_s)
    if breaker is not None and breaker.closed_at is not None:
        since = max(since, breaker.closed_at)
    return since


def trip(
    breaker: Breaker | None,
    limits: BreakerLimits,
    *,
    scope: str,
    failures: int,
    reason: str | None,
    now: datetime,
) -> Breaker | None:
    """The breaker opened by ``failures`` recent failures, or None if it stays as it is."""
    if not limits.enabled or failures < limits.failures:
        return None
    if breaker is not None and breaker.state != "closed":
        return None
    return Breaker(
        scope=scope,
        state="open",
        failures=failures,
        reason=reason,
        opened_at=now,
        closed_at=breaker.closed_at if breaker else None,
        version=breaker.version if breaker else 0,
    )


def take_trial(breaker: Breaker, operation_id: str) -> Breaker:
    return dataclasses.replace(breaker, state="half_open", trial_operation_id=operation_id)


def settle_trial(
    breaker: Breaker, *, operation_id: str, outcome: str, reason: str | None, now: datetime
) -> Breaker | None:
    """What the end of an operation does to a half-open breaker whose trial it was
    (None: it was not the trial)."""
    if breaker.state != "half_open" or breaker.trial_operation_id != operation_id:
        return None
    if outcome in FAILURES:
        return dataclasses.replace(
            breaker,
            state="open",
            opened_at=now,
            failures=breaker.failures + 1,
            reason=reason,
            trial_operation_id=None,
        )
    if outcome in NEUTRAL:
        return dataclasses.replace(breaker, state="open", trial_operation_id=None)
    return dataclasses.replace(
        breaker, state="closed", closed_at=now, failures=0, trial_operation_id=None
    )
