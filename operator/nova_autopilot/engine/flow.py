"""The engine: event -> wake waiters -> match -> identity -> guards -> journal -> runner.

:meth:`Engine.handle` is what the bus calls for every message. When it
returns, the message's decisions are in the journal and the bus may
acknowledge it. A copy the bus delivers again (``redelivered``: the
broker's redelivery, or the bus's own delayed retry) writes nothing: a
notification is dropped, a request answered with the first copy's outcome.
A request whose id was already accepted is refused as ``replayed`` when its
copy was published anew (an exact copy sent again, by its sender or by
someone who caught it) or says something else (another body or key). A
request its key may not have done (the action, the flavor, the server's
project) is refused as ``not_authorized`` before anything is recorded, all
of it if any of its decisions is. Those refusals are ``BadMessage``: the
bus dead-letters them with the reason. Only the engine catches broadly: a
failing operation ends in the journal, never in the bus.

One identity per server: a decision about a server named by its name is
made about Nova's id for it, found once before the server's lock, the guards
and the journal (:meth:`Engine._identify`), so the cooldown, busy, loop and
concurrency guards, the locks and ``history --server`` see one server
whichever way it was named. A name Nova does not know is refused as
``unknown_server``, a name several servers share as ``ambiguous_server``.

Group commit: :meth:`Engine.handle_many` decides the messages the bus has at
hand together, as :meth:`Engine.handle` would one after the other, with one
read of the facts the guards need (a :class:`~.facts.Ledger`, which counts
each decision of the batch for the next) and one journal transaction, whose
commit makes all of them durable before the bus acknowledges any. A request
is decided on its own, in its turn: it is authorised and may be a replay.
"""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from nova_autopilot import guards
from nova_autopilot.actions.boot import VERDICTS
from nova_autopilot.actions.runner import Done, Runner, Work
from nova_autopilot.cloud import ServerState
from nova_autopilot.coordination import Coordinator
from nova_autopilot.engine.approvals import Approvals, Authorizer, authorize
from nova_autopilot.engine.conduct import (
    Conductor,
    NoReporter,
    Reporter,
    announce_refusal,
    result_of,
)
from nova_autopilot.engine.facts import Ledger
from nova_autopilot.engine.holds import Holds
from nova_autopilot.engine.locks import ServerLocks
from nova_autopilot.engine.tally import Tally
from nova_autopilot.errors import Ambiguous, BadMessage, NotFound
from nova_autopilot.events import Event
from nova_autopilot.events.request import OPERATION_TYPES
from nova_autopilot.journal import (
    INITIAL_PHASE,
    Accepted,
    Duplicate,
    Journal,
    NewMessage,
    NewOperation,
    Operation,
    StateKey,
    UnknownOperation,
)
from nova_autopilot.logs import bound, get_logger
from nova_autopilot.policies import Match, PolicySet
from nova_autopilot.policies.model import Confirm

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Incoming:
    """A message for :meth:`Engine.handle_many`: its event and how it came."""

    event: Event
    correlation_id: str | None = None
    reply_to: str | None = None
    redelivered: bool = False


#: What :meth:`Engine.handle_many` says of each message: the ids of the operations it
#: created, or what :meth:`Engine.handle` would have raised for it.
Handled = list[str] | Exception


@dataclass(slots=True)
class _Turn:
    """A batch waiting for the decision lock, its servers locked by its thread;
    whichever thread takes the lock first records it with the others waiting."""

    batch: list[_Pending]
    elsewhere: frozenset[str]
    accepted: list[Accepted | Duplicate] | None = None
    failure: Exception | None = None
    now: datetime = datetime.min


@dataclass(slots=True)
class _Pending:
    """A message of a batch, matched and about to be decided."""

    index: int
    item: Incoming
    matches: list[Match]
    key: str
    plans: list[tuple[NewOperation, guards.Verdict, Match]] = dataclasses.field(
        default_factory=list
    )


