"""How records become rows and rows records: JSON text through the redaction hook,
message keys that fit their column, rows read back as frozen values."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol, cast

from sqlalchemy import Row

from nova_autopilot.journal.records import (
    Breaker,
    BreakerState,
    JSONDict,
    Mode,
    NewOperation,
    NewRefusal,
    Operation,
    Outcome,
    Refusal,
    Status,
    Step,
)
from nova_autopilot.journal.schema import KEY_LENGTH

__all__ = [
    "Documents",
    "Redact",
    "RowCodec",
    "breaker",
    "breaker_row",
    "operation",
    "operation_ids",
    "refusal",
    "step",
    "storable_key",
]

Redact = Callable[[object], object]


class Documents(Protocol):
    """How a document becomes its stored JSON text (redacted) and the value that text
    holds; ``plain``: the document is already what a JSON parser gives and stays as it
    is, so that value may be the document itself (see
    :func:`nova_autopilot.logs.redacted_document`)."""

    def __call__(
        self, value: Mapping[str, Any], *, plain: bool = False
    ) -> tuple[str, JSONDict]: ...


def storable_key(message_key: str) -> str:
    """``message_key`` as stored: itself when it fits the column, else its SHA-256. So is
    a key ending in a space, which MySQL's collations would not tell from one without."""
    if not message_key:
        raise ValueError("a message key cannot be empty")
    if len(message_key) <= KEY_LENGTH and not message_key.endswith(" "):
        return message_key
    return "sha256:" + hashlib.sha256(message_key.encode("utf-8")).hexdigest()


class RowCodec:
    """Turns values into column values and back; everything written goes through
    ``redact`` first, so no secret reaches the database in clear."""

    def __init__(self, *, redact: Redact, documents: Documents | None = None) -> None:
        """``documents``: a faster way to what :meth:`document` does with ``redact``
        (:func:`nova_autopilot.logs.redacted_document`), the same text bar its spacing."""
        self._redact = redact
        self._documents = documents or self._redacted

    def _redacted(self, value: Mapping[str, Any], *, plain: bool = False) -> tuple[str, JSONDict]:
        text = json.dumps(self._redact(dict(value)), sort_keys=True, default=str)
        return text, _loads(text)

    def document(self, value: Mapping[str, Any]) -> str:
        """A JSON document for a TEXT column; stable key order, anything else as str."""
        return self._documents(value)[0]

    def text(self, value: str | None) -> str | None:
        if value is None:
            return None
        redacted = self._redact(value)
        return redacted if isinstance(redacted, str) else str(redacted)

    def operation_row(self, new: NewOperation, *, message_key: str, at: datetime) -> JSONDict:
        return self.operation_record(new, message_key=message_key, at=at)[0]

    def operation_record(
        self, new: NewOperation, *, message_key: str, at: datetime
    ) -> tuple[JSONDict, Operation]:
        """The row of a new operation and the operation as reading that row back gives it
        (its event ``new.event`` itself when nothing in it was redacted: the same value)."""
        params, params_value = self._documents(new.params)
        event, event_value = self._documents(new.event, plain=True)
        state, state_value = self._documents(new.state)
        row = {
            "id": new.id,
            "message_key": message_key,
            "policy": new.policy,
            "action": new.action,
            "project_id": new.project_id,
            "server_id": new.server_id,
            "server_name": new.server_name,
            "host": new.host,
            "availability_zone": new.availability_zone,
            "params": params,
            "mode": new.mode,
            "event": event,
            "why": self.text(new.why) or "",
            "request_id": new.request_id,
            "correlation_id": new.correlation_id,
            "reply_to": new.reply_to,
            "deadline_at": new.deadline_at,
            "status": "pending" if new.outcome is None else "done",
            "phase": new.phase,
            "state": state,
            "outcome": new.outcome,
            "reason": self.text(new.reason),
            "nova_requests": 0,
            "step_count": 0,
            "created_at": at,
            "updated_at": at,
            "finished_at": None if new.outcome is None else at,
            "owner": None,
            "lease_until": None,
            "version": 0,
        }
        return row, _operation(row, params=params_value, event=event_value, state=state_value)

    def refusal_row(self, new: NewRefusal) -> JSONDict:
        """Untrusted text is cut to its column, never refused: a refusal is always kept."""
        return {
            "at": new.at,
            "source": _clip(new.source, 16),
            "queue": _clip(new.queue, 255),
            "reason": _clip(new.reason, 64),
            "detail": self.text(new.detail) or "",
            "request_type": _clip(self.text(new.request_type), 255),
            "request_id": _clip(self.text(new.request_id), 255),
            "key_id": _clip(self.text(new.key_id), 255),
            "message_id": _clip(self.text(new.message_id), 255),
            "correlation_id": _clip(self.text(new.correlation_id), 255),
            "body": json.dumps(self._redact(new.body), sort_keys=True, default=str),
        }


