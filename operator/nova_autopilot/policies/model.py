"""What a policy is, as frozen values. ``docs/policies.md`` is the reference."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from nova_autopilot.policies.conditions import Condition

SourceFilter = Literal["nova", "request", "autopilot", "sweep", "any"]
Mode = Literal["enforce", "dry-run", "approve"]
WhenBusy = Literal["refuse", "wait"]


@dataclass(frozen=True, slots=True)
class ActionSpec:
    """The vocabulary of one action: its parameters and its failure handling.
    ``waits_for_task``: it waits (``confirm.task_timeout``) for a task Nova is
    running on the server to end before it starts."""

    required: tuple[str, ...]
    optional: tuple[str, ...]
    on_failure: tuple[str, ...]
    default_on_failure: str
    waits_for_task: bool = True


#: Every action a policy can name. The executor implements each one.
ACTIONS: dict[str, ActionSpec] = {
    "resize": ActionSpec(
        required=("server", "flavor"),
        optional=("lock", "raise_quota"),
        on_failure=("revert", "keep"),
        default_on_failure="revert",
    ),
    "finish_resize": ActionSpec(
        required=("server",),
        optional=(),
        on_failure=("revert", "keep"),
        default_on_failure="revert",
    ),
    "rescue": ActionSpec(
        required=("server",),
        optional=("image", "lock"),
        on_failure=("unrescue", "leave"),
        default_on_failure="leave",
    ),
    "unrescue": ActionSpec(
        required=("server",),
        optional=("lock",),
        on_failure=("leave",),
        default_on_failure="leave",
    ),
    "verify_boot": ActionSpec(
        required=("server",),
        optional=("success", "failure", "interval"),
        on_failure=("leave",),
        default_on_failure="leave",
        waits_for_task=False,
    ),
}

#: Health-gate checks a policy can ask for, and the settings each takes.
GATE_CHECKS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "tcp": {"port": int, "timeout": (int, float, str)},
    "console": {"contains": str, "not_contains": str, "lines": int},
}


@dataclass(frozen=True, slots=True)
class GateCheck:
    kind: str
    settings: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Confirm:
    """How the outcome is checked: a deadline, a health gate, and what to do
    when the gate fails or the deadline passes. ``task_timeout_s``: how long an
    action waits for a task Nova is already running on the server to end
    before it starts (within ``timeout_s``)."""

    timeout_s: float = 900.0
    gate: tuple[GateCheck, ...] = ()
    gate_timeout_s: float = 300.0
    on_failure: str = "revert"
    task_timeout_s: float = 120.0


@dataclass(frozen=True, slots=True)
class Budget:
    max: int
    per_s: float


@dataclass(frozen=True, slots=True)
class BreakerLimits:
    """A policy's circuit breaker; None takes the ``[guards]`` default, 0 failures
    turns it off."""

    failures: int | None = None
    window_s: float | None = None
    half_open_after_s: float | None = None


#: The scopes a policy's budget can be counted in, besides the policy as a whole.
BUDGET_SCOPES = ("project", "host", "zone")


@dataclass(frozen=True, slots=True)
class Limits:
    """The guards' settings of one policy (``docs/guards.md``); None takes the
    ``[guards]`` default."""

    cooldown_s: float | None = None
    budget: Budget | None = None
    budget_per_project: Budget | None = None
    budget_per_host: Budget | None = None
    budget_per_zone: Budget | None = None
    max_concurrent: int | None = None
    loop: Budget | None = None
    breaker: BreakerLimits = BreakerLimits()
    #: A decision for a server with an operation in flight: refused, or queued
    #: behind it (first come, first served) for at most ``max_wait_s``.
    when_busy: WhenBusy = "refuse"
    max_wait_s: float = 900.0


@dataclass(frozen=True, slots=True)
class When:
    source: SourceFilter
    events: tuple[str, ...]
    condition: Condition | None
    #: What an event matching it met: "<events>[ where <condition>]" (made once).
    summary: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        where = f" where {self.condition}" if self.condition else ""
        object.__setattr__(self, "summary", ", ".join(self.events) + where)


@dataclass(frozen=True, slots=True)
class Do:
    action: str
    params: dict[str, Any] = field(hash=False)


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    description: str
    enabled: bool
    mode: Mode
    when: When
    do: Do
    confirm: Confirm
    limits: Limits
    file: str
    line: int | None
    order: int
