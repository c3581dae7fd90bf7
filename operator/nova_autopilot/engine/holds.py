"""Operations held before they run: queued behind their server's operation in
flight, or awaiting an operator's approval.

A decision may wait before it touches Nova: queued (``limits.when_busy:
wait``) or awaiting approval (``mode: approve`` or ``[guards]
require_approval``). It is then an unfinished operation of the journal in a
phase of its own (:data:`~nova_autopilot.journal.QUEUED`,
:data:`~nova_autopilot.journal.AWAITING_APPROVAL`) that no state machine
knows: the runner never sees it until it is released. Its state says until
when it may wait; past that moment it ends ``expired``. Both kinds count as in
flight on their server, so nothing else starts there meanwhile.

:class:`Holds` records such a decision in its phase, in the same transaction
as the decision itself; keeps its deadline; and releases queued operations in
turn when their server is free. When a held operation is released, the guards
are asked again (the breakers, the server free of others, the cooldown, the
concurrency cap, dry-run, approval for a queued one); its share of loops and
budgets was taken when it was decided. It takes a half-open breaker's trial
only then, when it would run.
"""

from __future__ import annotations

import dataclasses
import heapq
import threading
from datetime import datetime, timedelta
from typing import Any

from nova_autopilot import guards
from nova_autopilot.engine.conduct import Conductor, announce_refusal, result_of
from nova_autopilot.journal import (
    AWAITING_APPROVAL,
    HELD_PHASES,
    INITIAL_PHASE,
    QUEUED,
    Journal,
    JournalError,
    NewOperation,
    Operation,
    OperationFinished,
    StaleOperation,
    StateKey,
    UnknownOperation,
)
from nova_autopilot.logs import bound, get_logger
from nova_autopilot.policies.model import Policy

log = get_logger(__name__)


def hold_state(until: datetime, **extra: Any) -> dict[str, Any]:
    """The state of an operation held until ``until``."""
    return {StateKey.HOLD_UNTIL: until.isoformat(), **extra}


def plan(operation: Operation) -> dict[str, Any]:
    """What an operation awaiting approval would do, as its result announces it."""
    return {
        "action": operation.action,
        "server": {"id": operation.server_id, "name": operation.server_name},
        "params": operation.params,
        "policy": operation.policy,
        "why": operation.why,
    }


def awaiting(journal: Journal) -> list[Operation]:
    """The operations awaiting an operator's approval, oldest first."""
    return [o for o in journal.unfinished() if o.phase == AWAITING_APPROVAL]


