"""Guards: may a decision become an operation on Nova?

Pure functions over the facts the engine gathers from the journal: whether
the server is busy, when the policy last acted on it, how much of its budget
it used. Every refusal says why, and the engine records it in the journal
like any other outcome. Dry-run (global, or the policy's mode) lets the
decision be recorded without any Nova write call.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from nova_autopilot.policies.model import Policy

#: Outcomes that did not touch the server, so they count neither for
#: cooldowns nor for budgets.
NOT_ACTED = ("refused", "dry_run")


@dataclass(frozen=True, slots=True)
class Facts:
    """What the journal says about the server and the policy right now."""

    server_busy: bool
    last_acted_at: datetime | None
    used_budget: int


@dataclass(frozen=True, slots=True)
class Verdict:
    decision: Literal["run", "dry_run", "refuse"]
    reason: str | None = None


def budget_window_start(policy: Policy, now: datetime) -> datetime | None:
    budget = policy.limits.budget
    return None if budget is None else now - timedelta(seconds=budget.per_s)


def decide(policy: Policy, facts: Facts, *, now: datetime, global_dry_run: bool) -> Verdict:
    """Run, dry-run, or refuse (with the reason) one decision of ``policy``."""
    if facts.server_busy:
        return Verdict("refuse", "another operation is in flight on this server")
    cooldown = policy.limits.cooldown_s
    if cooldown and facts.last_acted_at is not None:
        ready_at = facts.last_acted_at + timedelta(seconds=cooldown)
        if now < ready_at:
            return Verdict(
                "refuse",
                f"cooldown: the policy last acted on this server until "
                f"{facts.last_acted_at.isoformat()}, "
                f"again from {ready_at.isoformat()}",
            )
    budget = policy.limits.budget
    if budget is not None and facts.used_budget >= budget.max:
        return Verdict(
            "refuse", f"budget: {facts.used_budget} of {budget.max} per {budget.per_s:g} s used"
        )
    if global_dry_run:
        return Verdict("dry_run", "dry-run (global)")
    if policy.mode == "dry-run":
        return Verdict("dry_run", "dry-run (policy)")
    return Verdict("run")
