"""The engine's side of the guards: facts from the journal, breakers kept in step.

:class:`JournalFacts` answers :class:`guards.Facts` with one indexed query per fact,
asked only when a guard needs it. :class:`BreakerKeeper` moves the circuit breakers
after every finished operation (open on a run of failures, settle a half-open trial)
and claims the trial of a half-open breaker, with compare-and-set writes, so several
threads or daemons on one journal agree on every breaker's state.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from nova_autopilot import guards
from nova_autopilot.guards import breaker as breakers
from nova_autopilot.journal import FAILURES, Activity, Breaker, Journal, Operation
from nova_autopilot.logs import get_logger

log = get_logger(__name__)

#: Attempts at a compare-and-set of a breaker that others keep changing.
CAS_ATTEMPTS = 5


class JournalFacts:
    """The facts of one decision, read from the journal on demand, each once; those
    about the server (busy, loop, cooldown) from one read of its operations."""

    def __init__(
        self,
        journal: Journal,
        *,
        policy: str,
        server_id: str | None,
        project_id: str | None,
        host: str | None,
        availability_zone: str | None,
        held_phases: tuple[str, ...] = (),
        busy: bool | None = None,
    ) -> None:
        """``held_phases``: phases of operations held before they run, which do not
        count as running for the concurrency cap; ``busy``: whether the server is
        busy, when the caller knows better than "any unfinished operation on it"."""
        self._journal = journal
        self._held_phases = held_phases
        self._busy = busy
        self._server_ops: list[Activity] | None = None
        self._policy = policy
        self._server_id = server_id
        self._where: dict[str, str | None] = {
            "all": "",
            "project": project_id,
            "host": host,
            "zone": availability_zone,
        }

    def breakers(self) -> Mapping[str, Breaker]:
        return self._journal.breakers([breakers.GLOBAL, breakers.policy_scope(self._policy)])

    def _activity(self) -> list[Activity]:
        """The server's operations, read once for every guard about the server."""
        if self._server_id is None:
            return []
        if self._server_ops is None:
            self._server_ops = self._journal.activity(self._server_id)
        return self._server_ops

    def server_busy(self) -> bool:
        if self._busy is not None:
            return self._busy
        return any(op.status != "done" for op in self._activity())

    def last_acted_at(self) -> datetime | None:
        finished = [
            op.finished_at
            for op in self._activity()
            if op.policy == self._policy
            and op.finished_at is not None
            and op.outcome not in guards.NOT_ACTED
        ]
        return max(finished, default=None)

    def acted(
        self, scope: guards.Scope | Literal["server"], *, policy_only: bool, since: datetime
    ) -> int:
        if scope == "server":
            return sum(
                1
                for op in self._activity()
                if op.created_at >= since
                and op.outcome not in guards.NOT_ACTED
                and (not policy_only or op.policy == self._policy)
            )
        column = {"project": "project_id", "host": "host", "zone": "availability_zone"}
        filters: dict[str, Any] = {}
        if scope != "all":
            filters[column[scope]] = self._where[scope]
        return self._journal.count(
            since=since,
            policy=self._policy if policy_only else None,
            exclude_outcomes=guards.NOT_ACTED,
            **filters,
        )

    def where(self, scope: guards.Scope) -> str | None:
        return self._where[scope]

    def unfinished(self, *, policy_only: bool) -> int:
        return self._journal.count_unfinished(
            policy=self._policy if policy_only else None, exclude_phases=self._held_phases
        )


@dataclass(frozen=True, slots=True)
class Change:
    """A breaker that changed state, to be reported."""

    breaker: Breaker
    was: str

    @property
    def outcome(self) -> str:
        """``opened``, ``reopened`` (its trial failed) or ``closed`` (its trial passed)."""
        if self.breaker.state == "open":
            return "reopened" if self.was == "half_open" else "opened"
        return "closed"

    def result(self, policy: str | None, limits: guards.BreakerLimits) -> dict[str, Any]:
        b = self.breaker
        return {
            "action": "breaker",
            "outcome": self.outcome,
            "scope": b.scope,
            "policy": policy,
            "state": b.state,
            "failures": b.failures,
            "reason": b.reason,
            "opened_at": b.opened_at.isoformat() if b.opened_at else None,
            "closed_at": b.closed_at.isoformat() if b.closed_at else None,
            "trial_operation_id": b.trial_operation_id,
            "window_s": limits.window_s,
            "half_open_after_s": limits.half_open_after_s,
        }


def _failure(operation: Operation, outcome: str) -> str:
    """The last failure, as a breaker says it: ``resize failed: <Nova's reason>``."""
    reason = operation.reason or "no reason given"
    prefix = f"{operation.action} {outcome}"
    return reason if reason.startswith(prefix) else f"{prefix}: {reason}"


class BreakerKeeper:
    """Keeps the global breaker and each policy's in the journal."""

    def __init__(self, journal: Journal) -> None:
        self._journal = journal

    def after(
        self,
        operation: Operation,
        limits: Mapping[str, guards.BreakerLimits],
        *,
        now: datetime,
    ) -> list[Change]:
        """Move the breakers of ``limits`` (scope -> limits) after ``operation`` ended."""
        outcome = operation.outcome or ""
        changes = []
        for scope, scope_limits in limits.items():
            change = self._after_one(scope, scope_limits, operation, outcome, now)
            if change is not None:
                changes.append(change)
        return changes

    def _after_one(
        self,
        scope: str,
        limits: guards.BreakerLimits,
        operation: Operation,
        outcome: str,
        now: datetime,
    ) -> Change | None:
        for _ in range(CAS_ATTEMPTS):
            current = self._journal.breakers([scope]).get(scope)
            new = None
            if current is not None:
                new = breakers.settle_trial(
                    current,
                    operation_id=operation.id,
                    outcome=outcome,
                    reason=operation.reason,
                    now=now,
                )
            if new is None and outcome in FAILURES and limits.enabled:
                policy = None if scope == breakers.GLOBAL else operation.policy
                failures = self._journal.count_finished(
                    since=breakers.counting_since(current, limits, now=now),
                    outcomes=FAILURES,
                    policy=policy,
                )
                new = breakers.trip(
                    current,
                    limits,
                    scope=scope,
                    failures=failures,
                    reason=_failure(operation, outcome),
                    now=now,
                )
            if new is None:
                return None
            expect = None if current is None else current.version
            saved = self._journal.save_breaker(new, expect_version=expect, now=now)
            if saved is not None:
                return Change(saved, current.state if current else "closed")
        log.warning("breaker.contended", scope=scope, operation_id=operation.id)
        return None

    def take_trials(self, scopes: tuple[str, ...], operation_id: str, *, now: datetime) -> bool:
        """Make ``operation_id`` the trial of every breaker of ``scopes`` that is still
        open; False (and nothing taken) when another decision took one first."""
        taken: list[Breaker] = []
        found = self._journal.breakers(scopes)
        for scope in scopes:
            current = found.get(scope)
            if current is None or current.state != "open":
                self._give_back(taken, now)
                return False
            saved = self._journal.save_breaker(
                breakers.take_trial(current, operation_id), expect_version=current.version, now=now
            )
            if saved is None:
                self._give_back(taken, now)
                return False
            taken.append(saved)
        return True

    def _give_back(self, taken: list[Breaker], now: datetime) -> None:
        for trial in taken:
            reopened = Breaker(
                scope=trial.scope,
                state="open",
                failures=trial.failures,
                reason=trial.reason,
                opened_at=trial.opened_at,
                closed_at=trial.closed_at,
            )
            self._journal.save_breaker(reopened, expect_version=trial.version, now=now)