def _clip(value: str | None, limit: int) -> str | None:
    return value if value is None or len(value) <= limit else value[: limit - 3] + "..."


def operation(row: Row[Any]) -> Operation:
    return operation_of(cast("Mapping[str, Any]", row._mapping))


def operation_of(m: Mapping[str, Any]) -> Operation:
    """The operation of a row of the operations table, read or about to be written."""
    return _operation(
        m, params=_loads(m["params"]), event=_loads(m["event"]), state=_loads(m["state"])
    )


def _operation(
    m: Mapping[str, Any], *, params: JSONDict, event: JSONDict, state: JSONDict
) -> Operation:
    return Operation(
        id=m["id"],
        message_key=m["message_key"],
        policy=m["policy"],
        action=m["action"],
        project_id=m["project_id"],
        server_id=m["server_id"],
        server_name=m["server_name"],
        host=m["host"],
        availability_zone=m["availability_zone"],
        params=params,
        mode=cast(Mode, m["mode"]),
        event=event,
        why=m["why"],
        request_id=m["request_id"],
        correlation_id=m["correlation_id"],
        reply_to=m["reply_to"],
        deadline_at=m["deadline_at"],
        status=cast(Status, m["status"]),
        phase=m["phase"],
        state=state,
        outcome=cast("Outcome | None", m["outcome"]),
        reason=m["reason"],
        nova_requests=m["nova_requests"],
        step_count=m["step_count"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        finished_at=m["finished_at"],
        owner=m["owner"],
        lease_until=m["lease_until"],
        version=m["version"],
    )


def breaker(row: Row[Any]) -> Breaker:
    m = row._mapping
    return Breaker(
        scope=m["scope"],
        state=cast(BreakerState, m["state"]),
        failures=m["failures"],
        reason=m["reason"],
        opened_at=m["opened_at"],
        closed_at=m["closed_at"],
        trial_operation_id=m["trial_operation_id"],
        updated_at=m["updated_at"],
        version=m["version"],
    )


def breaker_row(value: Breaker, *, reason: str | None, at: datetime, version: int) -> JSONDict:
    return {
        "scope": value.scope,
        "state": value.state,
        "failures": value.failures,
        "reason": reason,
        "opened_at": value.opened_at,
        "closed_at": value.closed_at,
        "trial_operation_id": value.trial_operation_id,
        "updated_at": at,
        "version": version,
    }


def step(row: Row[Any]) -> Step:
    m = row._mapping
    return Step(
        operation_id=m["operation_id"],
        seq=m["seq"],
        name=m["name"],
        detail=_loads(m["detail"]),
        nova_requests=m["nova_requests"],
        at=m["at"],
    )


def refusal(row: Row[Any]) -> Refusal:
    m = row._mapping
    return Refusal(
        id=m["id"],
        at=m["at"],
        source=m["source"],
        queue=m["queue"],
        reason=m["reason"],
        detail=m["detail"],
        body=json.loads(m["body"]),
        request_type=m["request_type"],
        request_id=m["request_id"],
        key_id=m["key_id"],
        message_id=m["message_id"],
        correlation_id=m["correlation_id"],
    )


def operation_ids(text: str) -> tuple[str, ...]:
    return tuple(str(item) for item in json.loads(text))


def operation_ids_text(ids: Sequence[str]) -> str:
    """What :func:`operation_ids` reads back as ``ids``: ``json.dumps(ids)``, made
    without the json module (costly for so little) when every id is letters and digits."""
    if all(op_id.isascii() and op_id.isalnum() for op_id in ids):
        return "[" + ", ".join(f'"{op_id}"' for op_id in ids) + "]"
    return json.dumps(list(ids))


def _loads(text: str) -> JSONDict:
    value = json.loads(text)
    return value if isinstance(value, dict) else {"value": value}
