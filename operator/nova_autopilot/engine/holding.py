"""The engine's part that holds operations before they run.

A decision may wait before it touches Nova: queued behind its server's
operation in flight (``limits.when_busy: wait``), or awaiting an operator's
approval (``mode: approve`` or ``[guards] require_approval``); ``holds``
says what such an operation is. :class:`Holding` records it in its phase,
keeps its deadline, releases queued ones in turn when their server is free,
and answers an operator's ``operation.approve`` / ``operation.reject``
request, before any policy. Deciding, releasing and approving on one server
never interleave. A decision request is taken once: a copy the bus delivers
again is dropped, one published anew is refused as ``replayed``.

When a held operation is released, the guards are asked again (the breakers,
the server free of others, the cooldown, the concurrency cap, dry-run, approval
for a queued one); its share of loops and budgets was taken when it was
decided. It takes a half-open breaker's trial only then, when it would run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from nova_autopilot import guards
from nova_autopilot.actions.runner import Work
from nova_autopilot.engine.holds import (
    AWAITING_APPROVAL,
    HELD_PHASES,
    QUEUED,
    RELEASED_AT,
    Deadlines,
    ServerBusyElsewhere,
    ServerLocks,
    held_until,
    hold_state,
    occupies,
    plan,
)
from nova_autopilot.errors import BadMessage
from nova_autopilot.events import Event
from nova_autopilot.journal import (
    INITIAL_PHASE,
    Duplicate,
    Journal,
    JournalError,
    NewOperation,
    Operation,
    OperationFinished,
    StaleOperation,
    UnknownOperation,
)
from nova_autopilot.logs import bound, get_logger
from nova_autopilot.policies import PolicySet
from nova_autopilot.policies.model import Confirm, Policy

log = get_logger(__name__)

Publish = Callable[[Mapping[str, Any], "str | None", "str | None"], None]


class Holding:
    """The engine's held operations: recorded in their phase, tracked until they
    expire, released in turn, answered by operators."""

    def __init__(
        self,
        *,
        journal: Journal,
        policies: Callable[[], PolicySet],
        submit: Callable[[Work], None],
        recheck: Callable[[Policy, Operation, bool, datetime], guards.Verdict],
        take_trials: Callable[[tuple[str, ...], str, datetime], bool],
        report: Callable[[Operation], None],
        publish: Publish,
        result: Callable[[Operation], dict[str, Any]],
        duplicate: Callable[[str, str], None],
        global_approval: bool,
        approval_timeout_s: float,
        servers: ServerLocks | None = None,
        owner: str | None = None,
    ) -> None:
        """``submit`` hands an operation to the runner; ``recheck`` asks the guards
        again about a held operation (its policy, whether another operation occupies
        its server); ``take_trials`` makes it the trial of half-open breakers;
        ``report`` reports an operation that ended held;
        ``publish`` sends a result (to the results exchange, or to a ``reply_to``);
        ``result`` is an operation's result message; ``duplicate`` counts a
        repeated request; ``servers``: the per-server locks (those of the group
        when several daemons share the cloud); ``owner``: who claims, in the
        journal, the operations released to run (None: a single daemon)."""
        self._journal = journal
        self._policies = policies
        self._submit = submit
        self._recheck_guards = recheck
        self._take_trials = take_trials
        self._report = report
        self._publish = publish
        self._result = result
        self._duplicate = duplicate
        self._global_approval = global_approval
        self._approval_timeout = timedelta(seconds=approval_timeout_s)
        self._servers = servers or ServerLocks()
        self._owner = owner
        self._deadlines = Deadlines()

    @property
    def servers(self) -> ServerLocks:
        return self._servers

    def locked(
        self, server_ids: Iterable[str | None]
    ) -> contextlib.AbstractContextManager[frozenset[str]]:
        """Hold the servers' locks: decide on them without a release in between.
        Yields the servers whose lock another daemon holds."""
        return self._servers.held(server_ids)

    def claim(self, op_id: str, server_id: str | None, version: int, now: datetime) -> int | None:
        """Make the operation about to run this daemon's, its server's lock kept until
        it ends; its version then, or None when another daemon has it."""
        if not self._servers.keep(server_id):
            log.warning("operation.server_elsewhere", operation_id=op_id, server_id=server_id)
            return None
        if self._owner is None:
            return version
        claimed = self._journal.claim(op_id, owner=self._owner, now=now)
        if claimed is None:
            self._servers.drop(server_id)
            log.warning("operation.claimed_elsewhere", operation_id=op_id)
            return None
        return claimed.version

    def track(self, operation: Operation) -> bool:
        """At a restart: whether the operation is held (then its deadline is kept)."""
        if operation.phase not in HELD_PHASES:
            return False
        until = held_until(operation)
        if until is not None:
            self._deadlines.add(operation.id, until)
        return True

    def __len__(self) -> int:
        return len(self._deadlines)

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
            state = hold_state(until)
            return dataclasses.replace(new, phase=AWAITING_APPROVAL, state=state)
        return new

    def hold(self, operation: Operation, now: datetime) -> None:
        """Keep track of a held operation; announce one awaiting approval."""
        until = held_until(operation)
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
        result = self._result(operation) | {
            "outcome": AWAITING_APPROVAL,
            "approval_until": until.isoformat() if until else None,
            "plan": plan(operation),
        }
        self._publish(result, operation.correlation_id, None)
        if operation.reply_to:
            self._publish(result, operation.correlation_id, operation.reply_to)

    def _recheck(self, operation: Operation, now: datetime) -> guards.Verdict:
        """The guards again, for a held operation about to run: the server must be
        free of others (queued ones wait behind it), and every guard but loops and
        budgets (its share was taken when it was decided) must let it through."""
        policy = self._policies().by_name(operation.policy)
        if policy is None:
            return guards.Verdict("refuse", f"policy {operation.policy!r} is no longer loaded")
        others = [
            o
            for o in self._journal.in_flight(operation.server_id or "")
            if o.id != operation.id and occupies(o)
        ]
        verdict = self._recheck_guards(policy, operation, bool(others), now)
        if operation.phase == QUEUED:
            verdict = guards.approval(policy, verdict, global_approval=self._global_approval)
        wants_trial = verdict.decision == "run" and verdict.trials
        if wants_trial and not self._take_trials(verdict.trials, operation.id, now):
            reason = "breaker: half-open, another decision took the trial"
            log.warning("breaker.refused", action=operation.action, reason=reason)
            return guards.Verdict("refuse", reason, "breaker")
        return verdict

    def _release(self, operation: Operation, now: datetime) -> bool:
        """Let a held operation go on: run it, have it await approval, or end it
        as the guards now say. True when it occupies its server afterwards."""
        verdict = self._recheck(operation, now)
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
                self._run_held(operation, now)
                return True
            outcome = "dry_run" if verdict.decision == "dry_run" else "refused"
            self._end_held(operation, outcome, verdict.reason, now)
            return False

    def _run_held(self, operation: Operation, now: datetime) -> None:
        policy = self._policies().by_name(operation.policy)
        confirm = policy.confirm if policy else Confirm()
        state = {RELEASED_AT: now.isoformat()}
        started = self._journal.advance(
            operation.id,
            phase=INITIAL_PHASE,
            state=state,
            expect_version=operation.version,
            now=now,
        )
        version = self.claim(operation.id, operation.server_id, started.version, now)
        if version is None:
            return
        log.info("operation.started", action=operation.action, held=operation.phase)
        self._submit(
            Work(
                operation.id,
                operation.action,
                operation.params,
                confirm,
                now,
                None,
                state,
                version,
            )
        )

    def _end_held(
        self, operation: Operation, outcome: str, reason: str | None, now: datetime
    ) -> None:
        self._journal.finish(
            operation.id, outcome=outcome, reason=reason, expect_version=operation.version, now=now
        )
        self._report(self._journal.get(operation.id))

    def release_next(self, server_id: str | None, now: datetime) -> None:
        """Once nothing occupies the server, start its oldest queued operation
        (first come, first served); ones whose wait is over end expired."""
        if server_id is None:
            return
        with self._servers.held([server_id]) as elsewhere:
            if elsewhere:
                return  # the daemon that holds it releases the next when its operation ends
            waiting = self._journal.in_flight(server_id)
            if any(occupies(o) for o in waiting):
                return
            for operation in waiting:
                until = held_until(operation)
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
        self._end_held(operation, "expired", reason, now)

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
        with self._servers.held([operation.server_id]):
            operation = self._journal.get(op_id)
            until = held_until(operation)
            if operation.phase not in HELD_PHASES or operation.finished:
                return 0  # released or ended meanwhile
            if until is None or until > now:
                return 0  # held again since: its new moment has its own entry
            occupied = occupies(operation)
            self._expire(operation, now)
            if occupied:
                self.release_next(operation.server_id, now)
            return 1

    # -- an operator's decision: operation.approve, operation.reject -------

    def answer(
        self,
        event: Event,
        now: datetime,
        correlation_id: str | None,
        reply_to: str | None,
        *,
        check: Callable[[Operation, Event], None] | None = None,
        redelivered: bool = False,
    ) -> list[str]:
        """Apply an operator's decision; ``check`` may refuse it (raises
        ``BadMessage``) once the operation is known to await approval.
        A decision already taken is dropped when the bus delivers its copy
        again (``redelivered``), refused as ``replayed`` when it was published
        anew."""
        op_id = str(event.payload["operation_id"])
        key = event.dedupe_key or f"request:unkeyed:{uuid.uuid4().hex}"
        if self._journal.is_processed(key):
            self._repeated(event, key, op_id, None, redelivered=redelivered)
            return []
        try:
            operation = self._journal.get(op_id)
        except UnknownOperation:
            raise BadMessage("unknown_operation", f"there is no operation {op_id}") from None
        with self._servers.held([operation.server_id]) as elsewhere:
            if elsewhere:
                raise ServerBusyElsewhere(
                    f"another daemon runs an operation on server {operation.server_id}"
                )
            operation = self._journal.get(op_id)
            self._check_awaiting(operation, event)
            if check is not None:
                check(operation, event)
            accepted = self._journal.accept(message_key=key, now=now, fingerprint=event.fingerprint)
            if isinstance(accepted, Duplicate):
                self._repeated(event, key, op_id, accepted, redelivered=redelivered)
                return []
            try:
                decision = self._apply_decision(operation, event, now)
            except (OperationFinished, StaleOperation):
                # Ended (expired) between the check and the change: say so, like any late answer.
                current = self._journal.get(op_id)
                raise BadMessage(
                    "operation_finished",
                    f"operation {op_id} is no longer awaiting approval ({current.outcome})",
                ) from None
        if reply_to is not None:
            answer = self._result(self._journal.get(op_id)) | decision
            self._publish(answer, correlation_id, reply_to)
        return []

    def _repeated(
        self,
        event: Event,
        key: str,
        op_id: str,
        first: Duplicate | None,
        *,
        redelivered: bool,
    ) -> None:
        """A decision request whose id was taken before: drop the bus's copy of it,
        refuse (``replayed``) one published anew or saying something else."""
        other = first is not None and first.fingerprint not in (None, event.fingerprint)
        if redelivered and not other:
            self._duplicate(event.source, event.event_type)
            log.info("intake.duplicate", message_key=key)
            return
        when = f" at {first.first_seen_at.isoformat()}" if first is not None else ""
        if other:
            raise BadMessage(
                "replayed", f"request id {event.request_id} was used{when} for another request"
            )
        raise BadMessage(
            "replayed",
            f"request id {event.request_id} was accepted{when} "
            f"({self._decided(op_id, event.request_id)}); "
            "a copy published again is never carried out",
        )

    def _decided(self, op_id: str, request_id: str | None) -> str:
        """What became of the operation a decision request was about, and when
        the decision was taken, as the journal holds them now."""
        try:
            operation = self._journal.get(op_id)
        except UnknownOperation:
            return f"operation {op_id} pruned"
        taken = [
            s
            for s in self._journal.steps(op_id)
            if s.name in ("approved", "rejected") and s.detail.get("request_id") == request_id
        ]
        state = operation.outcome or f"in progress ({operation.phase})"
        if not taken:
            return f"operation {op_id}: {state}"
        return f"{taken[0].name} at {taken[0].at.isoformat()}; operation {op_id}: {state}"

    @staticmethod
    def _check_awaiting(operation: Operation, event: Event) -> None:
        if operation.finished:
            raise BadMessage(
                "operation_finished",
                f"operation {operation.id} already ended: {operation.outcome}",
            )
        if operation.phase != AWAITING_APPROVAL:
            raise BadMessage(
                "not_awaiting_approval",
                f"operation {operation.id} is not awaiting approval (phase {operation.phase})",
            )
        named = event.payload.get("server", {}).get("id")
        if named is not None and named != operation.server_id:
            raise BadMessage(
                "server_mismatch",
                f"operation {operation.id} is for server {operation.server_id}, not {named}",
            )

    def _apply_decision(self, operation: Operation, event: Event, now: datetime) -> dict[str, Any]:
        payload = event.payload
        verb = "approve" if event.event_type == "operation.approve" else "reject"
        who = str(payload.get("approved_by") or payload.get("requested_by") or "unknown")
        reason = payload.get("reason")
        detail = {"by": who, "reason": reason, "request_id": event.request_id}
        name = "approved" if verb == "approve" else "rejected"
        with bound(operation_id=operation.id, policy=operation.policy):
            if verb == "approve":
                log.info("operation.approved", by=who, reason=reason)
            else:
                log.info("operation.rejected", by=who, reason=reason)
            if verb == "reject":
                self._journal.finish(
                    operation.id,
                    outcome="rejected",
                    reason=f"rejected by {who}" + (f": {reason}" if reason else ""),
                    expect_version=operation.version,
                    now=now,
                )
                self._journal.record_step(operation.id, name=name, detail=detail, now=now)
                self._report(self._journal.get(operation.id))
                self.release_next(operation.server_id, now)
                return {"decision": verb, "by": who}
            verdict = self._recheck(operation, now)
            if verdict.decision == "run":
                self._journal.record_step(operation.id, name=name, detail=detail, now=now)
                self._run_held(operation, now)
                return {"decision": verb, "by": who}
            outcome = "dry_run" if verdict.decision == "dry_run" else "refused"
            self._journal.record_step(operation.id, name=name, detail=detail, now=now)
            self._end_held(operation, outcome, verdict.reason, now)
            self.release_next(operation.server_id, now)
            return {"decision": verb, "by": who}
