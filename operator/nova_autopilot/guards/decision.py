"""The chain of guards over one decision, cheapest first; the first refusal wins.

:func:`decide_or_wait` turns a verdict into one that waits, when the policy says so: behind
the server's operation in flight (``limits.when_busy: wait``), or for an operator's
approval (``mode: approve``, or ``[guards] require_approval``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, Protocol

from nova_autopilot.guards import breaker as breakers
from nova_autopilot.guards.limits import GuardSettings, PolicyLimits, Scope
from nova_autopilot.journal import Breaker
from nova_autopilot.policies.model import Budget, Policy

#: Outcomes that did not touch the server, so they count neither for cooldowns, budgets
#: nor loops.
NOT_ACTED = ("refused", "dry_run", "rejected", "expired")

_WHERE = {"all": "", "project": " in project {}", "host": " on host {}", "zone": " in zone {}"}


class Facts(Protocol):
    """What the journal says about the decision's server, policy and scopes; asked
    lazily, each at most once."""

    def breakers(self) -> Mapping[str, Breaker]:
        """The global breaker and the policy's, by scope (absent: closed)."""
        ...

    def server_busy(self) -> bool: ...

    def last_acted_at(self) -> datetime | None:
        """When the policy last acted on the server."""
        ...

    def acted(self, scope: Scope | Literal["server"], *, policy_only: bool, since: datetime) -> int:
        """Operations created since ``since`` in the decision's scope (its project,
        host, zone, server; "all": everywhere), of this policy only or of every one."""
        ...

    def where(self, scope: Scope) -> str | None:
        """The decision's project, host or zone; None when unknown ("all": "")."""
        ...

    def unfinished(self, *, policy_only: bool) -> int: ...


@dataclass(frozen=True, slots=True)
class Verdict:
    decision: Literal["run", "dry_run", "refuse", "queue", "await_approval"]
    reason: str | None = None
    #: The guard that refused (``cooldown``, ``budget(host)``...), for counters.
    guard: str | None = None
    #: The breakers (scopes) whose half-open trial this decision is to be.
    trials: tuple[str, ...] = ()


def refuse(guard: str, detail: str) -> Verdict:
    return Verdict("refuse", f"{guard}: {detail}", guard)


def decide(
    policy: Policy,
    limits: PolicyLimits,
    settings: GuardSettings,
    facts: Facts,
    *,
    now: datetime,
    has_server: bool = True,
    held: bool = False,
    check_busy: bool = True,
) -> Verdict:
    """Run, dry-run, or refuse (naming the guard) one decision of ``policy``.

    ``held``: an operation decided earlier and held since (queued, awaiting approval),
    about to run; it took its share of loops and budgets when it was decided, so those
    are not counted again. ``check_busy=False``: as if the server were free.
    """
    trials = []
    found = facts.breakers()
    scope = breakers.policy_scope(policy.name)
    for name, breaker_limits in ((breakers.GLOBAL, settings.breaker), (scope, limits.breaker)):
        gate = breakers.check(found.get(name), breaker_limits, now=now)
        if gate.refusal is not None:
            return Verdict("refuse", gate.refusal, "breaker")
        if gate.trial:
            trials.append(name)
    refusal = (
        _server_guards(limits, facts, now, busy=check_busy, loop=not held) if has_server else None
    )
    refusal = refusal or _concurrency(limits, settings, facts)
    if not held:
        refusal = refusal or _budgets(limits, settings, facts, now)
    if refusal is not None:
        return refusal
    if settings.dry_run:
        return Verdict("dry_run", "dry-run (global)")
    if policy.mode == "dry-run":
        return Verdict("dry_run", "dry-run (policy)")
    return Verdict("run", trials=tuple(trials))


def decide_or_wait(
    policy: Policy,
    limits: PolicyLimits,
    settings: GuardSettings,
    facts: Facts,
    *,
    now: datetime,
    has_server: bool = True,
    global_approval: bool,
) -> Verdict:
    """:func:`decide`, then wait when the policy says so: a decision refused only because
    its server is busy is queued under ``when_busy: wait`` (if the other guards would let
    it run then); a decision that may run awaits approval under ``mode: approve`` or the
    global switch. A decision that waits takes no breaker trial: it is taken when it is
    released to run."""
    verdict = decide(policy, limits, settings, facts, now=now, has_server=has_server)
    if verdict.guard == "busy" and policy.limits.when_busy == "wait":
        free = decide(policy, limits, settings, facts, now=now, check_busy=False)
        if free.decision != "run":
            return free  # refused for another reason, or a dry run: nothing to wait for
        return Verdict("queue", "another operation is in flight on this server: queued")
    waits = approval(policy, verdict, global_approval=global_approval)
    return waits if waits.decision == "await_approval" else verdict


def approval(policy: Policy, verdict: Verdict, *, global_approval: bool) -> Verdict:
    """A verdict to run becomes one to await an operator's approval, when asked."""
    if verdict.decision != "run":
        return verdict
    if policy.mode == "approve":
        return Verdict("await_approval", "approval required (policy)")
    if global_approval:
        return Verdict("await_approval", "approval required (global)")
    return verdict


def _server_guards(
    limits: PolicyLimits, facts: Facts, now: datetime, *, busy: bool, loop: bool
) -> Verdict | None:
    if busy and facts.server_busy():
        return refuse("busy", "another operation is in flight on this server")
    window = limits.loop if loop else None
    if window is not None:
        count = facts.acted("server", policy_only=False, since=_start(window, now))
        if count >= window.max:
            return refuse(
                "loop",
                f"{count} operations on this server within {window.per_s:g} s by any policy "
                f"(at most {window.max}): something keeps asking for it",
            )
    if limits.cooldown_s:
        last = facts.last_acted_at()
        if last is not None:
            ready_at = last + timedelta(seconds=limits.cooldown_s)
            if now < ready_at:
                return refuse(
                    "cooldown",
                    f"the policy last acted on this server until {last.isoformat()}, "
                    f"again from {ready_at.isoformat()}",
                )
    return None


def _concurrency(limits: PolicyLimits, settings: GuardSettings, facts: Facts) -> Verdict | None:
    for cap, policy_only, guard in (
        (limits.max_concurrent, True, "concurrency(policy)"),
        (settings.max_concurrent, False, "concurrency"),
    ):
        if cap is None:
            continue
        count = facts.unfinished(policy_only=policy_only)
        if count >= cap:
            whose = "of this policy " if policy_only else ""
            return refuse(guard, f"{count} operations {whose}unfinished (at most {cap} at once)")
    return None


def _budgets(
    limits: PolicyLimits, settings: GuardSettings, facts: Facts, now: datetime
) -> Verdict | None:
    checks = [(scope, budget, True) for scope, budget in limits.budgets.items()]
    checks += [(scope, budget, False) for scope, budget in settings.budgets.items()]
    for scope, budget, policy_only in checks:
        where = facts.where(scope)
        if where is None:
            continue  # the host or zone is not known yet: nothing to count it against
        used = facts.acted(scope, policy_only=policy_only, since=_start(budget, now))
        if used >= budget.max:
            guard = "budget(policy)" if scope == "all" and policy_only else f"budget({scope})"
            if scope == "all" and not policy_only:
                guard = "budget(global)"
            whose = "by this policy" if policy_only else "by all policies"
            return refuse(
                guard,
                f"{used} of {budget.max} operations per {budget.per_s:g} s used {whose}"
                + _WHERE[scope].format(where),
            )
    return None


def _start(budget: Budget, now: datetime) -> datetime:
    return now - timedelta(seconds=budget.per_s)
