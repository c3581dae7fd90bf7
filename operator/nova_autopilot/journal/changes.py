"""Writing the journal: each function is the body of one transaction.

They only touch the database (a transaction chosen as a deadlock victim is run again)
and decide on rows read under lock or on a compare-and-set of ``version``, so two
threads or two daemons can never both win.
"""

from __future__ import annotations

import functools
import itertools
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Dialect, Table, delete, func, insert, select, update

from nova_autopilot.journal import queries
from nova_autopilot.journal.errors import OperationFinished, StaleOperation, UnknownOperation
from nova_autopilot.journal.records import Accepted, Duplicate, JSONDict, Operation
from nova_autopilot.journal.rows import operation_ids_text
from nova_autopilot.journal.schema import breakers, refusals, steps
from nova_autopilot.journal.schema import operations as ops
from nova_autopilot.journal.schema import processed_messages as messages

__all__ = [
    "accept",
    "accept_many",
    "advance",
    "claim",
    "finish",
    "place",
    "probe",
    "prune_messages",
    "prune_operations",
    "prune_refusals",
    "record_refusal",
    "record_step",
    "release",
    "renew",
    "reset_breakers",
    "save_breaker",
]


def accept(
    conn: Connection,
    *,
    key: str,
    ids: tuple[str, ...],
    rows: Sequence[JSONDict],
    at: datetime,
    fingerprint: str | None = None,
) -> None:
    """Insert the message first: its unique key makes a second copy fail right there."""
    conn.execute(
        insert(messages).values(
            message_key=key,
            first_seen_at=at,
            operation_ids=operation_ids_text(ids),
            fingerprint=fingerprint,
        )
    )
    if rows:
        conn.execute(insert(ops), list(rows))


def probe(conn: Connection, *, key: str, at: datetime) -> None:
    """Insert a processed message ``key`` and delete it again: a transaction that
    writes (and so, committed, reaches the disk) and leaves nothing behind."""
    accept(conn, key=key, ids=(), rows=[], at=at)
    conn.execute(delete(messages).where(messages.c.message_key == key))


@dataclass(frozen=True, slots=True)
class Batched:
    """One message of :func:`accept_many`, its rows made, each with its operation as
    reading the row back gives it."""

    key: str
    ids: tuple[str, ...]
    records: Sequence[tuple[JSONDict, Operation]]
    fingerprint: str | None


def accept_many(
    conn: Connection, *, batch: Sequence[Batched], at: datetime
) -> list[Accepted | Duplicate]:
    """Several messages in one transaction, inserted together; one repeated within
    the batch is a duplicate of its first copy. A key the journal holds already
    fails the insert (the caller then goes one by one, and learns which)."""
    first: dict[str, Duplicate] = {}
    outcomes: list[Accepted | Duplicate] = []
    message_rows: list[JSONDict] = []
    operation_rows: list[JSONDict] = []
    for item in batch:
        seen = first.get(item.key)
        if seen is not None:
            outcomes.append(seen)
            continue
        first[item.key] = Duplicate(item.key, at, item.ids, item.fingerprint)
        message_rows.append(
            {
                "message_key": item.key,
                "first_seen_at": at,
                "operation_ids": operation_ids_text(item.ids),
                "fingerprint": item.fingerprint,
            }
        )
        operation_rows.extend(row for row, _ in item.records)
        outcomes.append(
            Accepted(
                message_key=item.key,
                operation_ids=item.ids,
                at=at,
                operations=tuple(operation for _, operation in item.records),
            )
        )
    insert_rows(conn, messages, message_rows)
    insert_rows(conn, ops, operation_rows)
    return outcomes


#: Rows in one INSERT on SQLite, whose statement takes at most 999 parameters
#: before SQLite 3.32 (32,766 since): a batch of journal rows is a few statements.
_SQLITE_PARAMETERS = 999


@dataclass(frozen=True, slots=True)
class _Prepared:
    """An INSERT of given columns as the driver takes it: its text, its parameters'
    names in order, and the parameters whose column type has a bind processor (by
    position when the driver's parameters are positional, else by name), with it."""

    sql: str
    names: tuple[str, ...]
    processed: tuple[tuple[int | str, Callable[[Any], Any]], ...]


@functools.lru_cache(maxsize=64)
def _prepared(dialect: Dialect, table: Table, columns: tuple[str, ...]) -> _Prepared:
    compiled = insert(table).compile(dialect=dialect, column_keys=list(columns))
    names = tuple(compiled.positiontup or ()) if dialect.positional else columns
    processed = tuple(
        (index if dialect.positional else name, process)
        for index, name in enumerate(names)
        if (process := table.c[name].type.dialect_impl(dialect).bind_processor(dialect))
    )
    return _Prepared(str(compiled), names, processed)


