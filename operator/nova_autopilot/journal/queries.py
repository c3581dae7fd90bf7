"""Reading the journal: the statements behind get, steps, history, guards and pruning."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, and_, exists, func, or_, select

from nova_autopilot.journal import rows
from nova_autopilot.journal.errors import DuplicateOperation, UnknownOperation
from nova_autopilot.journal.records import STATUSES, Breaker, Duplicate, Operation, Step
from nova_autopilot.journal.schema import breakers as breaker_table
from nova_autopilot.journal.schema import operations as ops
from nova_autopilot.journal.schema import processed_messages as messages
from nova_autopilot.journal.schema import refusals, steps

__all__ = [
    "IN_CHUNK",
    "Query",
    "activities",
    "breakers",
    "count",
    "count_finished",
    "count_unfinished",
    "duplicate",
    "finished_before",
    "firsts",
    "get",
    "history",
    "is_processed",
    "last_finished",
    "listed",
    "messages_before",
    "placement",
    "placements",
    "refusals_before",
    "refused",
    "steps_of",
    "unfinished",
]

Query = Select[Any]
#: Unfinished: written as the statuses it is (not "!= done"), so the status index serves
#: it however many finished operations the journal keeps.
UNFINISHED = ops.c.status.in_([status for status in STATUSES if status != "done"])
#: Values per ``IN (...)`` list, well under every backend's limit on bound parameters.
IN_CHUNK = 500

# The order of "oldest first" listings; ids break ties between operations of one message.
_OLDEST_FIRST = (ops.c.created_at, ops.c.id)


def get(conn: Connection, operation_id: str, *, lock: bool = False) -> Operation:
    """The operation, its row locked until the transaction ends when ``lock`` (SQLite:
    the whole database is, by the writing transaction)."""
    query = select(ops).where(ops.c.id == operation_id)
    row = conn.execute(query.with_for_update() if lock else query).one_or_none()
    if row is None:
        raise UnknownOperation(operation_id)
    return rows.operation(row)


def listed(conn: Connection, query: Select[Any]) -> list[Operation]:
    return [rows.operation(row) for row in conn.execute(query)]


def steps_of(conn: Connection, operation_id: str) -> list[Step]:
    query = select(steps).where(steps.c.operation_id == operation_id).order_by(steps.c.seq)
    found = [rows.step(row) for row in conn.execute(query)]
    if not found:
        get(conn, operation_id)  # an unknown id raises rather than look like "no steps yet"
    return found


def is_processed(key: str) -> Select[Any]:
    return select(exists().where(messages.c.message_key == key))


def duplicate(conn: Connection, key: str, ids: tuple[str, ...]) -> Duplicate:
    """What the first copy of the message ``key`` led to; called after an insert conflict.
    If the message is in fact new, the conflict was an operation id already taken."""
    first = conn.execute(select(messages).where(messages.c.message_key == key)).one_or_none()
    if first is not None:
        return Duplicate(
            message_key=key,
            first_seen_at=first.first_seen_at,
            operation_ids=rows.operation_ids(first.operation_ids),
            fingerprint=first.fingerprint,
        )
    taken = conn.execute(select(ops.c.id).where(ops.c.id.in_(ids))).scalars()
    raise DuplicateOperation(next(iter(taken), ids[0] if ids else "?"))


def firsts(conn: Connection, keys: Collection[str]) -> dict[str, Duplicate]:
    """The first copies of the messages ``keys`` that the journal holds, by key."""
    found: dict[str, Duplicate] = {}
    wanted = sorted(set(keys))
    for start in range(0, len(wanted), IN_CHUNK):
        chunk = wanted[start : start + IN_CHUNK]
        for row in conn.execute(select(messages).where(messages.c.message_key.in_(chunk))):
            found[row.message_key] = Duplicate(
                message_key=row.message_key,
                first_seen_at=row.first_seen_at,
                operation_ids=rows.operation_ids(row.operation_ids),
                fingerprint=row.fingerprint,
            )
    return found


def unfinished(server_id: str | None = None) -> Select[Any]:
    query = select(ops).where(UNFINISHED, *_equal(server_id=server_id))
    return query.order_by(*_OLDEST_FIRST)


def server_ids(ref: str) -> Select[Any]:
    """The distinct server ids ``ref`` names: ids equal to it or starting with it, and
    the ids recorded under it as a name (the caller tells them apart)."""
    named = or_(
        ops.c.server_id.startswith(ref, autoescape=True),
        ops.c.server_name == ref,
    )
    return (
        select(ops.c.server_id, ops.c.server_name)
        .where(ops.c.server_id.is_not(None), named)
        .distinct()
    )


def history(
    *,
    server_id: str | None,
    policy: str | None,
    since: datetime | None,
    until: datetime | None,
    outcome: str | None,
    id_prefix: str | None = None,
    limit: int,
    server_ids: Collection[str] | None = None,
    server_name: str | None = None,
) -> Select[Any]:
    query = select(ops).where(*_equal(server_id=server_id, policy=policy, outcome=outcome))
    if server_ids is not None or server_name is not None:
        named: list[ColumnElement[bool]] = [ops.c.server_id.in_(list(server_ids or ()))]
        if server_name is not None:
            named.append(ops.c.server_name == server_name)
        query = query.where(or_(*named))
    if id_prefix is not None:
        query = query.where(ops.c.id.startswith(id_prefix, autoescape=True))
    if since is not None:
        query = query.where(ops.c.created_at >= since)
    if until is not None:
        query = query.where(ops.c.created_at < until)
    return query.order_by(ops.c.created_at.desc(), ops.c.id.desc()).limit(limit)


def count(
    *,
    since: datetime,
    policy: str | None,
    project_id: str | None,
    server_id: str | None,
    host: str | None = None,
    availability_zone: str | None = None,
    actions: Collection[str] | None,
    exclude_outcomes: Collection[str],
) -> Select[Any]:
    query = (
        select(func.count())
        .select_from(ops)
        .where(
            ops.c.created_at >= since,
            *_equal(
                policy=policy,
                project_id=project_id,
                server_id=server_id,
                host=host,
                availability_zone=availability_zone,
            ),
        )
    )
    if actions is not None:
        query = query.where(ops.c.action.in_(list(actions)))
    if exclude_outcomes:
        query = query.where(
            or_(ops.c.outcome.is_(None), ops.c.outcome.not_in(list(exclude_outcomes)))
        )
    return query


def count_unfinished(*, policy: str | None, exclude_phases: Collection[str]) -> Select[Any]:
    query = select(func.count()).select_from(ops)
    query = query.where(UNFINISHED, *_equal(policy=policy))
    if exclude_phases:
        query = query.where(ops.c.phase.not_in(list(exclude_phases)))
    return query


def count_unfinished_in(phases: Collection[str]) -> Select[Any]:
    """(phase, count) of the unfinished operations in ``phases``."""
    return (
        select(ops.c.phase, func.count())
        .where(UNFINISHED, ops.c.phase.in_(list(phases)))
        .group_by(ops.c.phase)
    )


def count_finished(
    *, since: datetime, policy: str | None, outcomes: Collection[str]
) -> Select[Any]:
    return (
        select(func.count())
        .select_from(ops)
        .where(
            ops.c.finished_at >= since,
            ops.c.outcome.in_(list(outcomes)),
            *_equal(policy=policy),
        )
    )


def activities(server_ids: Collection[str]) -> Select[Any]:
    """The light columns of every operation on the servers, with each row's server."""
    columns = (ops.c.policy, ops.c.status, ops.c.outcome, ops.c.created_at, ops.c.finished_at)
    return select(ops.c.server_id, *columns).where(ops.c.server_id.in_(list(server_ids)))