class ServerFinder(Protocol):
    """Where a server named by its name is found (the cloud)."""

    def find_server(self, ref: str | Mapping[str, str]) -> ServerState: ...


def _server_ref(match: Match, event: Event) -> tuple[str | None, str | None]:
    server = match.params.get("server")
    if type(server) is dict or isinstance(server, Mapping):  # a dict without the ABC's check
        return server.get("id") or None, server.get("name") or None
    if isinstance(server, str):
        return (server, None) if server == event.instance_id else (None, server)
    return event.instance_id, None


def _placement(event: Event) -> tuple[str | None, str | None]:
    """The compute host and availability zone of the event's server, when it says them:
    an instance notification's payload carries both (``host`` is None before scheduling),
    and so does a sweep's."""
    if event.source not in ("nova", "sweep"):
        return None, None
    payload = event.payload
    host, zone = payload.get("host"), payload.get("availability_zone")
    return (
        host if isinstance(host, str) and host else None,
        zone if isinstance(zone, str) and zone else None,
    )


def _verdict_event(operation: Operation, event_type: str) -> Event:
    """What a finished boot verification tells the policies."""
    server_id = operation.server_ref
    return Event(
        source="autopilot",
        format="verdict",
        event_type=event_type,
        payload={
            "server": {"id": server_id, "name": operation.state.get(StateKey.SERVER_NAME)},
            "reason": operation.reason,
            "operation_id": operation.id,
            "policy": operation.policy,
        },
        message_id=f"verdict:{operation.id}",
        instance_id=server_id,
        project_id=operation.project_id,
        timestamp=operation.finished_at,
    )


