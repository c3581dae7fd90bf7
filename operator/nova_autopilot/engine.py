"""The engine: event -> wake waiters -> match -> guards -> journal -> runner.

:meth:`Engine.handle` is what the bus calls for every message. When it
returns, the message's decisions are in the journal and the bus may
acknowledge it; a duplicate (same message id, same request id) writes
nothing and is answered with the first copy's outcome. Only the engine
catches broadly: a failing operation ends in the journal, never in the bus.
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, Protocol

from nova_autopilot import guards, holds
from nova_autopilot.actions.boot import VERDICTS
from nova_autopilot.actions.runner import Done, Runner, Work
from nova_autopilot.errors import BadMessage
from nova_autopilot.events import Event
from nova_autopilot.events.request import OPERATION_TYPES
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
from nova_autopilot.policies import Match, PolicySet
from nova_autopilot.policies.model import Confirm, Policy
from nova_autopilot.tally import Tally

log = get_logger(__name__)


class Reporter(Protocol):
    """Where outcomes go (the bus's results publisher)."""

    def publish(
        self, result: Mapping[str, Any], *, correlation_id: str | None, reply_to: str | None
    ) -> None: ...


class NoReporter:
    def publish(
        self, result: Mapping[str, Any], *, correlation_id: str | None, reply_to: str | None
    ) -> None:
        return None


_GUARD_PREFIX = re.compile(r"^([a-z][a-z_]*):")


def refusing_guard(reason: str | None) -> str:
    """The guard a refusal's reason names: its ``name:`` prefix (cooldown,
    budget, parameters...), ``busy`` for an operation already in flight."""
    found = _GUARD_PREFIX.match(reason or "")
    if found:
        return found.group(1)
    return "busy" if "in flight" in (reason or "") else "other"


def _server_ref(match: Match, event: Event) -> tuple[str | None, str | None]:
    server = match.params.get("server")
    if isinstance(server, Mapping):
        return server.get("id") or None, server.get("name") or None
    if isinstance(server, str):
        return (server, None) if server == event.instance_id else (None, server)
    return event.instance_id, None


def _verdict_event(operation: Operation, event_type: str) -> Event:
    """What a finished boot verification tells the policies."""
    server_id = operation.server_id or operation.state.get("server_id")
    return Event(
        source="autopilot",
        format="verdict",
        event_type=event_type,
        payload={
            "server": {"id": server_id, "name": operation.state.get("server_name")},
            "reason": operation.reason,
            "operation_id": operation.id,
            "policy": operation.policy,
        },
        message_id=f"verdict:{operation.id}",
        instance_id=server_id,
        project_id=operation.project_id,
        timestamp=operation.finished_at,
    )


def result_of(operation: Operation, *, secrets: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The result message of a finished operation."""
    result: dict[str, Any] = {
        "operation_id": operation.id,
        "policy": operation.policy,
        "action": operation.action,
        "server_id": operation.server_id or operation.state.get("server_id"),
        "request_id": operation.request_id,
        "outcome": operation.outcome,
        "reason": operation.reason,
        "mode": operation.mode,
        "nova_requests": operation.nova_requests,
        "created_at": operation.created_at.isoformat(),
        "finished_at": operation.finished_at.isoformat() if operation.finished_at else None,
    }
    if secrets:
        result["secrets"] = dict(secrets)
    return result


class Engine:
    def __init__(
        self,
        *,
        policies: Callable[[], PolicySet],
        journal: Journal,
        runner: Runner,
        clock: Callable[[], datetime],
        reporter: Reporter | None = None,
        global_dry_run: bool = False,
        global_approval: bool = False,
        approval_timeout_s: float = 3600.0,
    ) -> None:
        self._policies = policies
        self._journal = journal
        self._runner = runner
        self._clock = clock
        self._reporter = reporter or NoReporter()
        self._global_dry_run = global_dry_run
        self.tally = Tally()
        self._global_approval = global_approval
        self._approval_timeout = timedelta(seconds=approval_timeout_s)
        self._servers = holds.ServerLocks()
        self._deadlines = holds.Deadlines()

    # -- intake -----------------------------------------------------------

    def handle(
        self, event: Event, *, correlation_id: str | None = None, reply_to: str | None = None
    ) -> list[str]:
        """Decide on one event; the ids of the operations it created."""
        now = self._clock()
        if event.source == "request" and event.event_type in OPERATION_TYPES:
            return self._on_operation_request(event, now, correlation_id, reply_to)
        self._runner.notify(event)
        matches = self._policies().match(event)
        self.tally.received(event.source, event.event_type, matched=bool(matches))
        if not matches and event.source == "request":
            raise BadMessage(
                "unknown_request", f"no policy handles requests of type {event.event_type}"
            )
        if not matches:
            return []  # nothing decided, nothing to record: a duplicate would change nothing
        with self._servers.held(_server_ref(m, event)[0] for m in matches):
            return self._decide(matches, event, now, correlation_id, reply_to)

    def _decide(
        self,
        matches: list[Match],
        event: Event,
        now: datetime,
        correlation_id: str | None,
        reply_to: str | None,
    ) -> list[str]:
        """Plan, record and start the decisions of one event (its servers locked)."""
        plans = [self._plan(m, event, now, correlation_id, reply_to) for m in matches]
        key = event.dedupe_key or f"{event.source}:unkeyed:{uuid.uuid4().hex}"
        accepted = self._journal.accept(
            message_key=key, operations=[new for new, _, _ in plans], now=now
        )
        if isinstance(accepted, Duplicate):
            self.tally.duplicate(event.source)
            log.info("intake.duplicate", message_key=key, first_seen_at=str(accepted.first_seen_at))
            self._answer_duplicate(accepted, correlation_id, reply_to)
            return []
        for new, verdict, match in plans:
            self._start(new, verdict, match, now)
        return [new.id for new, _, _ in plans]

    def _plan(
        self,
        match: Match,
        event: Event,
        now: datetime,
        correlation_id: str | None,
        reply_to: str | None,
    ) -> tuple[NewOperation, guards.Verdict, Match]:
        policy = match.policy
        server_id, server_name = _server_ref(match, event)
        if match.error:
            verdict = guards.Verdict("refuse", f"parameters: {match.error}")
        else:
            facts = self._facts(policy, server_id, now)
            verdict = guards.decide(policy, facts, now=now, global_dry_run=self._global_dry_run)
            verdict = guards.hold(
                policy,
                facts,
                verdict,
                now=now,
                global_dry_run=self._global_dry_run,
                global_approval=self._global_approval,
            )
        new = NewOperation(
            policy=policy.name,
            action=match.action,
            project_id=event.project_id,
            server_id=server_id,
            server_name=server_name,
            params=dict(match.params),
            mode="dry-run" if verdict.decision == "dry_run" else "enforce",
            event=event.as_dict(),
            why=f"{event.event_type} matched {', '.join(policy.when.events)}"
            + (f" where {policy.when.condition}" if policy.when.condition else ""),
            request_id=event.request_id if event.source == "request" else None,
            correlation_id=correlation_id,
            reply_to=reply_to,
            deadline_at=now + timedelta(seconds=policy.confirm.timeout_s),
        )
        return self._held_new(new, verdict, policy, now), verdict, match

    def _facts(self, policy: Policy, server_id: str | None, now: datetime) -> guards.Facts:
        if server_id is None:
            return guards.Facts(server_busy=False, last_acted_at=None, used_budget=0)
        last = None
        if policy.limits.cooldown_s:
            last = self._journal.last_finished(
                server_id=server_id, policy=policy.name, exclude_outcomes=guards.NOT_ACTED
            )
        window = guards.budget_window_start(policy, now)
        used = 0
        if window is not None:
            used = self._journal.count(
                since=window, policy=policy.name, exclude_outcomes=guards.NOT_ACTED
            )
        return guards.Facts(
            server_busy=bool(self._journal.in_flight(server_id)),
            last_acted_at=(last.finished_at or last.created_at) if last else None,
            used_budget=used,
        )

    def _start(
        self, new: NewOperation, verdict: guards.Verdict, match: Match, now: datetime
    ) -> None:
        guard = refusing_guard(verdict.reason) if verdict.decision == "refuse" else None
        outcome = "refused" if verdict.decision == "refuse" else verdict.decision
        self.tally.decided(new.policy, outcome, guard=guard)
        with bound(operation_id=new.id, policy=new.policy, server_id=new.server_id):
            if verdict.decision == "run":
                log.info("operation.started", action=new.action)
                self._runner.submit(Work(new.id, new.action, new.params, match.policy.confirm, now))
                return
            if verdict.decision in ("queue", "await_approval"):
                self._hold(self._journal.get(new.id), now)
                return
            outcome = "dry_run" if verdict.decision == "dry_run" else "refused"
            self._journal.finish(new.id, outcome=outcome, reason=verdict.reason, now=now)
            self._report(self._journal.get(new.id), {}, ran=False)

    def _answer_duplicate(
        self, duplicate: Duplicate, correlation_id: str | None, reply_to: str | None
    ) -> None:
        if reply_to is None:
            return
        for op_id in duplicate.operation_ids:
            operation = self._journal.get(op_id)
            result = result_of(operation) | {"duplicate": True}
            self._reporter.publish(result, correlation_id=correlation_id, reply_to=reply_to)

    # -- outcomes ---------------------------------------------------------

    def on_done(self, done: Done) -> None:
        """The runner's callback when an operation ends."""
        operation = self._journal.get(done.op_id)
        self._report(operation, done.secrets, ran=True)
        self._release_next(operation.server_id, self._clock())
        verdict = (
            VERDICTS.get(operation.outcome or "") if operation.action == "verify_boot" else None
        )
        if verdict is not None:
            self.handle(_verdict_event(operation, verdict))

    def _report(self, operation: Operation, secrets: Mapping[str, str], *, ran: bool) -> None:
        duration = (
            (operation.finished_at - operation.created_at).total_seconds()
            if operation.finished_at
            else None
        )
        self.tally.finished(
            operation.action, str(operation.outcome), duration_s=duration if ran else None
        )
        log.info(
            f"{operation.action}.{operation.outcome}",
            operation_id=operation.id,
            policy=operation.policy,
            server_id=operation.server_id or operation.state.get("server_id"),
            reason=operation.reason,
            nova_requests=operation.nova_requests,
            duration_s=duration,
        )
        self._reporter.publish(
            result_of(operation),
            correlation_id=operation.correlation_id,
            reply_to=None,
        )
        if operation.reply_to:
            self._reporter.publish(
                result_of(operation, secrets=secrets),
                correlation_id=operation.correlation_id,
                reply_to=operation.reply_to,
            )

    # -- restart ----------------------------------------------------------

    def resume(self) -> int:
        """Hand every unfinished operation of the journal back to the runner."""
        works = []
        held: set[str | None] = set()
        for operation in self._journal.unfinished():
            if operation.phase in holds.HELD_PHASES:
                until = holds.held_until(operation)
                if until is not None:
                    self._deadlines.add(operation.id, until)
                held.add(operation.server_id)
                continue
            policy = self._policies().by_name(operation.policy)
            confirm = policy.confirm if policy else Confirm()
            works.append(
                Work(
                    operation.id,
                    operation.action,
                    operation.params,
                    confirm,
                    holds.released_at(operation) or operation.created_at,
                    operation.phase if operation.phase != INITIAL_PHASE else None,
                    operation.state,
                    operation.version,
                )
            )
        count = self._runner.resume(works)
        log.info("operations.resumed", count=count, held=len(self._deadlines))
        now = self._clock()
        for server_id in held:
            self._release_next(server_id, now)
        return count

    # -- held operations: queued behind the server, awaiting approval ------

    def _held_new(
        self, new: NewOperation, verdict: guards.Verdict, policy: Policy, now: datetime
    ) -> NewOperation:
        """A decision that waits is recorded in its waiting phase, in the same
        transaction as the decision: a crash can never let it run unheld."""
        if verdict.decision == "queue":
            until = now + timedelta(seconds=policy.limits.max_wait_s)
            return dataclasses.replace(new, phase=holds.QUEUED, state=holds.hold_state(until))
        if verdict.decision == "await_approval":
            until = now + self._approval_timeout
            state = holds.hold_state(until)
            return dataclasses.replace(new, phase=holds.AWAITING_APPROVAL, state=state)
        return new

    def _hold(self, operation: Operation, now: datetime) -> None:
        """Keep track of a held operation; announce one awaiting approval."""
        until = holds.held_until(operation)
        if until is not None:
            self._deadlines.add(operation.id, until)
        if operation.phase == holds.QUEUED:
            log.info("operation.queued", action=operation.action, until=str(until))
            self._release_next(operation.server_id, now)  # its predecessor may be gone already
            return
        self._journal.record_step(
            operation.id, name=holds.AWAITING_APPROVAL, detail=holds.plan(operation), now=now
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
            "outcome": holds.AWAITING_APPROVAL,
            "approval_until": until.isoformat() if until else None,
            "plan": holds.plan(operation),
        }
        self._reporter.publish(result, correlation_id=operation.correlation_id, reply_to=None)
        if operation.reply_to:
            self._reporter.publish(
                result, correlation_id=operation.correlation_id, reply_to=operation.reply_to
            )

    def _recheck(self, operation: Operation, now: datetime) -> guards.Verdict:
        """The guards again, for a held operation about to run: the server must be
        free of others (queued ones wait behind it), the cooldown past; its budget
        share was taken when it was decided (a held operation counts)."""
        policy = self._policies().by_name(operation.policy)
        if policy is None:
            return guards.Verdict("refuse", f"policy {operation.policy!r} is no longer loaded")
        facts = self._facts(policy, operation.server_id, now)
        others = [
            o
            for o in self._journal.in_flight(operation.server_id or "")
            if o.id != operation.id and holds.occupies(o)
        ]
        facts = dataclasses.replace(facts, server_busy=bool(others), used_budget=0)
        verdict = guards.decide(policy, facts, now=now, global_dry_run=self._global_dry_run)
        if operation.phase == holds.QUEUED:
            verdict = guards.approval(policy, verdict, global_approval=self._global_approval)
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
                    phase=holds.AWAITING_APPROVAL,
                    state=holds.hold_state(until),
                    expect_version=operation.version,
                    now=now,
                )
                self._hold(held, now)
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
        state = {holds.RELEASED_AT: now.isoformat()}
        started = self._journal.advance(
            operation.id,
            phase=INITIAL_PHASE,
            state=state,
            expect_version=operation.version,
            now=now,
        )
        log.info("operation.started", action=operation.action, held=operation.phase)
        self._runner.submit(
            Work(
                operation.id,
                operation.action,
                operation.params,
                confirm,
                now,
                None,
                state,
                started.version,
            )
        )

    def _end_held(
        self, operation: Operation, outcome: str, reason: str | None, now: datetime
    ) -> None:
        self._journal.finish(
            operation.id, outcome=outcome, reason=reason, expect_version=operation.version, now=now
        )
        self._report(self._journal.get(operation.id), {}, ran=False)

    def _release_next(self, server_id: str | None, now: datetime) -> None:
        """Once nothing occupies the server, start its oldest queued operation
        (first come, first served); ones whose wait is over end expired."""
        if server_id is None:
            return
        with self._servers.held([server_id]):
            waiting = self._journal.in_flight(server_id)
            if any(holds.occupies(o) for o in waiting):
                return
            for operation in waiting:
                until = holds.held_until(operation)
                if until is not None and until <= now:
                    self._expire(operation, now)
                elif self._release(operation, now):
                    return

    def _expire(self, operation: Operation, now: datetime) -> None:
        if operation.phase == holds.QUEUED:
            reason = "expired: the server was still busy at the end of the policy's max_wait"
        else:
            reason = "expired: no approval in time"
        self._journal.record_step(operation.id, name="expired", detail={}, now=now)
        self._end_held(operation, "expired", reason, now)

    def expire_due(self, now: datetime | None = None) -> int:
        """End the held operations whose time is over; how many. The daemon calls
        it every second."""
        now = now or self._clock()
        ended = 0
        for op_id in self._deadlines.due(now):
            try:
                ended += self._expire_one(op_id, now)
            except UnknownOperation:
                continue  # pruned meanwhile
            except JournalError as exc:  # the database is away: try again at the next turn
                log.warning("operation.expiry_failed", operation_id=op_id, error=str(exc))
                self._deadlines.add(op_id, now)
        return ended

    def _expire_one(self, op_id: str, now: datetime) -> int:
        operation = self._journal.get(op_id)
        with self._servers.held([operation.server_id]):
            operation = self._journal.get(op_id)
            until = holds.held_until(operation)
            if operation.phase not in holds.HELD_PHASES or operation.finished:
                return 0  # released or ended meanwhile
            if until is None or until > now:
                return 0  # held again since: its new moment has its own entry
            occupied = holds.occupies(operation)
            self._expire(operation, now)
            if occupied:
                self._release_next(operation.server_id, now)
            return 1

    # -- an operator's decision: operation.approve, operation.reject -------

    def _on_operation_request(
        self, event: Event, now: datetime, correlation_id: str | None, reply_to: str | None
    ) -> list[str]:
        self.tally.received(event.source, event.event_type, matched=True)
        op_id = str(event.payload["operation_id"])
        key = event.dedupe_key or f"request:unkeyed:{uuid.uuid4().hex}"
        if self._journal.is_processed(key):
            self.tally.duplicate(event.source)
            log.info("intake.duplicate", message_key=key)
            return []
        try:
            operation = self._journal.get(op_id)
        except UnknownOperation:
            raise BadMessage("unknown_operation", f"there is no operation {op_id}") from None
        with self._servers.held([operation.server_id]):
            operation = self._journal.get(op_id)
            self._check_awaiting(operation, event)
            if isinstance(self._journal.accept(message_key=key, now=now), Duplicate):
                self.tally.duplicate(event.source)
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
            answer = result_of(self._journal.get(op_id)) | decision
            self._reporter.publish(answer, correlation_id=correlation_id, reply_to=reply_to)
        return []

    @staticmethod
    def _check_awaiting(operation: Operation, event: Event) -> None:
        if operation.finished:
            raise BadMessage(
                "operation_finished",
                f"operation {operation.id} already ended: {operation.outcome}",
            )
        if operation.phase != holds.AWAITING_APPROVAL:
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
                self._report(self._journal.get(operation.id), {}, ran=False)
                self._release_next(operation.server_id, now)
                return {"decision": verb, "by": who}
            verdict = self._recheck(operation, now)
            if verdict.decision == "run":
                self._journal.record_step(operation.id, name=name, detail=detail, now=now)
                self._run_held(operation, now)
                return {"decision": verb, "by": who}
            outcome = "dry_run" if verdict.decision == "dry_run" else "refused"
            self._journal.record_step(operation.id, name=name, detail=detail, now=now)
            self._end_held(operation, outcome, verdict.reason, now)
            self._release_next(operation.server_id, now)
            return {"decision": verb, "by": who}
