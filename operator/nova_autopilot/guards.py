"""Guards: may a decision become an operation on Nova?

Pure functions over the facts the engine gathers from the journal: whether
the server is busy, when the policy last acted on it, how much of its budget
it used. Every refusal says why, and the engine records it in the journal
like any other outcome. Dry-run (global, or the policy's mode) lets the
decision be recorded without any Nova write call. :func:`hold` says whether
a decision that may run waits first: behind the server's operation in flight
(``limits.when_busy: wait``), or for an operator's approval (``mode:
approve``, or ``[guards] require_approval``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

from nova_autopilot.policies.model import Policy

#: Outcomes that did not touch the server, so they count neither for
#: cooldowns nor for budgets.
NOT_ACTED = ("refused", "dry_run", "rejected", "expired")


@dataclass(frozen=True, slots=True)
class Facts:
    """What the journal says about the server and the policy right now."""

    server_busy: bool
    last_acted_at: datetime | None
    used_budget: int


@dataclass(frozen=True, slots=True)
class Verdict:
    decision: Literal["run", "dry_run", "refuse", "queue", "await_approval"]
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


def hold(
    policy: Policy,
    facts: Facts,
    verdict: Verdict,
    *,
    now: datetime,
    global_dry_run: bool,
    global_approval: bool,
) -> Verdict:
    """Turn :func:`decide`'s verdict into one that waits, when the policy says so.

    A decision refused only because its server is busy is queued under
    ``when_busy: wait`` (if the other guards would let it run then); a decision
    that may run awaits approval under ``mode: approve`` or the global switch.
    """
    if verdict.decision == "refuse" and facts.server_busy and policy.limits.when_busy == "wait":
        free = decide(
            policy, replace(facts, server_busy=False), now=now, global_dry_run=global_dry_run
        )
        if free.decision != "run":
            return free  # refused for another reason, or a dry run: nothing to wait for
        return Verdict("queue", "another operation is in flight on this server: queued")
    return approval(policy, verdict, global_approval=global_approval)


def approval(policy: Policy, verdict: Verdict, *, global_approval: bool) -> Verdict:
    """A verdict to run becomes one to await an operator's approval, when asked."""
    if verdict.decision != "run":
        return verdict
    if policy.mode == "approve":
        return Verdict("await_approval", "approval required (policy)")
    if global_approval:
        return Verdict("await_approval", "approval required (global)")
    return verdict
