"""Guards: may a decision become an operation on Nova?

Pure functions over facts the engine gathers from the journal (``docs/guards.md``).
:func:`decide` asks for the facts it needs one at a time, cheapest first, and stops at
the first guard that refuses, so a storm of events mostly costs one indexed lookup per
decision. Every refusal names its guard first in its reason (``loop: ...``,
``budget(host): ...``); the engine records it in the journal like any other outcome and
counts it by guard. Dry-run (global, or the policy's mode) lets the decision be recorded
without any Nova write call.

=========================  ===================================================
``limits``                 ``[guards]`` settings, a policy's limits over them
``breaker``                circuit breakers: open, half-open trial, close
``decision``               the chain of guards: :func:`decide`; :func:`decide_or_wait`
=========================  ===================================================
"""

from nova_autopilot.guards.breaker import GLOBAL, policy_scope
from nova_autopilot.guards.decision import (
    NOT_ACTED,
    Facts,
    Verdict,
    approval,
    decide,
    decide_or_wait,
)
from nova_autopilot.guards.limits import (
    SCOPES,
    BreakerLimits,
    GuardSettings,
    PolicyLimits,
    Scope,
    for_policy,
)

__all__ = [
    "GLOBAL",
    "NOT_ACTED",
    "SCOPES",
    "BreakerLimits",
    "Facts",
    "GuardSettings",
    "PolicyLimits",
    "Scope",
    "Verdict",
    "approval",
    "decide",
    "decide_or_wait",
    "for_policy",
    "policy_scope",
]
