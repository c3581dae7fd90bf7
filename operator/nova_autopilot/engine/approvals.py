"""An operator's decision on an operation awaiting approval: ``operation.approve``
and ``operation.reject`` requests, answered before any policy.

A decision request is taken once: a copy the bus delivers again is dropped, one
published anew (or another request reusing its id) is refused as ``replayed``.
A key may approve or reject only what it could have asked for
(:class:`Authorizer`). An approved operation is released through the guards
again (:meth:`Holds.recheck <nova_autopilot.engine.holds.Holds.recheck>`); a
rejected one ends ``rejected`` and frees its server for the next queued one.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

from nova_autopilot.engine.conduct import Conductor, result_of
from nova_autopilot.engine.holds import Holds
from nova_autopilot.engine.locks import ServerBusyElsewhere
from nova_autopilot.errors import BadMessage
from nova_autopilot.events import Event
from nova_autopilot.journal import (
    AWAITING_APPROVAL,
    Duplicate,
    Operation,
    OperationFinished,
    StaleOperation,
    UnknownOperation,
)
from nova_autopilot.logs import bound, get_logger

log = get_logger(__name__)


class Authorizer(Protocol):
    """May the key that signed a request have this done? (:mod:`nova_autopilot.security`)"""

    def check_operation(
        self,
        event: Event,
        *,
        action: str,
        params: Mapping[str, Any],
        server_id: str | None,
        server_name: str | None,
    ) -> str | None: ...


def authorize(
    authorizer: Authorizer | None,
    event: Event,
    *,
    action: str,
    params: Mapping[str, Any],
    server_id: str | None,
    server_name: str | None,
) -> None:
    """Refuse the request (``BadMessage("not_authorized")``) when its key may not have
    ``action`` done on that server with those parameters."""
    if authorizer is None:
        return
    refusal = authorizer.check_operation(
        event, action=action, params=params, server_id=server_id, server_name=server_name
    )
    if refusal is not None:
        raise BadMessage("not_authorized", refusal)


class Approvals:
    """Applies operators' decisions to the operations awaiting them."""

    def __init__(
        self, *, conductor: Conductor, holds: Holds, authorizer: Authorizer | None
    ) -> None:
        self._conductor = conductor
        self._journal = conductor.journal
        self._locks = conductor.locks
        self._holds = holds
        self._authorizer = authorizer

    def answer(
        self,
        event: Event,
        now: datetime,
        correlation_id: str | None,
        reply_to: str | None,
        *,
        redelivered: bool = False,
    ) -> list[str]:
        """Apply an operator's decision. A decision already taken is dropped when the
        bus delivers its copy again (``redelivered``), refused as ``replayed`` when it
        was published anew."""
        op_id = str(event.payload["operation_id"])
        key = event.dedupe_key or f"request:unkeyed:{uuid.uuid4().hex}"
        if self._journal.is_processed(key):
            self._repeated(event, key, op_id, None, redelivered=redelivered)
            return []
        try:
            operation = self._journal.get(op_id)
        except UnknownOperation:
            raise BadMessage("unknown_operation", f"there is no operation {op_id}") from None
        with self._locks.held([operation.server_id]) as elsewhere:
            if elsewhere:
                raise ServerBusyElsewhere(
                    f"another daemon runs an operation on server {operation.server_id}"
                )
            operation = self._journal.get(op_id)
            self._check_awaiting(operation, event)
            authorize(
                self._authorizer,
                event,
                action=operation.action,
                params=operation.params,
                server_id=operation.server_id,
                server_name=operation.server_name,
            )
            accepted = self._journal.accept(message_key=key, now=now, fingerprint=event.fingerprint)
            if isinstance(accepted, Duplicate):
                self._repeated(event, key, op_id, accepted, redelivered=redelivered)
                return []
            try:
                decision = self._apply(operation, event, now)
            except (OperationFinished, StaleOperation):
                # Ended (expired) between the check and the change: say so, like any late answer.
                current = self._journal.get(op_id)
                raise BadMessage(
                    "operation_finished",
                    f"operation {op_id} is no longer awaiting approval ({current.outcome})",
                ) from None
        if reply_to is not None:
            answer = result_of(self._journal.get(op_id)) | decision
            self._conductor.answer(answer, correlation_id=correlation_id, reply_to=reply_to)
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
            self._conductor.tally.duplicate(event.source, event.event_type)
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

    def _apply(self, operation: Operation, event: Event, now: datetime) -> dict[str, Any]:
        payload = event.payload
        approve = event.event_type == "operation.approve"
        who = str(payload.get("approved_by") or payload.get("requested_by") or "unknown")
        reason = payload.get("reason")
        detail = {"by": who, "reason": reason, "request_id": event.request_id}
        name = "approved" if approve else "rejected"
        decision = {"decision": "approve" if approve else "reject", "by": who}
        with bound(operation_id=operation.id, policy=operation.policy):
            if not approve:
                log.info("operation.rejected", by=who, reason=reason)
                self._journal.finish(
                    operation.id,
                    outcome="rejected",
                    reason=f"rejected by {who}" + (f": {reason}" if reason else ""),
                    expect_version=operation.version,
                    now=now,
                )
                self._journal.record_step(operation.id, name=name, detail=detail, now=now)
                self._conductor.report(self._journal.get(operation.id), {}, ran=False)
                self._holds.release_next(operation.server_id, now)
                return decision
            log.info("operation.approved", by=who, reason=reason)
            verdict = self._holds.recheck(operation, now)
            self._journal.record_step(operation.id, name=name, detail=detail, now=now)
            if verdict.decision == "run":
                self._holds.run(operation, now)
                return decision
            self._holds.end(operation, verdict, now)
            self._holds.release_next(operation.server_id, now)
            return decision