@functools.lru_cache(maxsize=256)
def _many_rows(sql: str, count: int) -> str:
    """``sql``, a one-row INSERT with positional parameters, for ``count`` rows at once."""
    head, values = sql.split(" VALUES ", 1)
    return f"{head} VALUES {', '.join([values] * count)}"


def insert_rows(conn: Connection, table: Table, rows: Sequence[JSONDict]) -> None:
    """Insert ``rows`` (dicts of the same columns): the same statement and values as
    ``conn.execute(insert(table), rows)``, each value through its column type's bind
    processor, without SQLAlchemy building each row's parameters anew (only the
    columns with a processor are touched, and a time the rows share, the batch's or
    a deadline, is processed once).

    On SQLite, many rows to a statement: the sqlite3 module lets go of the GIL for each
    step of a statement and must take it back, which under a busy daemon's other
    threads costs far more than the insert itself; elsewhere the driver's executemany
    (pipelined by psycopg, rewritten to multi-row statements by PyMySQL)."""
    if not rows:
        return
    prepared = _prepared(conn.dialect, table, tuple(rows[0]))
    positional = conn.dialect.positional
    if positional:
        ordered = operator.itemgetter(*prepared.names)
        if len(prepared.names) == 1:  # itemgetter of one name gives the value alone
            params: list[Any] = [[ordered(row)] for row in rows]
        else:
            params = [list(ordered(row)) for row in rows]
    else:
        params = [dict(row) for row in rows]
    for at, process in prepared.processed:
        done: dict[Any, Any] = {}
        for values in params:
            raw = values[at]
            if raw is None:
                continue
            key = _same_value(raw)
            if key not in done:
                done[key] = process(raw)
            values[at] = done[key]
    if not positional:
        conn.exec_driver_sql(prepared.sql, params)
        return
    if conn.dialect.name != "sqlite":
        conn.exec_driver_sql(prepared.sql, [tuple(values) for values in params])
        return
    size = max(1, _SQLITE_PARAMETERS // len(prepared.names))
    for start in range(0, len(params), size):
        chunk = params[start : start + size]
        conn.exec_driver_sql(
            _many_rows(prepared.sql, len(chunk)), tuple(itertools.chain.from_iterable(chunk))
        )


def _same_value(raw: Any) -> Any:
    """What makes two values one for a bind processor: a datetime by its value, zone
    and fold (the rows' times are often equal: the batch's time, its deadlines); any
    other value by identity (the rows' values live until the insert is done)."""
    if type(raw) is datetime:
        return (raw, raw.tzinfo, raw.fold)
    return id(raw)


def record_step(
    conn: Connection,
    operation_id: str,
    *,
    name: str,
    detail: str,
    nova_requests: int,
    at: datetime,
) -> None:
    # Bumping the counter locks the operation's row: concurrent steps get distinct numbers.
    bumped = conn.execute(
        update(ops)
        .where(ops.c.id == operation_id)
        .values(
            step_count=ops.c.step_count + 1,
            nova_requests=ops.c.nova_requests + nova_requests,
            updated_at=at,
        )
    )
    if bumped.rowcount == 0:
        raise UnknownOperation(operation_id)
    seq = conn.execute(select(ops.c.step_count).where(ops.c.id == operation_id)).scalar_one()
    conn.execute(
        insert(steps).values(
            operation_id=operation_id,
            seq=seq,
            name=name,
            detail=detail,
            nova_requests=nova_requests,
            at=at,
        )
    )


def advance(
    conn: Connection,
    operation_id: str,
    *,
    phase: str,
    state: str,
    expect_version: int,
    at: datetime,
) -> Operation:
    changed = conn.execute(
        update(ops)
        .where(
            ops.c.id == operation_id,
            ops.c.version == expect_version,
            queries.UNFINISHED,
        )
        .values(
            phase=phase,
            state=state,
            status="running",
            version=expect_version + 1,
            updated_at=at,
        )
    )
    current = queries.get(conn, operation_id)
    if changed.rowcount == 1:
        return current
    if current.finished:
        raise OperationFinished(operation_id, current.outcome)
    raise StaleOperation(operation_id, expected=expect_version, actual=current.version)


def finish(
    conn: Connection,
    operation_id: str,
    *,
    outcome: str,
    reason: str | None,
    expect_version: int | None,
    at: datetime,
) -> Operation:
    current = queries.get(conn, operation_id, lock=True)
    if current.finished:
        raise OperationFinished(operation_id, current.outcome)
    if expect_version is not None and current.version != expect_version:
        raise StaleOperation(operation_id, expected=expect_version, actual=current.version)
    conn.execute(
        update(ops)
        .where(ops.c.id == operation_id, ops.c.version == current.version)
        .values(
            status="done",
            outcome=outcome,
            reason=reason,
            finished_at=at,
            updated_at=at,
            version=current.version + 1,
        )
    )
    return queries.get(conn, operation_id)


def place(
    conn: Connection, operation_id: str, *, host: str | None, availability_zone: str | None
) -> None:
    """Fill in where the operation's server runs; what is already known stays."""
    conn.execute(
        update(ops)
        .where(ops.c.id == operation_id)
        .values(
            host=func.coalesce(ops.c.host, host),
            availability_zone=func.coalesce(ops.c.availability_zone, availability_zone),
        )
    )


def save_breaker(conn: Connection, row: JSONDict, *, expect_version: int | None) -> bool:
    """Write a breaker's new state if nobody changed it since ``expect_version`` was read
    (None: it had no row yet). False when someone else changed it first."""
    if expect_version is None:
        found = conn.execute(
            select(breakers.c.scope).where(breakers.c.scope == row["scope"]).with_for_update()
        ).first()
        if found is not None:
            return False
        conn.execute(insert(breakers).values(**row))
        return True
    changed = conn.execute(
        update(breakers)
        .where(breakers.c.scope == row["scope"], breakers.c.version == expect_version)
        .values(**{key: value for key, value in row.items() if key != "scope"})
    )
    return changed.rowcount == 1


def reset_breakers(conn: Connection, scopes: Sequence[str] | None, *, at: datetime) -> list[str]:
    """Close the breakers of ``scopes`` (every one when None) and forget their failures so
    far; returns the scopes that were open or half-open."""
    query = select(breakers.c.scope, breakers.c.state).with_for_update()
    if scopes is not None:
        query = query.where(breakers.c.scope.in_(list(scopes)))
    found = conn.execute(query).all()
    if not found:
        return []
    conn.execute(
        update(breakers)
        .where(breakers.c.scope.in_([row.scope for row in found]))
        .values(
            state="closed",
            closed_at=at,
            trial_operation_id=None,
            updated_at=at,
            version=breakers.c.version + 1,
        )
    )
    return sorted(row.scope for row in found if row.state != "closed")


def claim(
    conn: Connection, operation_id: str, *, owner: str, at: datetime, lease_until: datetime
) -> Operation | None:
    current = queries.get(conn, operation_id, lock=True)
    if current.finished:
        return None
    held = current.lease_until is not None and current.lease_until > at
    if current.owner not in (None, owner) and held:
        return None
    conn.execute(
        update(ops)
        .where(ops.c.id == operation_id, ops.c.version == current.version)
        .values(
            owner=owner,
            lease_until=lease_until,
            status="running",
            # A new owner invalidates what the previous one read: its next advance fails.
            version=current.version + (0 if current.owner == owner else 1),
            updated_at=at,
        )
    )
    return queries.get(conn, operation_id)


def renew(conn: Connection, owner: str, *, lease_until: datetime) -> int:
    statement = (
        update(ops).where(ops.c.owner == owner, queries.UNFINISHED).values(lease_until=lease_until)
    )
    return conn.execute(statement).rowcount


def release(conn: Connection, owner: str) -> int:
    statement = (
        update(ops)
        .where(ops.c.owner == owner, queries.UNFINISHED)
        .values(owner=None, lease_until=None)
    )
    return conn.execute(statement).rowcount


def prune_operations(conn: Connection, *, cutoff: datetime, size: int) -> tuple[int, int]:
    """Delete up to ``size`` operations finished before ``cutoff``, with their steps.
    Returns (operations found, operations deleted)."""
    ids = list(conn.execute(queries.finished_before(cutoff).limit(size)).scalars())
    if not ids:
        return 0, 0
    conn.execute(delete(steps).where(steps.c.operation_id.in_(ids)))
    return len(ids), conn.execute(delete(ops).where(ops.c.id.in_(ids))).rowcount


def record_refusal(conn: Connection, row: JSONDict) -> None:
    conn.execute(insert(refusals).values(**row))


def prune_refusals(conn: Connection, *, cutoff: datetime, size: int) -> tuple[int, int]:
    """Delete up to ``size`` refusals recorded before ``cutoff``; (found, deleted)."""
    ids = list(conn.execute(queries.refusals_before(cutoff).limit(size)).scalars())
    if not ids:
        return 0, 0
    return len(ids), conn.execute(delete(refusals).where(refusals.c.id.in_(ids))).rowcount


def prune_messages(conn: Connection, *, cutoff: datetime, size: int) -> tuple[int, int]:
    """Delete up to ``size`` processed messages first seen before ``cutoff``.
    Returns (messages found, messages deleted)."""
    ids = list(conn.execute(queries.messages_before(cutoff).limit(size)).scalars())
    if not ids:
        return 0, 0
    return len(ids), conn.execute(delete(messages).where(messages.c.id.in_(ids))).rowcount
