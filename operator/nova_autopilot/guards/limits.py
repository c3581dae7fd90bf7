"""The guards' settings: ``[guards]`` for everything, a policy's ``limits`` for its own
decisions, and the limits that apply once both are read together."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from nova_autopilot.policies.model import BUDGET_SCOPES, Budget, Policy

#: Where a budget counts operations: the whole cloud, one project, one compute host, one
#: availability zone.
Scope = Literal["all", "project", "host", "zone"]
SCOPES: tuple[Scope, ...] = ("all", "project", "host", "zone")


@dataclass(frozen=True, slots=True)
class BreakerLimits:
    """A circuit breaker: ``failures`` failed operations within ``window_s`` open it
    (0: never); after ``half_open_after_s`` one trial operation may pass."""

    failures: int
    window_s: float
    half_open_after_s: float

    @property
    def enabled(self) -> bool:
        return self.failures > 0


OFF = BreakerLimits(0, 600.0, 1800.0)


@dataclass(frozen=True, slots=True)
class GuardSettings:
    """``[guards]``: limits over every policy, and the defaults of each policy's own.

    The defaults here limit nothing, for tests that want one guard at a time;
    :meth:`from_conf` reads the daemon's configuration.
    """

    dry_run: bool = False
    default_cooldown_s: float = 0.0
    #: Budgets over the operations of every policy, by scope.
    budgets: Mapping[Scope, Budget] = field(default_factory=dict)
    max_concurrent: int | None = None
    loop: Budget | None = None
    breaker: BreakerLimits = OFF
    policy_breaker: BreakerLimits = OFF

    @classmethod
    def from_conf(cls, conf: Any) -> GuardSettings:
        g = conf.guards
        budgets: dict[Scope, Budget] = {}
        for scope, name in (
            ("all", "budget_global"),
            ("project", "budget_per_project"),
            ("host", "budget_per_host"),
            ("zone", "budget_per_zone"),
        ):
            count = int(g[name])
            if count > 0:
                budgets[scope] = Budget(count, float(g[f"{name}_window"]))  # type: ignore[index]
        window, half_open = float(g.breaker_window), float(g.breaker_half_open_after)
        return cls(
            dry_run=bool(g.dry_run),
            default_cooldown_s=float(g.default_cooldown),
            budgets=budgets,
            max_concurrent=int(g.max_concurrent_operations),
            loop=(
                Budget(int(g.loop_max_per_server), float(g.loop_window))
                if g.loop_max_per_server > 0
                else None
            ),
            breaker=BreakerLimits(int(g.breaker_failures), window, half_open),
            policy_breaker=BreakerLimits(int(g.policy_breaker_failures), window, half_open),
        )


@dataclass(frozen=True, slots=True)
class PolicyLimits:
    """What limits one policy's decisions: its own ``limits`` over the defaults."""

    cooldown_s: float
    #: Budgets over this policy's own operations, by scope ("all": the policy as a whole).
    budgets: Mapping[Scope, Budget]
    max_concurrent: int | None
    loop: Budget | None
    breaker: BreakerLimits


#: The limits of each (policy, settings) pair asked for, by identity: both are immutable,
#: and asked for at every decision. A policy set reloaded makes new policies; the old
#: ones' entries go when the cache is full.
_KNOWN: dict[tuple[int, int], tuple[Policy, GuardSettings, PolicyLimits]] = {}
_KNOWN_MAX = 4096


def for_policy(policy: Policy, settings: GuardSettings) -> PolicyLimits:
    """The limits of ``policy``'s decisions: its own ``limits`` over ``settings``."""
    key = (id(policy), id(settings))
    known = _KNOWN.get(key)
    if known is not None and known[0] is policy and known[1] is settings:
        return known[2]
    limits = _limits(policy, settings)
    if len(_KNOWN) >= _KNOWN_MAX:
        _KNOWN.clear()
    _KNOWN[key] = (policy, settings, limits)
    return limits


def _limits(policy: Policy, settings: GuardSettings) -> PolicyLimits:
    own = policy.limits
    budgets: dict[Scope, Budget] = {}
    if own.budget is not None:
        budgets["all"] = own.budget
    for scope in BUDGET_SCOPES:
        budget = getattr(own, f"budget_per_{scope}")
        if budget is not None:
            budgets[scope] = budget  # type: ignore[index]
    default = settings.policy_breaker
    breaker = BreakerLimits(
        default.failures if own.breaker.failures is None else own.breaker.failures,
        default.window_s if own.breaker.window_s is None else own.breaker.window_s,
        (
            default.half_open_after_s
            if own.breaker.half_open_after_s is None
            else own.breaker.half_open_after_s
        ),
    )
    return PolicyLimits(
        cooldown_s=settings.default_cooldown_s if own.cooldown_s is None else own.cooldown_s,
        budgets=budgets,
        max_concurrent=own.max_concurrent,
        loop=settings.loop if own.loop is None else own.loop,
        breaker=breaker,
    )