def placements(server_ids: Collection[str]) -> Select[Any]:
    """What :func:`placement` reads, for several servers at once: every operation on
    them that knew its host or zone, latest first."""
    return (
        select(ops.c.server_id, ops.c.host, ops.c.availability_zone)
        .where(
            ops.c.server_id.in_(list(server_ids)),
            or_(ops.c.host.is_not(None), ops.c.availability_zone.is_not(None)),
        )
        .order_by(ops.c.created_at.desc(), ops.c.id.desc())
    )


def placement(server_id: str) -> Select[Any]:
    """The host and zone the latest operation on the server that knew them recorded."""
    return (
        select(ops.c.host, ops.c.availability_zone)
        .where(
            ops.c.server_id == server_id,
            or_(ops.c.host.is_not(None), ops.c.availability_zone.is_not(None)),
        )
        .order_by(ops.c.created_at.desc(), ops.c.id.desc())
        .limit(1)
    )


def breakers(conn: Connection, scopes: Collection[str] | None) -> dict[str, Breaker]:
    """The breakers of ``scopes`` that have a row (every one when None), by scope."""
    query = select(breaker_table)
    if scopes is not None:
        query = query.where(breaker_table.c.scope.in_(list(scopes)))
    found = (rows.breaker(row) for row in conn.execute(query.order_by(breaker_table.c.scope)))
    return {breaker.scope: breaker for breaker in found}


def last_finished(
    *, server_id: str, policy: str | None, exclude_outcomes: Collection[str]
) -> Select[Any]:
    query = select(ops).where(ops.c.status == "done", *_equal(server_id=server_id, policy=policy))
    if exclude_outcomes:
        query = query.where(ops.c.outcome.not_in(list(exclude_outcomes)))
    return query.order_by(ops.c.finished_at.desc(), ops.c.id.desc()).limit(1)


def finished_before(cutoff: datetime) -> Select[Any]:
    return select(ops.c.id).where(and_(ops.c.status == "done", ops.c.finished_at < cutoff))


def messages_before(cutoff: datetime) -> Select[Any]:
    return select(messages.c.id).where(messages.c.first_seen_at < cutoff)


def refusals_before(cutoff: datetime) -> Select[Any]:
    return select(refusals.c.id).where(refusals.c.at < cutoff)


def refused(
    *,
    since: datetime | None,
    reason: str | None,
    key_id: str | None,
    request_id: str | None,
    limit: int,
) -> Select[Any]:
    """Refused requests, newest first."""
    query = select(refusals)
    if since is not None:
        query = query.where(refusals.c.at >= since)
    for column, value in (("reason", reason), ("key_id", key_id), ("request_id", request_id)):
        if value is not None:
            query = query.where(refusals.c[column] == value)
    return query.order_by(refusals.c.at.desc(), refusals.c.id.desc()).limit(limit)


def _equal(**values: str | None) -> list[Any]:
    return [ops.c[column] == value for column, value in values.items() if value is not None]
