"""What the journal holds, as frozen values: operations, their steps, and the answer to accept."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Final, Literal, get_args

from nova_autopilot.ids import new_id

__all__ = [
    "AWAITING_APPROVAL",
    "BREAKER_STATES",
    "FAILURES",
    "HELD_PHASES",
    "INITIAL_PHASE",
    "LIMITS",
    "MODES",
    "OUTCOMES",
    "QUEUED",
    "STATUSES",
    "Accepted",
    "Activity",
    "Breaker",
    "BreakerState",
    "Duplicate",
    "JSONDict",
    "Mode",
    "NewMessage",
    "NewOperation",
    "NewRefusal",
    "Operation",
    "Outcome",
    "Refusal",
    "StateKey",
    "Status",
    "Step",
    "aware_utc",
    "check_length",
]

JSONDict = dict[str, Any]
Mode = Literal["enforce", "dry-run"]
Status = Literal["pending", "running", "done"]
Outcome = Literal[
    "confirmed",
    "reverted",
    "rescued",
    "unrescued",
    "not_rescuable",
    "failed",
    "timed_out",
    "refused",
    "dry_run",
    "boot_ok",
    "boot_failed",
    "rejected",
    "expired",
]

BreakerState = Literal["closed", "open", "half_open"]

MODES: Final[tuple[Mode, ...]] = ("enforce", "dry-run")
STATUSES: Final[tuple[Status, ...]] = ("pending", "running", "done")
#: Every final outcome an operation can have; ``finish`` refuses anything else.
OUTCOMES: Final[tuple[Outcome, ...]] = get_args(Outcome)
#: Outcomes that mean the operation failed, as the circuit breakers count them: Nova
#: failed it, it did not end in time, or its result was undone (a resize reverted because
#: its health gate failed: the gate protected that server, but a run of them is a policy
#: that keeps hurting servers).
FAILURES: Final[tuple[Outcome, ...]] = ("failed", "timed_out", "reverted")
BREAKER_STATES: Final[tuple[BreakerState, ...]] = ("closed", "open", "half_open")
#: The phase of an operation no state machine has moved yet.
INITIAL_PHASE: Final = "start"
#: The phases of an operation held before it runs, which no state machine knows:
#: queued behind its server's operation in flight, or awaiting an operator's approval.
QUEUED: Final = "queued"
AWAITING_APPROVAL: Final = "awaiting_approval"
HELD_PHASES: Final = (QUEUED, AWAITING_APPROVAL)


class StateKey:
    """The keys of an operation's ``state`` that more than its state machine reads.

    The rest of ``state`` belongs to the state machine alone; these are read by the
    engine, the reports and the runner too, through :class:`Operation`'s properties.
    """

    #: The server's id, once the action resolved a name (``server_id`` is then None).
    SERVER_ID: Final = "server_id"
    SERVER_NAME: Final = "server_name"
    #: When the action was about to ask Nova for its write (checkpointed first) ...
    REQUESTING_AT: Final = "requesting_at"
    #: ... and that Nova took it. The first without the second: a daemon stopped in
    #: between, and whether the request reached Nova is found out on resume.
    REQUESTED: Final = "requested"
    #: Until when a held operation may wait; past it, it ends ``expired``.
    HOLD_UNTIL: Final = "hold_until"
    #: When a held operation was released to run: its deadline counts from there.
    RELEASED_AT: Final = "released_at"


def _moment(state: Mapping[str, Any], key: str) -> datetime | None:
    value = state.get(key)
    return datetime.fromisoformat(value) if isinstance(value, str) else None


# Column widths of the schema (journal/schema.py); values are checked before they reach a
# database, because SQLite would keep a longer value that PostgreSQL and MariaDB refuse.
LIMITS: Final[dict[str, int]] = {
    "id": 64,
    "policy": 255,
    "action": 32,
    "server_id": 64,
    "server_name": 255,
    "project_id": 64,
    "host": 255,
    "availability_zone": 255,
    "breaker": 300,
    "request_id": 255,
    "correlation_id": 255,
    "reply_to": 255,
    "phase": 64,
    "owner": 255,
    "step": 128,
}


def aware_utc(value: datetime, what: str = "timestamp") -> datetime:
    """``value`` in UTC; a naive datetime is refused, since its zone is anyone's guess."""
    if value.tzinfo is timezone.utc:
        return value
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got naive {value.isoformat()}")
    return value.astimezone(timezone.utc)