class Engine:
    def __init__(
        self,
        *,
        policies: Callable[[], PolicySet],
        journal: Journal,
        runner: Runner,
        clock: Callable[[], datetime],
        reporter: Reporter | None = None,
        guard_settings: guards.GuardSettings | None = None,
        global_approval: bool = False,
        approval_timeout_s: float = 3600.0,
        authorizer: Authorizer | None = None,
        coordinator: Coordinator | None = None,
        lock_wait_s: float = 10.0,
        servers: ServerFinder | None = None,
    ) -> None:
        """``coordinator``: the group of daemons sharing the cloud (None or a single
        one: this daemon alone); its locks become the per-server locks, and the
        operations this daemon runs are claimed in the journal by its member id.
        ``servers``: where a server named by its name is found (None: names are
        left to the action, which finds the server when it runs)."""
        self._servers = servers
        self._policies = policies
        self._journal = journal
        self._runner = runner
        self._clock = clock
        self._authorizer = authorizer
        self._guards = guard_settings or guards.GuardSettings()
        # Guards count what the journal holds: deciding and recording happen under one
        # lock, so concurrent messages cannot both take the last unit of a budget.
        self._deciding = threading.Lock()
        # Batches waiting for the decision lock: recorded together (group commit).
        self._turns: list[_Turn] = []
        self._turns_lock = threading.Lock()
        self._global_approval = global_approval
        self.tally = Tally()
        self.locks = ServerLocks(
            coordinator=coordinator,
            occupied=lambda server_id: any(o.occupies for o in journal.in_flight(server_id)),
            wait_s=lock_wait_s,
        )
        self._conductor = Conductor(
            journal=journal,
            runner=runner,
            policies=policies,
            guard_settings=self._guards,
            reporter=reporter or NoReporter(),
            tally=self.tally,
            locks=self.locks,
            owner=None if coordinator is None or coordinator.single else coordinator.member_id,
        )
        self.holds = Holds(
            conductor=self._conductor,
            global_approval=global_approval,
            approval_timeout_s=approval_timeout_s,
        )
        self._approvals = Approvals(
            conductor=self._conductor, holds=self.holds, authorizer=authorizer
        )

    # -- intake -----------------------------------------------------------

    def handle(
        self,
        event: Event,
        *,
        correlation_id: str | None = None,
        reply_to: str | None = None,
        redelivered: bool = False,
    ) -> list[str]:
        """Decide on one event; the ids of the operations it created.

        ``redelivered``: the bus delivers this copy again (the broker's
        redelivery or the bus's delayed retry, :attr:`Delivery.repeated
        <nova_autopilot.bus.Delivery.repeated>`), so a request already accepted
        is answered, not refused as ``replayed``."""
        now = self._clock()
        if event.source == "request" and event.event_type in OPERATION_TYPES:
            self.tally.received(event.source, event.event_type, matched=True)
            return self._approvals.answer(
                event, now, correlation_id, reply_to, redelivered=redelivered
            )
        self._runner.notify(event)
        matches = self._policies().match(event)
        self.tally.received(event.source, event.event_type, matched=bool(matches))
        if not matches and event.source == "request":
            raise BadMessage(
                "unknown_request", f"no policy handles requests of type {event.event_type}"
            )
        if not matches:
            return []  # nothing decided, nothing to record: a duplicate would change nothing
        key = event.dedupe_key or f"{event.source}:unkeyed:{uuid.uuid4().hex}"
        if event.source == "request" and self._journal.is_processed(key):
            # A copy of a request already decided (or one reusing its id): the first
            # decision stands; the journal says which, without asking Nova again.
            accepted = self._journal.accept(message_key=key, now=now, fingerprint=event.fingerprint)
            return self._repeated(accepted, event, key, correlation_id, reply_to, redelivered)
        # Nova is asked (who may, which server) before any lock is taken.
        self._authorize(matches, event)
        matches = [self._identify(m, event) for m in matches]
        with self.locks.held(_server_ref(m, event)[0] for m in matches) as elsewhere:
            return self._decide(
                matches,
                event,
                key,
                now,
                correlation_id,
                reply_to,
                elsewhere,
                redelivered=redelivered,
            )

    def handle_many(self, items: Sequence[Incoming]) -> list[Handled]:
        """Decide on several messages as :meth:`handle` would one after the other, in
        one journal transaction (group commit); what became of each, in order. When
        the batch cannot be decided together (the journal refuses the write, a lock
        is out of reach), each message is decided on its own."""
        outcomes: list[Handled | None] = [None] * len(items)
        batch: list[_Pending] = []
        for index, item in enumerate(items):
            if item.event.source == "request":
                self._decide_together(batch, outcomes)
                batch = []
                outcomes[index] = self._handle_one(item)
                continue
            try:
                pending = self._matched(index, item)
            except Exception as exc:  # noqa: BLE001 - this message's outcome, not the batch's
                outcomes[index] = exc
                continue
            if pending is None:
                outcomes[index] = []
            else:
                batch.append(pending)
        self._decide_together(batch, outcomes)
        return [[] if outcome is None else outcome for outcome in outcomes]

    def handle_events(self, events: Sequence[Event]) -> list[Handled]:
        """:meth:`handle_many` for events that came through no queue (a sweep's)."""
        return self.handle_many([Incoming(event) for event in events])

    def _handle_one(self, item: Incoming) -> Handled:
        try:
            return self.handle(
                item.event,
                correlation_id=item.correlation_id,
                reply_to=item.reply_to,
                redelivered=item.redelivered,
            )
        except Exception as exc:  # noqa: BLE001 - what the caller classifies
            return exc

    def _matched(self, index: int, item: Incoming) -> _Pending | None:
        """:meth:`handle` up to the decision: waiters woken, policies matched, servers
        named by Nova's id. None when no policy matches."""
        event = item.event
        self._runner.notify(event)
        matches = self._policies().match(event)
        self.tally.received(event.source, event.event_type, matched=bool(matches))
        if not matches:
            return None
        matches = [self._identify(m, event) for m in matches]
        key = event.dedupe_key or f"{event.source}:unkeyed:{uuid.uuid4().hex}"
        return _Pending(index, item, matches, key)

    def _decide_together(self, batch: list[_Pending], outcomes: list[Handled | None]) -> None:
        """Plan, record (one transaction) and start the decisions of ``batch``."""
        if not batch:
            return
        servers = {_server_ref(m, p.item.event)[0] for p in batch for m in p.matches}
        recorded = False
        try:
            with self.locks.held(servers) as elsewhere:
                turn = _Turn(batch, elsewhere)
                with self._turns_lock:
                    self._turns.append(turn)
                with self._deciding:
                    if turn.accepted is None and turn.failure is None:
                        self._record_turns()
                if turn.failure is not None:
                    raise turn.failure
                assert turn.accepted is not None
                recorded = True
                self._start_together(batch, turn.accepted, turn.now, outcomes)
        except Exception as exc:  # noqa: BLE001 - each message then has its own outcome
            if recorded:  # started; only letting the locks go failed
                log.error("engine.batch_unlock_failed", error=f"{type(exc).__name__}: {exc}")
                for pending in batch:
                    if outcomes[pending.index] is None:
                        outcomes[pending.index] = exc
                return
            # Nothing recorded: each message on its own, as it would have come.
            log.warning(
                "engine.batch_undecided",
                messages=len(batch),
                error=f"{type(exc).__name__}: {exc}",
            )
            for pending in batch:
                outcomes[pending.index] = self._handle_decided(pending)

    def _record_turns(self) -> None:
        """Decide every batch waiting for the decision lock (this thread's and those
        other threads queued meanwhile, their servers locked by them) in one journal
        transaction: a group commit. Each batch gets its outcomes, or the failure."""
        with self._turns_lock:
            turns, self._turns = self._turns, []
        batch = [pending for turn in turns for pending in turn.batch]
        elsewhere = frozenset().union(*(turn.elsewhere for turn in turns))
        now = self._clock()
        try:
            accepted = self._record_together(batch, now, elsewhere)
        except Exception as exc:  # noqa: BLE001 - each batch's owner falls back
            for turn in turns:
                turn.failure = exc
            return
        offset = 0
        for turn in turns:
            turn.now = now
            turn.accepted = accepted[offset : offset + len(turn.batch)]
            offset += len(turn.batch)

    def _start_together(
        self,
        batch: list[_Pending],
        accepted: list[Accepted | Duplicate],
        now: datetime,
        outcomes: list[Handled | None],
    ) -> None:
        """Start or report what each message of a recorded batch decided."""
        for pending, outcome in zip(batch, accepted, strict=True):
            outcomes[pending.index] = self._settle(pending, outcome, now)

    def _record_together(
        self, batch: list[_Pending], now: datetime, elsewhere: frozenset[str]
    ) -> list[Accepted | Duplicate]:
        """Plan every new message of ``batch`` against one :class:`Ledger`, each
        decision counted for the next, and accept them all in one transaction."""
        with self._journal.reading():  # the batch's facts, read in one transaction
            known = self._journal.processed({p.key for p in batch})
            seen = dict(known)
            ledger = Ledger(
                self._journal,
                (s for p in batch for m in p.matches if (s := _server_ref(m, p.item.event)[0])),
            )
            for pending in batch:
                pending.plans.clear()
                if pending.key in seen:
                    continue  # a copy: nothing to decide, the journal says what the first led to
                seen[pending.key] = Duplicate(pending.key, now, ())
                item = pending.item
                for match in pending.matches:
                    plan = self._plan(
                        match,
                        item.event,
                        now,
                        item.correlation_id,
                        item.reply_to,
                        elsewhere,
                        ledger=ledger,
                    )
                    pending.plans.append(plan)
                for new, _, _ in pending.plans:  # one message's decisions do not see each other
                    ledger.record(new, now)
        fresh = [p for p in batch if p.key not in known]
        accepted = iter(
            self._journal.accept_many(
                [
                    NewMessage(p.key, tuple(new for new, _, _ in p.plans), p.item.event.fingerprint)
                    for p in fresh
                ],
                now=now,
            )
        )
        return [known[p.key] if p.key in known else next(accepted) for p in batch]

    def _settle(
        self,
        pending: _Pending,
        accepted: Accepted | Duplicate,
        now: datetime,
    ) -> Handled:
        """Start what one message of a batch decided, or drop it as a copy."""
        item = pending.item
        try:
            if isinstance(accepted, Duplicate):
                return self._repeated(
                    accepted,
                    item.event,
                    pending.key,
                    item.correlation_id,
                    item.reply_to,
                    item.redelivered,
                )
            recorded = {operation.id: operation for operation in accepted.operations}
            for new, verdict, _ in pending.plans:
                self._start(new, verdict, now, recorded.get(new.id))
            return [new.id for new, _, _ in pending.plans]
        except Exception as exc:  # noqa: BLE001 - this message's outcome, not the batch's
            return exc

    def _handle_decided(self, pending: _Pending) -> Handled:
        """One message of a batch that could not be decided together, decided alone
        (matched and identified already)."""
        item = pending.item
        pending.plans.clear()
        try:
            now = self._clock()
            servers = (_server_ref(m, item.event)[0] for m in pending.matches)
            with self.locks.held(servers) as elsewhere:
                return self._decide(
                    pending.matches,
                    item.event,
                    pending.key,
                    now,
                    item.correlation_id,
                    item.reply_to,
                    elsewhere,
                    redelivered=item.redelivered,
                )
        except Exception as exc:  # noqa: BLE001 - what the caller classifies
            return exc

    def _identify(self, match: Match, event: Event) -> Match:
        """The match with its server named by Nova's id: a server the policy names
        only by its name is found once, here (a temporary failure of Nova propagates:
        the bus tries the message again)."""
        server_id, name = _server_ref(match, event)
        if server_id is not None or name is None or match.error or self._servers is None:
            return match
        try:
            found = self._servers.find_server({"name": name})
        except Ambiguous:
            raise BadMessage(
                "ambiguous_server",
                f"several servers are named {name!r} in Nova: name the server by its id",
            ) from None
        except NotFound:
            raise BadMessage("unknown_server", f"Nova has no server named {name!r}") from None
        server = {"id": found.id, "name": found.name or name}
        return dataclasses.replace(match, params={**match.params, "server": server})

    def _decide(
        self,
        matches: list[Match],
        event: Event,
        key: str,
        now: datetime,
        correlation_id: str | None,
        reply_to: str | None,
        elsewhere: frozenset[str] = frozenset(),
        *,
        redelivered: bool = False,
    ) -> list[str]:
        """Plan, record and start the decisions of one event (its servers locked; those
        ``elsewhere`` are held by another daemon, whose operation runs there: busy)."""
        with self._deciding:
            plans = [
                self._plan(m, event, now, correlation_id, reply_to, elsewhere) for m in matches
            ]
            accepted = self._journal.accept(
                message_key=key,
                operations=[new for new, _, _ in plans],
                now=now,
                fingerprint=event.fingerprint,
            )
        if isinstance(accepted, Duplicate):
            return self._repeated(accepted, event, key, correlation_id, reply_to, redelivered)
        for new, verdict, _ in plans:
            self._start(new, verdict, now)
        return [new.id for new, _, _ in plans]

    def _repeated(
        self,
        accepted: Accepted | Duplicate,
        event: Event,
        key: str,
        correlation_id: str | None,
        reply_to: str | None,
        redelivered: bool,
    ) -> list[str]:
        """A message whose key the journal holds already: a copy the bus delivers
        again is dropped (a request's asker answered with the first outcome); a
        request published anew, or another one reusing its id, is refused."""
        if isinstance(accepted, Duplicate):
            if accepted.fingerprint not in (None, event.fingerprint):
                raise BadMessage(
                    "replayed",
                    f"request id {event.request_id} was used at "
                    f"{accepted.first_seen_at.isoformat()} for another request",
                )
            if event.source == "request" and not redelivered:
                raise BadMessage(
                    "replayed",
                    f"request id {event.request_id} was accepted at "
                    f"{accepted.first_seen_at.isoformat()} ({self._so_far(accepted)}); "
                    "a copy published again is never carried out",
                )
            self.tally.duplicate(event.source, event.event_type)
            log.info("intake.duplicate", message_key=key, first_seen_at=str(accepted.first_seen_at))
            self._answer_duplicate(accepted, correlation_id, reply_to)
        return []

    def _plan(
        self,
        match: Match,
        event: Event,
        now: datetime,
        correlation_id: str | None,
        reply_to: str | None,
        elsewhere: frozenset[str] = frozenset(),
        *,
        ledger: Ledger | None = None,
    ) -> tuple[NewOperation, guards.Verdict, Match]:
        policy = match.policy
        server_id, server_name = _server_ref(match, event)
        host, zone = _placement(event)
        if server_id is not None and (host is None or zone is None):
            known = ledger.placement if ledger is not None else self._journal.placement
            known_host, known_zone = known(server_id)
            host, zone = host or known_host, zone or known_zone
        if match.error:
            verdict = guards.Verdict("refuse", f"parameters: {match.error}", "parameters")
        else:
            facts = self._conductor.facts(
                policy=policy.name,
                server_id=server_id,
                project_id=event.project_id,
                host=host,
                availability_zone=zone,
                busy=True if server_id in elsewhere else None,
                source=ledger,
            )
            verdict = guards.decide_or_wait(
                policy,
                guards.for_policy(policy, self._guards),
                self._guards,
                facts,
                now=now,
                has_server=server_id is not None,
                global_approval=self._global_approval,
            )
        # A refusal or a dry run is final as decided: recorded finished, in one write.
        final = {"refuse": "refused", "dry_run": "dry_run"}.get(verdict.decision)
        new = NewOperation(
            policy=policy.name,
            action=match.action,
            project_id=event.project_id,
            server_id=server_id,
            server_name=server_name,
            host=host,
            availability_zone=zone,
            params=dict(match.params),
            mode="dry-run" if verdict.decision == "dry_run" else "enforce",
            event=event.as_dict(),
            why=f"{event.event_type} matched {policy.when.summary}",
            request_id=event.request_id if event.source == "request" else None,
            correlation_id=correlation_id,
            reply_to=reply_to,
            deadline_at=now + timedelta(seconds=policy.confirm.timeout_s),
            outcome=final,
            reason=verdict.reason if final else None,
        )
        return self.holds.record_as(new, verdict, policy, now), verdict, match

    def _authorize(self, matches: list[Match], event: Event) -> None:
        """Refuse the whole request (``BadMessage("not_authorized")``) when its key
        may not have one of its matches done. Asked before the guards and before
        anything is recorded, outside the decision lock: it may read Nova, and a
        temporary failure there propagates (the bus retries the request)."""
        if self._authorizer is None or event.source != "request":
            return
        for match in matches:
            if match.error:
                continue  # refused for its parameters, with nothing sent to Nova
            server_id, server_name = _server_ref(match, event)
            authorize(
                self._authorizer,
                event,
                action=match.action,
                params=match.params,
                server_id=server_id,
                server_name=server_name,
            )

    def _so_far(self, duplicate: Duplicate) -> str:
        """What the first copy of a request led to, as the journal holds it now."""
        states = []
        for op_id in duplicate.operation_ids:
            try:
                operation = self._journal.get(op_id)
            except UnknownOperation:
                states.append(f"operation {op_id} pruned")
                continue
            now = operation.outcome or f"in progress ({operation.phase})"
            states.append(f"operation {op_id} {operation.action}: {now}")
        return "; ".join(states) or "it led to no operation"

    def _start(
        self,
        new: NewOperation,
        verdict: guards.Verdict,
        now: datetime,
        recorded: Operation | None = None,
    ) -> None:
        """Run, hold or report one decision just recorded (``recorded``: the
        operation as the journal holds it, when already read)."""
        verdict = self._conductor.take_trials(verdict, new.id, now)
        refused = verdict.decision == "refuse"
        self.tally.decided(
            new.policy,
            "refused" if refused else verdict.decision,
            guard=(verdict.guard or "other") if refused else None,
        )
        with bound(operation_id=new.id, policy=new.policy, server_id=new.server_id):
            if verdict.decision == "run":
                if verdict.trials:
                    log.warning("breaker.trial", scopes=list(verdict.trials), action=new.action)
                self._conductor.start(
                    new.id,
                    server_id=new.server_id,
                    action=new.action,
                    params=new.params,
                    policy=new.policy,
                    version=0,
                    now=now,
                )
                return
            if verdict.decision in ("queue", "await_approval"):
                self.holds.hold(self._journal.get(new.id), now)
                return
            if refused:
                announce_refusal(new.action, verdict)
            operation = recorded or self._journal.get(new.id)
            if new.outcome is None:  # a trial lost after it was recorded
                self._conductor.end(operation, "refused", verdict.reason, now)
            else:
                self._conductor.report(operation, {}, ran=False)

    def _answer_duplicate(
        self, duplicate: Duplicate, correlation_id: str | None, reply_to: str | None
    ) -> None:
        if reply_to is None:
            return
        for op_id in duplicate.operation_ids:
            result = result_of(self._journal.get(op_id)) | {"duplicate": True}
            self._conductor.answer(result, correlation_id=correlation_id, reply_to=reply_to)

    # -- outcomes ---------------------------------------------------------

    def on_done(self, done: Done) -> None:
        """The runner's callback when an operation ends."""
        operation = self._journal.get(done.op_id)
        self._conductor.report(operation, done.secrets, ran=True)
        with self._deciding:  # a batch is decided wholly before the breakers move, or after
            self._conductor.settle_breakers(operation, self._clock())
        self.holds.release_next(operation.server_id, self._clock())
        self.locks.drop(operation.server_id)
        verdict = (
            VERDICTS.get(operation.outcome or "") if operation.action == "verify_boot" else None
        )
        if verdict is not None:
            self.handle(_verdict_event(operation, verdict))

    def breaker_states(self) -> dict[str, str]:
        """Every circuit breaker's state by scope (``closed``, ``open``, ``half_open``),
        the global one always, as the journal holds them: for metrics and status."""
        return self._conductor.breaker_states()

    def on_phase(self, op_id: str, phase: str) -> None:
        """The runner's callback when an operation entered ``phase``: its progress
        published."""
        operation = self._journal.get(op_id)
        if operation.phase == phase and operation.outcome is None:
            self._conductor.progress(operation, self._clock())

    def on_lost(self, op_id: str) -> None:
        """The runner's callback when another daemon took an operation over."""
        self.locks.drop(self._journal.get(op_id).server_id)

    # -- restart ----------------------------------------------------------

    def work_of(self, operation: Operation) -> Work:
        """What the runner needs to resume an unfinished operation from its phase. One
        that was asking Nova (:attr:`Operation.asking`) starts again from its first
        phase, which finds out whether the request reached Nova."""
        policy = self._policies().by_name(operation.policy)
        return Work(
            operation.id,
            operation.action,
            operation.params,
            policy.confirm if policy else Confirm(),
            operation.released_at or operation.created_at,
            None if operation.asking or operation.phase == INITIAL_PHASE else operation.phase,
            operation.state,
            operation.version,
        )

    def resume(self) -> int:
        """Hand every unfinished operation of the journal back to the runner (a
        single daemon; several share them out by :mod:`.takeover`)."""
        works = []
        held: set[str | None] = set()
        for operation in self._journal.unfinished():
            if self.holds.track(operation):
                held.add(operation.server_id)
                continue
            works.append(self.work_of(operation))
        count = self._runner.resume(works)
        log.info("operations.resumed", count=count, held=len(self.holds))
        now = self._clock()
        for server_id in held:
            self.holds.release_next(server_id, now)
        return count

    def expire_due(self, now: datetime | None = None) -> int:
        """End the held operations whose time is over; how many. The daemon calls
        it every second."""
        return self.holds.expire_due(now or self._clock())