class Deadlines:
    """When held operations expire: a heap of ``(moment, operation id)``.

    Entries are never removed early: whoever pops one checks the journal, where
    the operation may have been released or finished meanwhile.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._heap: list[tuple[datetime, str]] = []

    def add(self, op_id: str, until: datetime) -> None:
        with self._lock:
            heapq.heappush(self._heap, (until, op_id))

    def due(self, now: datetime) -> list[str]:
        """Take every entry due at ``now``."""
        found = []
        with self._lock:
            while self._heap and self._heap[0][0] <= now:
                found.append(heapq.heappop(self._heap)[1])
        return found

    def __len__(self) -> int:
        with self._lock:
            return len(self._heap)


class Holds:
    """The held operations: recorded in their phase, tracked until they expire,
    released in turn."""

    def __init__(
        self, *, conductor: Conductor, global_approval: bool, approval_timeout_s: float
    ) -> None:
        self._conductor = conductor
        self._journal = conductor.journal
        self._locks = conductor.locks
        self._global_approval = global_approval
        self._approval_timeout = timedelta(seconds=approval_timeout_s)
        self._deadlines = Deadlines()

    def __len__(self) -> int:
        return len(self._deadlines)

    def track(self, operation: Operation) -> bool:
        """At a restart or a takeover: whether the operation is held (then its
        deadline is kept)."""
        if operation.phase not in HELD_PHASES:
            return False
        until = operation.held_until
        if until is not None:
            self._deadlines.add(operation.id, until)
        return True

    def record_as(
        self, new: NewOperation, verdict: guards.Verdict, policy: Policy, now: datetime
    ) -> NewOperation:
        """A decision that waits is recorded in its waiting phase, in the same
        transaction as the decision: a crash can never let it run unheld."""
        if verdict.decision == "queue":
            until = now + timedelta(seconds=policy.limits.max_wait_s)
            return dataclasses.replace(new, phase=QUEUED, state=hold_state(until))
        if verdict.decision == "await_approval":
            until = now + self._approval_timeout
            return dataclasses.replace(new, phase=AWAITING_APPROVAL, state=hold_state(until))
        return new

    def hold(self, operation: Operation, now: datetime) -> None:
        """Keep track of a held operation; announce one awaiting approval."""
        until = operation.held_until
        if until is not None:
            self._deadlines.add(operation.id, until)
        if operation.phase == QUEUED:
            log.info("operation.queued", action=operation.action, until=str(until))
            self.release_next(operation.server_id, now)  # its predecessor may be gone already
            return
        self._journal.record_step(
            operation.id, name=AWAITING_APPROVAL, detail=plan(operation), now=now
        )
        log.info(
            "operation.awaiting_approval",
            action=operation.action,
            operation_id=operation.id,
            policy=operation.policy,
            server_id=operation.server_id,
            until=str(until),
        )
        result = result_of(operation) | {
            "outcome": AWAITING_APPROVAL,
            "approval_until": until.isoformat() if until else None,
            "plan": plan(operation),
        }
        self._conductor.publish(operation, result)

    def recheck(self, operation: Operation, now: datetime) -> guards.Verdict:
        """The guards again, for a held operation about to run: the server must be
        free of others (queued ones wait behind it), and every guard but loops and
        budgets (its share was taken when it was decided) must let it through."""
        policy = self._conductor.policy(operation.policy)
        if policy is None:
            return guards.Verdict("refuse", f"policy {operation.policy!r} is no longer loaded")
        others = [
            o
            for o in self._journal.in_flight(operation.server_id or "")
            if o.id != operation.id and o.occupies
        ]
        verdict = self._conductor.recheck(policy, operation, busy=bool(others), now=now)
        if operation.phase == QUEUED:
            verdict = guards.approval(policy, verdict, global_approval=self._global_approval)
        if verdict.decision != "run":
            return verdict
        checked = self._conductor.take_trials(verdict, operation.id, now)
        if checked is not verdict:
            announce_refusal(operation.action, checked)
        return checked

    def run(self, operation: Operation, now: datetime) -> None:
        """Release a held operation to run: from its state machine's first phase, its
        deadline counted from now."""
        state = {StateKey.RELEASED_AT: now.isoformat()}
        started = self._journal.advance(
            operation.id,
            phase=INITIAL_PHASE,
            state=state,
            expect_version=operation.version,
            now=now,
        )
        self._conductor.start(
            operation.id,
            server_id=operation.server_id,
            action=operation.action,
            params=operation.params,
            policy=operation.policy,
            version=started.version,
            now=now,
            state=state,
            held=operation.phase,
        )

    def end(self, operation: Operation, verdict: guards.Verdict, now: datetime) -> None:
        """End a held operation the guards no longer let run, as they say."""
        outcome = "dry_run" if verdict.decision == "dry_run" else "refused"
        self._conductor.end(
            operation, outcome, verdict.reason, now, expect_version=operation.version
        )

    def _release(self, operation: Operation, now: datetime) -> bool:
        """Let a held operation go on: run it, have it await approval, or end it
        as the guards now say. True when it occupies its server afterwards."""
        verdict = self.recheck(operation, now)
        with bound(operation_id=operation.id, policy=operation.policy):
            if verdict.decision == "await_approval":
                until = now + self._approval_timeout
                held = self._journal.advance(
                    operation.id,
                    phase=AWAITING_APPROVAL,
                    state=hold_state(until),
                    expect_version=operation.version,
                    now=now,
                )
                self.hold(held, now)
                return True
            if verdict.decision == "run":
                self.run(operation, now)
                return True
            self.end(operation, verdict, now)
            return False

    def release_next(self, server_id: str | None, now: datetime) -> None:
        """Once nothing occupies the server, start its oldest queued operation
        (first come, first served); ones whose wait is over end expired."""
        if server_id is None:
            return
        with self._locks.held([server_id]) as elsewhere:
            if elsewhere:
                return  # the daemon that holds it releases the next when its operation ends
            waiting = self._journal.in_flight(server_id)
            if any(o.occupies for o in waiting):
                return
            for operation in waiting:
                until = operation.held_until
                if until is not None and until <= now:
                    self._expire(operation, now)
                elif self._release(operation, now):
                    return

    def _expire(self, operation: Operation, now: datetime) -> None:
        if operation.phase == QUEUED:
            reason = "expired: the server was still busy at the end of the policy's max_wait"
        else:
            reason = "expired: no approval in time"
        self._journal.record_step(operation.id, name="expired", detail={}, now=now)
        self._conductor.end(operation, "expired", reason, now, expect_version=operation.version)

    def expire_due(self, now: datetime) -> int:
        """End the held operations whose time is over; how many. The daemon calls
        it every second."""
        ended = 0
        for op_id in self._deadlines.due(now):
            try:
                ended += self._expire_one(op_id, now)
            except (UnknownOperation, OperationFinished, StaleOperation):
                continue  # pruned, or ended by another daemon meanwhile
            except JournalError as exc:  # the database is away: try again at the next turn
                log.warning("operation.expiry_failed", operation_id=op_id, error=str(exc))
                self._deadlines.add(op_id, now)
        return ended

    def _expire_one(self, op_id: str, now: datetime) -> int:
        operation = self._journal.get(op_id)
        with self._locks.held([operation.server_id]):
            operation = self._journal.get(op_id)
            until = operation.held_until
            if operation.phase not in HELD_PHASES or operation.finished:
                return 0  # released or ended meanwhile
            if until is None or until > now:
                return 0  # held again since: its new moment has its own entry
            occupied = operation.occupies
            self._expire(operation, now)
            if occupied:
                self.release_next(operation.server_id, now)
            return 1