def check_length(what: str, value: str | None, limit_key: str | None = None) -> None:
    limit = LIMITS[limit_key or what]
    if value is not None and len(value) > limit:
        raise ValueError(f"{what} is {len(value)} characters long; the journal keeps {limit}")


_LIMITED: Final = (
    "id",
    "policy",
    "action",
    "server_id",
    "server_name",
    "project_id",
    "host",
    "availability_zone",
    "request_id",
    "correlation_id",
    "reply_to",
)
_NEW_OPERATION_LIMITS: Final = tuple((name, LIMITS[name]) for name in (*_LIMITED, "phase"))


@dataclass(frozen=True, slots=True, kw_only=True)
class NewOperation:
    """An operation the engine has decided on, before the journal holds it.

    ``params``, ``event`` are plain JSON values (they pass through the journal's redaction
    hook before being stored); ``why`` says why the policy matched, for ``history``.
    ``event`` is what a JSON parser gives (an event's fields and payload, as
    :meth:`~nova_autopilot.events.Event.as_dict` has them) and is not changed afterwards:
    the operation the journal hands back when it accepts this one holds it, not a copy,
    when nothing in it was redacted.
    """

    policy: str
    action: str
    project_id: str | None = None
    server_id: str | None = None
    server_name: str | None = None
    host: str | None = None
    availability_zone: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    mode: Mode = "enforce"
    event: Mapping[str, Any] = field(default_factory=dict)
    why: str = ""
    request_id: str | None = None
    correlation_id: str | None = None
    reply_to: str | None = None
    deadline_at: datetime | None = None
    #: Where it starts: ``start`` for the state machine's first phase, or a phase in
    #: which the operation is held before it runs (queued, awaiting approval).
    phase: str = INITIAL_PHASE
    state: Mapping[str, Any] = field(default_factory=dict)
    #: A decision final when it is recorded (refused, dry run) is accepted finished,
    #: with this outcome and reason, in the same transaction.
    outcome: str | None = None
    reason: str | None = None
    id: str = field(default_factory=new_id)

    def __post_init__(self) -> None:
        if not self.id:
            raise ValueError("an operation needs a non-empty id")
        if not self.policy:
            raise ValueError("an operation needs the name of its policy")
        if not self.action:
            raise ValueError("an operation needs an action")
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}; expected one of {', '.join(MODES)}")
        if self.outcome is not None and self.outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {self.outcome!r}")
        for name, limit in _NEW_OPERATION_LIMITS:
            value = getattr(self, name)
            if value is not None and len(value) > limit:
                check_length(name, value)  # raises, saying so
        if self.deadline_at is not None:
            object.__setattr__(self, "deadline_at", aware_utc(self.deadline_at, "deadline_at"))


@dataclass(frozen=True, slots=True, kw_only=True)
class Operation:
    """An operation as the journal holds it.

    ``status`` is ``pending`` until a daemon claims or advances it, ``running`` while a
    state machine works on it, ``done`` once finished with an ``outcome``. ``phase`` and
    ``state`` are what the state machine needs to resume; ``version`` grows on every
    change of them (optimistic concurrency); ``owner`` and ``lease_until`` say which
    daemon works on it and until when that claim holds. ``host`` and
    ``availability_zone`` are where the server ran when the operation was decided (from
    the event) or started (from Nova), for the guards' budgets.
    """

    id: str
    message_key: str
    policy: str
    action: str
    project_id: str | None
    server_id: str | None
    server_name: str | None
    params: JSONDict
    mode: Mode
    event: JSONDict
    why: str
    request_id: str | None
    correlation_id: str | None
    reply_to: str | None
    deadline_at: datetime | None
    status: Status
    phase: str
    state: JSONDict
    outcome: Outcome | None
    reason: str | None
    nova_requests: int
    step_count: int
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    owner: str | None
    lease_until: datetime | None
    version: int
    host: str | None = None
    availability_zone: str | None = None

    @property
    def finished(self) -> bool:
        return self.status == "done"

    @property
    def server_ref(self) -> str | None:
        """The server's id as far as known: as decided, else as its action resolved it."""
        resolved = self.state.get(StateKey.SERVER_ID)
        return self.server_id or (str(resolved) if resolved else None)

    @property
    def server_name_ref(self) -> str | None:
        """The server's name as far as known: as asked, else as its action found it."""
        resolved = self.state.get(StateKey.SERVER_NAME)
        return self.server_name or (str(resolved) if resolved else None)

    @property
    def asking(self) -> bool:
        """Whether it was asking Nova for its write when it last recorded itself, with
        no word that Nova took it: on resume, its first phase finds out which."""
        return bool(self.state.get(StateKey.REQUESTING_AT)) and not self.state.get(
            StateKey.REQUESTED
        )

    @property
    def held(self) -> bool:
        """Held before it runs: queued, or awaiting approval."""
        return self.phase in HELD_PHASES and not self.finished

    @property
    def occupies(self) -> bool:
        """Whether it keeps its server busy for the others: running, or awaiting
        approval. A queued operation waits its turn like the others."""
        return not self.finished and self.phase != QUEUED

    @property
    def held_until(self) -> datetime | None:
        """Until when a held operation may wait."""
        return _moment(self.state, StateKey.HOLD_UNTIL)

    @property
    def released_at(self) -> datetime | None:
        """When a held operation was released to run (None: it never was held)."""
        return _moment(self.state, StateKey.RELEASED_AT)


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    """One recorded step of an operation; ``seq`` counts from 1 in the order recorded."""

    operation_id: str
    seq: int
    name: str
    detail: JSONDict
    nova_requests: int
    at: datetime


