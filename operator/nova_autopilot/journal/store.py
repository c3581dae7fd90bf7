"""The journal: the durable record of every operation, its steps and outcome, and of every
message already acted upon.

Every method is one transaction, safe to call from several threads and, on PostgreSQL or
MariaDB, from several daemons sharing the database: de-duplication rests on a unique key,
state changes on a version number (optimistic concurrency), claims on row locks.
Times are aware UTC; each method takes ``now`` or asks the journal's clock.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import uuid
from collections.abc import Callable, Collection, Sequence
from datetime import datetime, timedelta, timezone
from types import TracebackType
from typing import Final

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from nova_autopilot.journal import changes, migrate, queries
from nova_autopilot.journal.database import Database
from nova_autopilot.journal.errors import AmbiguousServer
from nova_autopilot.journal.records import (
    OUTCOMES,
    Accepted,
    Activity,
    Breaker,
    Duplicate,
    JSONDict,
    NewMessage,
    NewOperation,
    NewRefusal,
    Operation,
    Refusal,
    Step,
    aware_utc,
    check_length,
)
from nova_autopilot.journal.rows import (
    Documents,
    Redact,
    RowCodec,
    breaker_row,
    storable_key,
)
from nova_autopilot.journal.rows import refusal as rows_refusal

__all__ = ["Clock", "Journal", "utc_now"]

Clock = Callable[[], datetime]
#: Rows deleted per transaction when pruning, so a big prune never holds the lock long.
PRUNE_BATCH: Final = 500


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _identity(value: object) -> object:
    return value


class Journal:
    """Open one with :meth:`open`; close it with :meth:`close` (or use ``with``)."""

    def __init__(
        self,
        database: Database,
        *,
        clock: Clock,
        redact: Redact,
        lease: timedelta,
        documents: Documents | None = None,
    ) -> None:
        if lease <= timedelta(0):
            raise ValueError(f"a lease must be positive, got {lease}")
        self._db = database
        self._clock = clock
        self._codec = RowCodec(redact=redact, documents=documents)
        self._lease = lease

    @classmethod
    def open(
        cls,
        url: str,
        *,
        clock: Clock = utc_now,
        redact: Redact = _identity,
        documents: Documents | None = None,
        lease: timedelta = timedelta(minutes=5),
        busy_timeout: float = 30.0,
        migrate_schema: bool = True,
    ) -> Journal:
        """Connect to the journal at ``url`` (any SQLAlchemy URL) and bring its schema to
        the one this code knows; with ``migrate_schema=False`` only check that it is.

        ``redact`` sees every document and free text before it is stored (pass
        ``nova_autopilot.logs.redact``); ``documents`` makes the JSON documents faster
        with the same redaction (pass ``nova_autopilot.logs.redacted_document`` with
        ``redact``); ``lease`` is how long a :meth:`claim` holds;
        ``busy_timeout`` how long a writer waits for another one, in seconds.
        Raises :class:`SchemaMismatch` for a schema newer than this code knows.
        """
        database = Database(url, busy_timeout=busy_timeout)
        try:
            # Without migrating, a journal at this release's schema is told by reading its
            # revision, without importing alembic; any other case is upgrade()'s to judge.
            if migrate_schema or not migrate.at_head(database):
                migrate.upgrade(database, allow=migrate_schema)
        except BaseException:
            database.dispose()
            raise
        return cls(database, clock=clock, redact=redact, lease=lease, documents=documents)

    def close(self) -> None:
        self._db.dispose()

    def __enter__(self) -> Journal:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def dialect(self) -> str:
        """The database's kind: ``sqlite``, ``postgresql``, ``mysql``..."""
        return self._db.dialect

    # --- messages and decisions ---------------------------------------------------------

    def accept(
        self,
        *,
        message_key: str,
        operations: Sequence[NewOperation] = (),
        now: datetime | None = None,
        fingerprint: str | None = None,
    ) -> Accepted | Duplicate:
        """Record that the message ``message_key`` was processed, and the operations it
        led to (maybe none), in one transaction. If it was processed before, write
        nothing and return what the first copy led to (with the first copy's
        ``fingerprint``, so the caller can tell a copy from another message reusing
        the key)."""
        at = self._now(now)
        key = storable_key(message_key)
        ids = tuple(new.id for new in operations)
        if len(set(ids)) != len(ids):
            raise ValueError(f"operation ids repeat within one message: {ids}")
        records = [self._codec.operation_record(new, message_key=key, at=at) for new in operations]
        rows = [row for row, _ in records]
        try:
            self._db.write(
                functools.partial(
                    changes.accept, key=key, ids=ids, rows=rows, at=at, fingerprint=fingerprint
                )
            )
        except IntegrityError:
            return self._db.read(lambda conn: queries.duplicate(conn, key, ids))
        return Accepted(
            message_key=key,
            operation_ids=ids,
            at=at,
            operations=tuple(operation for _, operation in records),
        )

    def accept_many(
        self, messages: Sequence[NewMessage], *, now: datetime | None = None
    ) -> list[Accepted | Duplicate]:
        """:meth:`accept` for several messages, in one transaction (one commit for
        them all): for each, in order, :class:`Accepted` or the :class:`Duplicate`
        of its first copy, be it in the journal before or earlier in ``messages``.
        Callers leave out the keys :meth:`processed` found; when one of them is in
        the journal all the same (another daemon recorded it meanwhile), they are
        accepted one by one instead, with the same outcomes."""
        at = self._now(now)
        batch = []
        for message in messages:
            key = storable_key(message.message_key)
            ids = tuple(new.id for new in message.operations)
            if len(set(ids)) != len(ids):
                raise ValueError(f"operation ids repeat within one message: {ids}")
            records = [
                self._codec.operation_record(new, message_key=key, at=at)
                for new in message.operations
            ]
            batch.append(changes.Batched(key, ids, records, message.fingerprint))
        if not batch:
            return []
        try:
            return self._db.write(functools.partial(changes.accept_many, batch=batch, at=at))
        except IntegrityError:
            return [
                self.accept(
                    message_key=message.message_key,
                    operations=message.operations,
                    now=at,
                    fingerprint=message.fingerprint,
                )
                for message in messages
            ]

    def reading(self) -> contextlib.AbstractContextManager[None]:
        """A block whose reads (by this thread) share one read transaction: the facts
        of one batch of decisions, read as of one moment and at the cost of one."""
        return self._db.reading()

    def check_writable(self, now: datetime | None = None) -> None:
        """Write a probe row and delete it: raises :class:`JournalError` when the
        database does not take a write now (unreachable, read-only, locked too long, its
        disk full). Rolled back while writes succeed; committed (and so reaching the
        disk) after one failed, until one succeeds (:meth:`Database.probe_write`)."""
        at = self._now(now)
        key = storable_key(f"autopilot:writable:{uuid.uuid4().hex}")
        self._db.probe_write(functools.partial(changes.probe, key=key, at=at))

    def processed(self, message_keys: Collection[str]) -> dict[str, Duplicate]:
        """Which of ``message_keys`` were processed before, in one read: the
        :class:`Duplicate` of each one's first copy, by the key as given."""
        keys = {storable_key(key): key for key in message_keys}
        found = self._db.read(lambda conn: queries.firsts(conn, keys))
        return {keys[stored]: duplicate for stored, duplicate in found.items()}

    def is_processed(self, message_key: str) -> bool:
        query = queries.is_processed(storable_key(message_key))
        return bool(self._db.read(lambda conn: conn.execute(query).scalar()))

    def prune_processed(self, *, older_than: datetime) -> int:
        """Forget messages first seen before ``older_than``; returns how many. A copy
        arriving after that is no longer recognized as a duplicate."""
        cutoff = aware_utc(older_than, "older_than")
        return self._prune(functools.partial(changes.prune_messages, cutoff=cutoff))

    # --- refused requests ---------------------------------------------------------------

    def record_refusal(self, refusal: NewRefusal) -> None:
        """Keep a refused request: when, why, which key, its body (redacted)."""
        row = self._codec.refusal_row(dataclasses.replace(refusal, at=self._now(refusal.at)))
        self._db.write(lambda conn: changes.record_refusal(conn, row))

    def refusals(
        self,
        *,
        since: datetime | None = None,
        reason: str | None = None,
        key_id: str | None = None,
        request_id: str | None = None,
        limit: int = 100,
    ) -> list[Refusal]:
        """Refused requests, newest first, at most ``limit``."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        query = queries.refused(
            since=None if since is None else aware_utc(since, "since"),
            reason=reason,
            key_id=key_id,
            request_id=request_id,
            limit=limit,
        )
        return self._db.read(lambda conn: [rows_refusal(row) for row in conn.execute(query)])

    def prune_refusals(self, *, older_than: datetime) -> int:
        """Forget refusals recorded before ``older_than``; returns how many."""
        cutoff = aware_utc(older_than, "older_than")
        return self._prune(functools.partial(changes.prune_refusals, cutoff=cutoff))

    # --- the state machine --------------------------------------------------------------

    def record_step(
        self,
        op_id: str,
        *,
        name: str,
        detail: JSONDict | None = None,
        nova_requests: int = 0,
        now: datetime | None = None,
    ) -> None:
        """Append a step to the operation (numbered 1, 2, ... in the order recorded) and
        add its Nova requests to the operation's total. Allowed after the outcome too
        (to record that it was reported, say)."""
        at = self._now(now)
        check_length("step name", name, "step")
        if nova_requests < 0:
            raise ValueError(f"nova_requests cannot be negative, got {nova_requests}")
        document = self._codec.document(detail or {})
        self._db.write(
            lambda conn: changes.record_step(
                conn,
                op_id,
                name=name,
                detail=document,
                nova_requests=nova_requests,
                at=at,
            )
        )

    def advance(
        self,
        op_id: str,
        *,
        phase: str,
        state: JSONDict,
        expect_version: int,
        now: datetime | None = None,
    ) -> Operation:
        """Move the operation to ``phase`` with ``state`` if it is still at
        ``expect_version`` (else :class:`StaleOperation`) and unfinished (else
        :class:`OperationFinished`). Returns it, one version further."""
        at = self._now(now)
        check_length("phase", phase)
        document = self._codec.document(state)
        return self._db.write(
            lambda conn: changes.advance(
                conn,
                op_id,
                phase=phase,
                state=document,
                expect_version=expect_version,
                at=at,
            )
        )

    def finish(
        self,
        op_id: str,
        *,
        outcome: str,
        reason: str | None = None,
        expect_version: int | None = None,
        now: datetime | None = None,
    ) -> Operation:
        """Give the operation its outcome, exactly once: finishing it again raises
        :class:`OperationFinished`; with ``expect_version``, an operation changed since
        raises :class:`StaleOperation`."""
        at = self._now(now)
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r}; expected one of {', '.join(OUTCOMES)}")
        text = self._codec.text(reason)
        return self._db.write(
            lambda conn: changes.finish(
                conn,
                op_id,
                outcome=outcome,
                reason=text,
                expect_version=expect_version,
                at=at,
            )
        )

    # --- who works on what --------------------------------------------------------------

    def claim(self, op_id: str, *, owner: str, now: datetime | None = None) -> Operation | None:
        """Take the unfinished operation for ``owner`` until now + the journal's lease,
        unless another owner's lease still holds. Returns it (one version further when
        the owner changed), or None when someone else has it or it is finished."""
        at = self._now(now)
        check_length("owner", owner)
        until = at + self._lease
        return self._db.write(
            lambda conn: changes.claim(conn, op_id, owner=owner, at=at, lease_until=until)
        )

    def renew(self, owner: str, *, until: datetime) -> int:
        """Extend ``owner``'s leases on its unfinished operations to ``until``; returns how
        many it still holds (a daemon that counts fewer than it works on lost some)."""
        lease_until = aware_utc(until, "until")
        return self._db.write(lambda conn: changes.renew(conn, owner, lease_until=lease_until))

    def release(self, owner: str) -> int:
        """Give up ``owner``'s unfinished operations (on a clean shutdown), so another
        daemon may claim them at once; returns how many."""
        return self._db.write(lambda conn: changes.release(conn, owner))

    def place(
        self,
        op_id: str,
        *,
        host: str | None,
        availability_zone: str | None,
        now: datetime | None = None,
    ) -> None:
        """Record where the operation's server runs, as learnt from Nova; a host or zone
        already recorded (from the event) is kept."""
        check_length("host", host)
        check_length("availability_zone", availability_zone)
        self._db.write(
            lambda conn: changes.place(conn, op_id, host=host, availability_zone=availability_zone)
        )

    def unfinished(self) -> list[Operation]:
        """Every operation without an outcome, oldest first: what to resume."""
        return self._list(queries.unfinished())

    def in_flight(self, server_id: str) -> list[Operation]:
        """The unfinished operations on one server, oldest first."""
        return self._list(queries.unfinished(server_id))

    # --- queries ------------------------------------------------------------------------

    def get(self, op_id: str) -> Operation:
        """The operation; :class:`UnknownOperation` if there is none with this id."""
        return self._db.read(lambda conn: queries.get(conn, op_id))

    def steps(self, op_id: str) -> list[Step]:
        """The operation's steps in the order recorded."""
        return self._db.read(lambda conn: queries.steps_of(conn, op_id))

    def server_ids(self, ref: str) -> tuple[str, ...]:
        """The servers ``ref`` names in the journal: a whole id, else the one id it
        is the start of, else the ids recorded under that name (a server deleted and
        booted again under its old name has two). Raises :class:`AmbiguousServer`
        when it is the start of several ids; empty when it names none."""
        found = self._db.read(lambda conn: conn.execute(queries.server_ids(ref)).all())
        ids = {server_id for server_id, _ in found}
        if ref in ids:
            return (ref,)
        prefixed = sorted(i for i in ids if i.startswith(ref))
        if len(prefixed) > 1:
            raise AmbiguousServer(
                f"{ref!r} is the start of {len(prefixed)} server ids "
                f"({', '.join(prefixed[:3])}{', ...' if len(prefixed) > 3 else ''}): "
                "give more of it"
            )
        if prefixed:
            return tuple(prefixed)
        return tuple(sorted({server_id for server_id, name in found if name == ref}))

    def history(
        self,
        *,
        server_id: str | None = None,
        policy: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        outcome: str | None = None,
        id_prefix: str | None = None,
        limit: int = 100,
        server: str | None = None,
    ) -> list[Operation]:
        """Operations created in [since, until), newest first, at most ``limit``; every
        filter given must hold (``id_prefix``: ids that start so, a whole id among them;
        ``server``: an id, the start of one, or a name, as :meth:`server_ids` reads it,
        with the operations recorded under that name before their server was known)."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        server_ids = self.server_ids(server) if server is not None else None
        by_name = server is not None and not any(i.startswith(server) for i in server_ids or ())
        query = queries.history(
            server_ids=server_ids,
            server_name=server if by_name else None,
            server_id=server_id,
            policy=policy,
            since=None if since is None else aware_utc(since, "since"),
            until=None if until is None else aware_utc(until, "until"),
            outcome=outcome,
            id_prefix=id_prefix,
            limit=limit,
        )
        return self._list(query)

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
        """How many operations were created since ``since``, for budgets and rate limits.
        Unfinished ones always count; finished ones unless their outcome is in
        ``exclude_outcomes`` (``("refused", "dry_run")``, say)."""
        query = queries.count(
            since=aware_utc(since, "since"),
            policy=policy,
            project_id=project_id,
            server_id=server_id,
            host=host,
            availability_zone=availability_zone,
            actions=actions,
            exclude_outcomes=exclude_outcomes,
        )
        return int(self._db.read(lambda conn: conn.execute(query).scalar_one()))

    def count_unfinished(
        self, *, policy: str | None = None, exclude_phases: Collection[str] = ()
    ) -> int:
        """How many operations (of ``policy``) have no outcome yet, leaving out those in
        ``exclude_phases`` (held before they run, say): the concurrency."""
        query = queries.count_unfinished(policy=policy, exclude_phases=exclude_phases)
        return int(self._db.read(lambda conn: conn.execute(query).scalar_one()))

    def count_unfinished_in(self, phases: Collection[str]) -> dict[str, int]:
        """How many operations have no outcome yet in each of ``phases`` (zeros
        included): those held before they run, say."""
        query = queries.count_unfinished_in(phases)
        rows = self._db.read(lambda conn: conn.execute(query).all())
        found: dict[str, int] = {str(phase): int(n) for phase, n in rows}
        return {phase: found.get(phase, 0) for phase in phases}

    def count_finished(
        self, *, since: datetime, outcomes: Collection[str], policy: str | None = None
    ) -> int:
        """How many operations (of ``policy``) finished since ``since`` with one of
        ``outcomes``: the failures a circuit breaker counts."""
        query = queries.count_finished(
            since=aware_utc(since, "since"), policy=policy, outcomes=outcomes
        )
        return int(self._db.read(lambda conn: conn.execute(query).scalar_one()))

    def activity(self, server_id: str) -> list[Activity]:
        """Every operation on the server, in a few columns: what the guards about one
        server (busy, loop, cooldown) read, in one indexed query."""
        return self.activities([server_id])[server_id]

    def activities(self, server_ids: Collection[str]) -> dict[str, list[Activity]]:
        """:meth:`activity` of several servers in one read, by server (every one of
        ``server_ids`` a key, an empty list when nothing was done there)."""
        ids = sorted(set(server_ids))
        found: dict[str, list[Activity]] = {server_id: [] for server_id in ids}

        def read(conn: Connection) -> None:
            for start in range(0, len(ids), queries.IN_CHUNK):
                query = queries.activities(ids[start : start + queries.IN_CHUNK])
                for row in conn.execute(query):
                    found[row.server_id].append(
                        Activity(
                            row.policy, row.status, row.outcome, row.created_at, row.finished_at
                        )
                    )

        if ids:
            self._db.read(read)
        return found

    def placements(self, server_ids: Collection[str]) -> dict[str, tuple[str | None, str | None]]:
        """:meth:`placement` of several servers in one read, by server (every one of
        ``server_ids`` a key; (None, None) when no operation on it knew them)."""
        ids = sorted(set(server_ids))
        found: dict[str, tuple[str | None, str | None]] = {}

        def read(conn: Connection) -> None:
            for start in range(0, len(ids), queries.IN_CHUNK):
                query = queries.placements(ids[start : start + queries.IN_CHUNK])
                for row in conn.execute(query):
                    found.setdefault(row.server_id, (row.host, row.availability_zone))

        if ids:
            self._db.read(read)
        return {server_id: found.get(server_id, (None, None)) for server_id in ids}

    def placement(self, server_id: str) -> tuple[str | None, str | None]:
        """The (host, availability zone) of the server as the latest operation on it that
        knew them recorded; (None, None) if none did."""
        query = queries.placement(server_id)
        row = self._db.read(lambda conn: conn.execute(query).first())
        return (None, None) if row is None else (row.host, row.availability_zone)

    # --- circuit breakers ---------------------------------------------------------------

    def breakers(self, scopes: Collection[str] | None = None) -> dict[str, Breaker]:
        """The breakers of ``scopes`` (every one when None) that have a row, by scope;
        a scope without one is closed. One primary-key lookup."""
        wanted = None if scopes is None else tuple(scopes)
        return self._db.read(lambda conn: queries.breakers(conn, wanted))

    def save_breaker(
        self, breaker: Breaker, *, expect_version: int | None, now: datetime | None = None
    ) -> Breaker | None:
        """Store the breaker's new state if it is still at ``expect_version`` (None: it
        has no row yet); returns it as stored, or None when another thread or daemon
        changed it first (read it again and decide again)."""
        at = self._now(now)
        version = 0 if expect_version is None else expect_version + 1
        row = breaker_row(breaker, reason=self._codec.text(breaker.reason), at=at, version=version)
        try:
            saved = self._db.write(
                lambda conn: changes.save_breaker(conn, row, expect_version=expect_version)
            )
        except IntegrityError:  # another daemon created the row first
            return None
        return self.breakers([breaker.scope]).get(breaker.scope) if saved else None

    def reset_breakers(
        self, scopes: Collection[str] | None = None, *, now: datetime | None = None
    ) -> list[str]:
        """Close the breakers of ``scopes`` (every one when None), forgetting the failures
        so far; returns the scopes that were open or half-open."""
        at = self._now(now)
        wanted = None if scopes is None else tuple(scopes)
        return self._db.write(lambda conn: changes.reset_breakers(conn, wanted, at=at))

    def last_finished(
        self,
        *,
        server_id: str,
        policy: str | None = None,
        exclude_outcomes: Collection[str] = (),
    ) -> Operation | None:
        """The operation on the server (by that policy) that finished last, for cooldowns."""
        query = queries.last_finished(
            server_id=server_id, policy=policy, exclude_outcomes=exclude_outcomes
        )
        found = self._list(query)
        return found[0] if found else None

    # --- retention ----------------------------------------------------------------------

    def prune(self, *, finished_before: datetime) -> int:
        """Delete operations finished before ``finished_before``, with their steps;
        returns how many operations. Unfinished operations are never pruned."""
        cutoff = aware_utc(finished_before, "finished_before")
        return self._prune(functools.partial(changes.prune_operations, cutoff=cutoff))

    # --- helpers ------------------------------------------------------------------------

    def _now(self, now: datetime | None) -> datetime:
        return aware_utc(self._clock() if now is None else now, "now")

    def _list(self, query: queries.Query) -> list[Operation]:
        return self._db.read(lambda conn: queries.listed(conn, query))

    def _prune(self, batch: Callable[..., tuple[int, int]]) -> int:
        """Run ``batch`` (found, deleted) in transactions of its own until it runs dry."""
        total = 0
        while True:
            found, deleted = self._db.write(functools.partial(batch, size=PRUNE_BATCH))
            total += deleted
            if found < PRUNE_BATCH:
                return total
