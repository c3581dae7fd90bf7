"""The journal's tables, as SQLAlchemy Core metadata.

This is the schema the code expects; the migrations in ``journal/migrations/versions``
build it in a database, and a test checks that the two never drift apart. Change both
together: see docs/journal.md, "Migrations".

Portable across SQLite, PostgreSQL and MariaDB/MySQL: JSON documents are TEXT
(MEDIUMTEXT on MySQL, whose TEXT stops at 64 KiB), timestamps are UTC with microseconds
and always read back timezone-aware.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Final

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.types import TypeDecorator, TypeEngine

__all__ = [
    "KEY_LENGTH",
    "UTCDateTime",
    "breakers",
    "metadata",
    "operations",
    "processed_messages",
    "refusals",
    "steps",
]

#: Longest message key stored as is; longer keys are stored as their SHA-256.
KEY_LENGTH: Final = 255

NAMING_CONVENTION: Final = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend.

    PostgreSQL keeps the zone (``timestamptz``); SQLite and MySQL keep a naive UTC value
    (MySQL as ``DATETIME(6)``, not its second-resolution default). Naive datetimes are
    refused on the way in, and values always come back aware, in UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} given to the journal")
        utc = value.astimezone(timezone.utc)
        return utc if dialect.name == "postgresql" else utc.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


def _json() -> TypeEngine[str]:
    return Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")


def _bigint_id() -> TypeEngine[int]:
    # SQLite only auto-increments an INTEGER PRIMARY KEY (an alias of the rowid).
    return BigInteger().with_variant(Integer(), "sqlite")


#: On MySQL/MariaDB: transactions, and identifiers compared exactly (case-sensitive) as on
#: PostgreSQL and SQLite, so "Req-1" and "req-1" are two messages, not a duplicate.
MYSQL_TABLE: Final[dict[str, Any]] = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_bin",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

#: One row per operation: what caused it, what it does, where its state machine is, how
#: it ended. ``version`` grows with every change of phase/state/owner/outcome.
operations = Table(
    "operations",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("message_key", String(KEY_LENGTH), nullable=False),
    Column("policy", String(255), nullable=False, index=True),
    Column("action", String(32), nullable=False),
    Column("project_id", String(64), nullable=True, index=True),
    Column("server_id", String(64), nullable=True, index=True),
    Column("server_name", String(255), nullable=True),
    Column("host", String(255), nullable=True, index=True),
    Column("availability_zone", String(255), nullable=True, index=True),
    Column("params", _json(), nullable=False),
    Column("mode", String(16), nullable=False),
    Column("event", _json(), nullable=False),
    Column("why", Text(), nullable=False),
    Column("request_id", String(255), nullable=True),
    Column("correlation_id", String(255), nullable=True),
    Column("reply_to", String(255), nullable=True),
    Column("deadline_at", UTCDateTime(), nullable=True),
    Column("status", String(16), nullable=False, index=True),
    Column("phase", String(64), nullable=False),
    Column("state", _json(), nullable=False),
    Column("outcome", String(32), nullable=True),
    Column("reason", Text(), nullable=True),
    Column("nova_requests", Integer(), nullable=False),
    Column("step_count", Integer(), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False, index=True),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("finished_at", UTCDateTime(), nullable=True, index=True),
    Column("owner", String(255), nullable=True, index=True),
    Column("lease_until", UTCDateTime(), nullable=True),
    Column("version", Integer(), nullable=False),
    CheckConstraint("status IN ('pending', 'running', 'done')", name="status"),
    CheckConstraint("mode IN ('enforce', 'dry-run')", name="mode"),
    CheckConstraint(
        "(status = 'done' AND outcome IS NOT NULL AND finished_at IS NOT NULL)"
        " OR (status <> 'done' AND outcome IS NULL AND finished_at IS NULL)",
        name="finished_once",
    ),
    **MYSQL_TABLE,
)

#: The steps of every operation, numbered from 1 per operation in the order recorded.
steps = Table(
    "steps",
    metadata,
    Column("id", _bigint_id(), primary_key=True, autoincrement=True),
    Column(
        "operation_id",
        String(64),
        ForeignKey("operations.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("seq", Integer(), nullable=False),
    Column("name", String(128), nullable=False),
    Column("detail", _json(), nullable=False),
    Column("nova_requests", Integer(), nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    UniqueConstraint("operation_id", "seq"),
    **MYSQL_TABLE,
)

#: Every message (notification or request) already acted upon, for de-duplication.
processed_messages = Table(
    "processed_messages",
    metadata,
    Column("id", _bigint_id(), primary_key=True, autoincrement=True),
    Column("message_key", String(KEY_LENGTH), nullable=False),
    Column("first_seen_at", UTCDateTime(), nullable=False, index=True),
    Column("operation_ids", Text(), nullable=False),
    #: SHA-256 (hex) of a request and its signing key: a reused request id shows here.
    Column("fingerprint", String(64), nullable=True),
    UniqueConstraint("message_key"),
    **MYSQL_TABLE,
)

#: Every request refused before a decision (dead-lettered), with why and its body (redacted).
refusals = Table(
    "refusals",
    metadata,
    Column("id", _bigint_id(), primary_key=True, autoincrement=True),
    Column("at", UTCDateTime(), nullable=False, index=True),
    Column("source", String(16), nullable=False),
    Column("queue", String(255), nullable=False),
    Column("reason", String(64), nullable=False, index=True),
    Column("detail", Text(), nullable=False),
    Column("request_type", String(255), nullable=True),
    Column("request_id", String(255), nullable=True, index=True),
    Column("key_id", String(255), nullable=True, index=True),
    Column("message_id", String(255), nullable=True),
    Column("correlation_id", String(255), nullable=True),
    Column("body", _json(), nullable=False),
    **MYSQL_TABLE,
)

#: One circuit breaker per scope (``global``, ``policy:<name>``); a scope without a row is
#: closed. ``closed_at`` is when it last closed (reset, or a trial that succeeded): failures
#: before it no longer count. ``version`` grows with every change (compare-and-set).
breakers = Table(
    "breakers",
    metadata,
    Column("scope", String(300), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("failures", Integer(), nullable=False),
    Column("reason", Text(), nullable=True),
    Column("opened_at", UTCDateTime(), nullable=True),
    Column("closed_at", UTCDateTime(), nullable=True),
    Column("trial_operation_id", String(64), nullable=True),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("version", Integer(), nullable=False),
    CheckConstraint("state IN ('closed', 'open', 'half_open')", name="state"),
    **MYSQL_TABLE,
)