@dataclass(frozen=True, slots=True)
class Accepted:
    """The message was new: it and its operations are now in the journal."""

    message_key: str
    operation_ids: tuple[str, ...]
    at: datetime
    #: The operations as the journal holds them now (not part of what it is equal to).
    operations: tuple[Operation, ...] = field(default=(), compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message the engine has decided on, with the operations it led to (maybe
    none), for :meth:`Journal.accept_many <nova_autopilot.journal.Journal.accept_many>`."""

    message_key: str
    operations: tuple[NewOperation, ...] = ()
    fingerprint: str | None = None


@dataclass(frozen=True, slots=True)
class Duplicate:
    """The message had been processed before: nothing was written.

    ``operation_ids`` are the operations the first copy created (maybe none), so a
    repeated request can be answered with the first one's outcome.
    """

    message_key: str
    first_seen_at: datetime
    operation_ids: tuple[str, ...]
    #: What the first copy's fingerprint was (None when it had none).
    fingerprint: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class NewRefusal:
    """A request refused before any decision, as the bus dead-lettered it.

    ``body`` is the request as received, decoded when it was JSON (else its text);
    it passes through the journal's redaction hook before being stored."""

    at: datetime
    source: str
    queue: str
    reason: str
    detail: str
    body: Any
    request_type: str | None = None
    request_id: str | None = None
    key_id: str | None = None
    message_id: str | None = None
    correlation_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Refusal:
    """A refused request as the journal holds it (``body`` redacted)."""

    id: int
    at: datetime
    source: str
    queue: str
    reason: str
    detail: str
    body: Any
    request_type: str | None
    request_id: str | None
    key_id: str | None
    message_id: str | None
    correlation_id: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Breaker:
    """A circuit breaker as the journal holds it; ``scope`` is ``global`` or
    ``policy:<name>``.

    ``closed``: decisions pass. ``open`` since ``opened_at`` after ``failures`` failed
    operations (the last one's ``reason``): decisions are refused. ``half_open``: the
    operation ``trial_operation_id`` is the one let through; its success closes the
    breaker, its failure opens it again. Failures finished before ``closed_at`` (the last
    close or reset) do not count. ``version`` grows with every change.
    """

    scope: str
    state: BreakerState
    failures: int = 0
    reason: str | None = None
    opened_at: datetime | None = None
    closed_at: datetime | None = None
    trial_operation_id: str | None = None
    updated_at: datetime | None = None
    version: int = 0

    def __post_init__(self) -> None:
        if self.state not in BREAKER_STATES:
            raise ValueError(f"unknown breaker state {self.state!r}")
        check_length("breaker", self.scope)


@dataclass(frozen=True, slots=True)
class Activity:
    """One operation on a server, as the guards need it: whose, where it stands, when."""

    policy: str
    status: Status
    outcome: Outcome | None
    created_at: datetime
    finished_at: datetime | None
