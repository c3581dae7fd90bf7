"""The engine's side of the guards: facts from the journal, breakers kept in step.

:class:`JournalFacts` answers :class:`guards.Facts` with one indexed query per fact,
asked only when a guard needs it. :class:`Ledger` is the journal as the decisions
of one batch see it (group commit): each fact read once for the whole batch, then
kept in step with the operations the batch has decided and not yet written, so the
guards count exactly what they would count deciding the batch one message at a time.
:class:`BreakerKeeper` moves the circuit breakers after every finished operation
(open on a run of failures, settle a half-open trial) and claims the trial of a
half-open breaker, with compare-and-set writes, so several threads or daemons on one
journal agree on every breaker's state.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from nova_autopilot import guards
from nova_autopilot.guards import breaker as breakers
from nova_autopilot.journal import (
    FAILURES,
    Activity,
    Breaker,
    Journal,
    NewOperation,
    Operation,
)
from nova_autopilot.logs import get_logger

log = get_logger(__name__)

#: Attempts at a compare-and-set of a breaker that others keep changing.
CAS_ATTEMPTS = 5


class Ledger:
    """The journal as the decisions of one batch see it: what the guards read, each
    fact read once (the servers' operations in one read, their placements in one read
    when a decision first needs one: a Nova notification says its server's host and
    zone itself), plus the operations the batch decided before it is written
    (:meth:`record`). Used under the engine's decision lock, by one thread."""

    def __init__(self, journal: Journal, server_ids: Iterable[str]) -> None:
        ids = set(server_ids)
        self._journal = journal
        self._activity = journal.activities(ids)
        self._placement: dict[str, tuple[str | None, str | None]] = {}
        self._unplaced = ids  # the batch's servers whose placement is not read yet
        self._breakers: dict[tuple[str, ...] | None, dict[str, Breaker]] = {}
        self._counts: dict[tuple[Any, ...], int] = {}
        self._counting: dict[tuple[Any, ...], Callable[[NewOperation], bool]] = {}
        self._decided: list[NewOperation] = []

    def breakers(self, scopes: Collection[str] | None = None) -> dict[str, Breaker]:
        key = None if scopes is None else tuple(scopes)
        if key not in self._breakers:
            self._breakers[key] = self._journal.breakers(scopes)
        return self._breakers[key]

    def activity(self, server_id: str) -> list[Activity]:
        if server_id not in self._activity:
            self._activity[server_id] = self._journal.activity(server_id)
        return self._activity[server_id]

    def placement(self, server_id: str) -> tuple[str | None, str | None]:
        if server_id not in self._placement:
            wanted, self._unplaced = self._unplaced | {server_id}, set()
            for read, placed in self._journal.placements(wanted).items():
                # What the batch decided (record) is newer than what the journal holds.
                self._placement.setdefault(read, placed)
        return self._placement[server_id]

    def count(
        self,
        *,
        since: datetime,
        policy: str | None = None,
        project_id: str | None = None,
        server_id: str | None = None,
        host: str | None = None,
        availability_zone: str | None = None,
        actions: Collection[str] | None = None,
        exclude_outcomes: Collection[str] = (),
    ) -> int:
        where = {
            "policy": policy,
            "project_id": project_id,
            "server_id": server_id,
            "host": host,
            "availability_zone": availability_zone,
        }
        chosen = None if actions is None else frozenset(actions)
        excluded = frozenset(exclude_outcomes)
        key = ("count", since, *where.values(), chosen, excluded)
        if key not in self._counts:
            wanted = [(name, value) for name, value in where.items() if value is not None]

            def counts(new: NewOperation) -> bool:
                return (
                    all(getattr(new, name) == value for name, value in wanted)
                    and (chosen is None or new.action in chosen)
                    and (new.outcome is None or new.outcome not in excluded)
                )

            journal = self._journal.count(
                since=since, actions=chosen, exclude_outcomes=excluded, **where
            )
            self._start_count(key, journal, counts)
        return self._counts[key]

    def count_unfinished(
        self, *, policy: str | None = None, exclude_phases: Collection[str] = ()
    ) -> int:
        excluded = frozenset(exclude_phases)
        key = ("unfinished", policy, excluded)
        if key not in self._counts:

            def counts(new: NewOperation) -> bool:
                return (
                    new.outcome is None
                    and new.phase not in excluded
                    and (policy is None or new.policy == policy)
                )

            journal = self._journal.count_unfinished(policy=policy, exclude_phases=excluded)
            self._start_count(key, journal, counts)
        return self._counts[key]

    def _start_count(
        self, key: tuple[Any, ...], journal: int, counts: Callable[[NewOperation], bool]
    ) -> None:
        """Keep a count from now on: the journal's, plus the batch's decisions it counts,
        those made and (:meth:`record`) those to come."""
        self._counts[key] = journal + sum(1 for new in self._decided if counts(new))
        self._counting[key] = counts

    def record(self, new: NewOperation, at: datetime) -> None:
        """The batch decided ``new`` at ``at``: the guards of its later decisions count it."""
        self._decided.append(new)
        for key, counts in self._counting.items():
            if counts(new):
                self._counts[key] += 1
        if new.server_id is None:
            return
        finished = None if new.outcome is None else at
        status = "pending" if new.outcome is None else "done"
        self.activity(new.server_id).append(
            Activity(new.policy, status, new.outcome, at, finished)  # type: ignore[arg-type]
        )
        if new.host is not None or new.availability_zone is not None:
            self._placement[new.server_id] = (new.host, new.availability_zone)


class JournalFacts:
    """The facts of one decision, read from the journal on demand, each once; those
    about the server (busy, loop, cooldown) from one read of its operations."""

    def __init__(
        self,
        journal: Journal | Ledger,
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
