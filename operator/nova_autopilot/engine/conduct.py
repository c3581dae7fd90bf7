"""What the engine does to an operation once it is decided, new or held alike.

Every step that a new decision (:mod:`.flow`), a held operation released to
run (:mod:`.holds`) and an operator's approval (:mod:`.approvals`) share is
written here once, so those modules only ever call down into it:

* the facts of one decision, read lazily from the journal (:meth:`Conductor.facts`);
* the guards asked again before a held operation runs (:meth:`Conductor.recheck`);
* a half-open breaker's trial taken, or the decision refused because another
  took it (:meth:`Conductor.take_trials`);
* the operation claimed (its server's lock kept, the journal's claim when
  several daemons share it) and handed to the runner (:meth:`Conductor.start`);
* each phase it enters told to the results exchange and to the request's
  ``reply_to`` (:meth:`Conductor.progress`);
* its end reported: counted, logged on one canonical line, published to the
  results exchange and to the request's ``reply_to`` (:meth:`Conductor.report`);
* the breakers moved after it ended (:meth:`Conductor.settle_breakers`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Protocol

from nova_autopilot import guards
from nova_autopilot.actions.runner import Runner, Work
from nova_autopilot.engine.facts import BreakerKeeper, Change, JournalFacts, Ledger
from nova_autopilot.engine.locks import ServerLocks
from nova_autopilot.engine.tally import Tally
from nova_autopilot.journal import HELD_PHASES, Journal, Operation
from nova_autopilot.logs import get_logger
from nova_autopilot.policies import PolicySet
from nova_autopilot.policies.model import Confirm, Policy

log = get_logger(__name__)

#: Why a decision that was to be a half-open breaker's trial is refused after all.
TRIAL_TAKEN = "breaker: half-open, another decision took the trial"


class Reporter(Protocol):
    """Where outcomes and progress go (the bus's results publisher)."""

    def publish(
        self, result: Mapping[str, Any], *, correlation_id: str | None, reply_to: str | None
    ) -> None: ...

    def progress(
        self, update: Mapping[str, Any], *, correlation_id: str | None, reply_to: str | None
    ) -> None: ...


class NoReporter:
    def publish(
        self, result: Mapping[str, Any], *, correlation_id: str | None, reply_to: str | None
    ) -> None:
        return None

    def progress(
        self, update: Mapping[str, Any], *, correlation_id: str | None, reply_to: str | None
    ) -> None:
        return None


def result_of(operation: Operation, *, secrets: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The result message of an operation."""
    result: dict[str, Any] = {
        "operation_id": operation.id,
        "policy": operation.policy,
        "action": operation.action,
        "server_id": operation.server_ref,
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


def announce_refusal(action: str, verdict: guards.Verdict) -> None:
    """Say it loudly when the guard that refused is one that signals a problem."""
    if verdict.guard == "loop":
        log.error("guard.loop", action=action, reason=verdict.reason)
    elif verdict.guard == "breaker":
        log.warning("breaker.refused", action=action, reason=verdict.reason)


class Conductor:
    """Carries decided operations through: guards again, trials, start, report."""

    def __init__(
        self,
        *,
        journal: Journal,
        runner: Runner,
        policies: Callable[[], PolicySet],
        guard_settings: guards.GuardSettings,
        reporter: Reporter,
        tally: Tally,
        locks: ServerLocks,
        owner: str | None,
    ) -> None:
        """``locks``: the per-server locks (the group's when several daemons share the
        cloud); ``owner``: who claims, in the journal, the operations this daemon runs
        (None: a single daemon, which claims nothing)."""
        self.journal = journal
        self.guard_settings = guard_settings
        self.tally = tally
        self.locks = locks
        self.breakers = BreakerKeeper(journal)
        self._runner = runner
        self._policies = policies
        self._reporter = reporter
        self._owner = owner

    def policy(self, name: str) -> Policy | None:
        """The policy of that name as loaded now (None: no longer loaded)."""
        return self._policies().by_name(name)

    # -- the guards ---------------------------------------------------------

    def facts(
        self,
        *,
        policy: str,
        server_id: str | None,
        project_id: str | None,
        host: str | None,
        availability_zone: str | None,
        busy: bool | None,
        source: Ledger | None = None,
    ) -> JournalFacts:
        """The facts of one decision, read from the journal (or a batch's ``source``)
        when a guard asks; held operations do not count as running for the
        concurrency cap."""
        return JournalFacts(
            source or self.journal,
            policy=policy,
            server_id=server_id,
            project_id=project_id,
            host=host,
            availability_zone=availability_zone,
            held_phases=HELD_PHASES,
            busy=busy,
        )

    def recheck(
        self, policy: Policy, operation: Operation, *, busy: bool, now: datetime
    ) -> guards.Verdict:
        """The guards again, for a held operation about to run: the breakers, its server
        (``busy``: occupied by another), the cooldown, the concurrency cap; its share of
        loops and budgets was taken when it was decided."""
        facts = self.facts(
            policy=policy.name,
            server_id=operation.server_id,
            project_id=operation.project_id,
            host=operation.host,
            availability_zone=operation.availability_zone,
            busy=busy,
        )
        verdict = guards.decide(
            policy,
            guards.for_policy(policy, self.guard_settings),
            self.guard_settings,
            facts,
            now=now,
            has_server=operation.server_id is not None,
            held=True,
        )
        if verdict.decision == "refuse":
            self.tally.decided(policy.name, "refused", guard=verdict.guard or "other")
            announce_refusal(operation.action, verdict)
        return verdict

    def take_trials(self, verdict: guards.Verdict, op_id: str, now: datetime) -> guards.Verdict:
        """``verdict``, made the trial of the half-open breakers it asks for; a refusal
        when another decision took one of them first."""
        if not verdict.trials or self.breakers.take_trials(verdict.trials, op_id, now=now):
            return verdict
        return guards.Verdict("refuse", TRIAL_TAKEN, "breaker")

    # -- running ------------------------------------------------------------

    def claim(self, op_id: str, server_id: str | None, version: int, now: datetime) -> int | None:
        """Make the operation about to run this daemon's, its server's lock kept until
        it ends; its version then, or None when another daemon has it."""
        if not self.locks.keep(server_id):
            log.warning("operation.server_elsewhere", operation_id=op_id, server_id=server_id)
            return None
        if self._owner is None:
            return version
        claimed = self.journal.claim(op_id, owner=self._owner, now=now)
        if claimed is None:
            self.locks.drop(server_id)
            log.warning("operation.claimed_elsewhere", operation_id=op_id)
            return None
        return claimed.version

    def start(
        self,
        op_id: str,
        *,
        server_id: str | None,
        action: str,
        params: Mapping[str, Any],
        policy: str,
        version: int,
        now: datetime,
        state: Mapping[str, Any] | None = None,
        held: str | None = None,
    ) -> None:
        """Claim the operation and hand it to the runner, from its first phase; its
        deadline counts from ``now``. ``held``: the phase it was held in, if it was."""
        claimed = self.claim(op_id, server_id, version, now)
        if claimed is None:
            return  # another daemon has it
        if held is None:
            log.info("operation.started", action=action)
        else:
            log.info("operation.started", action=action, held=held)
        found = self.policy(policy)
        confirm = found.confirm if found is not None else Confirm()
        self._runner.submit(
            Work(op_id, action, params, confirm, now, None, dict(state or {}), claimed)
        )

    # -- outcomes -----------------------------------------------------------

    def publish(
        self,
        operation: Operation,
        result: Mapping[str, Any],
        *,
        reply: Mapping[str, Any] | None = None,
    ) -> None:
        """Publish ``result`` to the results exchange, and to the request's ``reply_to``
        when it has one (``reply`` there, when the asker is told more)."""
        correlation_id = operation.correlation_id
        self._reporter.publish(result, correlation_id=correlation_id, reply_to=None)
        if operation.reply_to:
            self._reporter.publish(
                result if reply is None else reply,
                correlation_id=correlation_id,
                reply_to=operation.reply_to,
            )

    def progress(self, operation: Operation, at: datetime) -> None:
        """Say that ``operation`` entered its phase (as the journal holds it): to the
        results exchange, and to its request's ``reply_to`` (``send --wait`` shows it)."""
        update = {
            "operation_id": operation.id,
            "policy": operation.policy,
            "action": operation.action,
            "server_id": operation.server_ref,
            "request_id": operation.request_id,
            "phase": operation.phase,
            "at": at.isoformat(),
            "created_at": operation.created_at.isoformat(),
        }
        self._reporter.progress(
            update, correlation_id=operation.correlation_id, reply_to=operation.reply_to
        )

    def answer(
        self, result: Mapping[str, Any], *, correlation_id: str | None, reply_to: str
    ) -> None:
        """Answer a request's ``reply_to`` alone (a copy of a decided request, an
        operator's decision)."""
        self._reporter.publish(result, correlation_id=correlation_id, reply_to=reply_to)

    def report(self, operation: Operation, secrets: Mapping[str, str], *, ran: bool) -> None:
        """An operation ended: counted, one canonical log line, its result published
        (its secrets only to the asker). ``ran``: it ran, so its duration counts."""
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
            server_id=operation.server_ref,
            reason=operation.reason,
            nova_requests=operation.nova_requests,
            duration_s=duration,
        )
        reply = result_of(operation, secrets=secrets) if secrets else None
        self.publish(operation, result_of(operation), reply=reply)

    def end(
        self,
        operation: Operation,
        outcome: str,
        reason: str | None,
        now: datetime,
        *,
        expect_version: int | None = None,
    ) -> None:
        """Finish an operation that never ran (held, refused, a dry run) and report it."""
        self.journal.finish(
            operation.id, outcome=outcome, reason=reason, expect_version=expect_version, now=now
        )
        self.report(self.journal.get(operation.id), {}, ran=False)

    # -- breakers -----------------------------------------------------------

    def settle_breakers(self, operation: Operation, now: datetime) -> None:
        """Open a breaker on a run of failures; settle a half-open breaker's trial."""
        policy = self.policy(operation.policy)
        policy_limits = (
            guards.for_policy(policy, self.guard_settings).breaker
            if policy is not None
            else self.guard_settings.policy_breaker
        )
        limits = {
            guards.GLOBAL: self.guard_settings.breaker,
            guards.policy_scope(operation.policy): policy_limits,
        }
        for change in self.breakers.after(operation, limits, now=now):
            self._announce(change, operation.policy, limits[change.breaker.scope])

    def _announce(self, change: Change, policy: str, limits: guards.BreakerLimits) -> None:
        breaker = change.breaker
        policy_name = None if breaker.scope == guards.GLOBAL else policy
        details = {
            "scope": breaker.scope,
            "failures": breaker.failures,
            "window_s": limits.window_s,
            "half_open_after_s": limits.half_open_after_s,
            "reason": breaker.reason,
        }
        if change.outcome == "opened":
            log.error("breaker.opened", **details)
        elif change.outcome == "reopened":
            log.error("breaker.reopened", **details)
        else:
            log.warning("breaker.closed", scope=breaker.scope)
        self._reporter.publish(
            change.result(policy_name, limits), correlation_id=None, reply_to=None
        )

    def breaker_states(self) -> dict[str, str]:
        """Every circuit breaker's state by scope (``closed``, ``open``, ``half_open``),
        the global one always, as the journal holds them: for metrics and status."""
        states = {guards.GLOBAL: "closed"}
        states.update({scope: b.state for scope, b in self.journal.breakers().items()})
        return states
