"""Create the journal: operations, their steps, processed messages.

Revision ID: 0001
Revises:
Create Date: 2025-11-25

Types are spelled out here rather than imported from journal/schema.py, so this revision
keeps building the same schema whatever later code declares.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

# Exact (case-sensitive) comparisons on MySQL/MariaDB, as on the other backends.
_MYSQL_TABLE: dict[str, Any] = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_bin",
}

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _utc() -> sa.types.TypeEngine[datetime]:
    return sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def _json() -> sa.types.TypeEngine[str]:
    return sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")


def _bigint_id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "operations",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("message_key", sa.String(255), nullable=False),
        sa.Column("policy", sa.String(255), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("project_id", sa.String(64), nullable=True),
        sa.Column("server_id", sa.String(64), nullable=True),
        sa.Column("server_name", sa.String(255), nullable=True),
        sa.Column("params", _json(), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("event", _json(), nullable=False),
        sa.Column("why", sa.Text(), nullable=False),
        sa.Column("request_id", sa.String(255), nullable=True),
        sa.Column("correlation_id", sa.String(255), nullable=True),
        sa.Column("reply_to", sa.String(255), nullable=True),
        sa.Column("deadline_at", _utc(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("phase", sa.String(64), nullable=False),
        sa.Column("state", _json(), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("nova_requests", sa.Integer(), nullable=False),
        sa.Column("step_count", sa.Integer(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.Column("finished_at", _utc(), nullable=True),
        sa.Column("owner", sa.String(255), nullable=True),
        sa.Column("lease_until", _utc(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_operations"),
        sa.CheckConstraint("status IN ('pending', 'running', 'done')", name="ck_operations_status"),
        sa.CheckConstraint("mode IN ('enforce', 'dry-run')", name="ck_operations_mode"),
        sa.CheckConstraint(
            "(status = 'done' AND outcome IS NOT NULL AND finished_at IS NOT NULL)"
            " OR (status <> 'done' AND outcome IS NULL AND finished_at IS NULL)",
            name="ck_operations_finished_once",
        ),
        **_MYSQL_TABLE,
    )
    for column in (
        "policy",
        "project_id",
        "server_id",
        "status",
        "created_at",
        "finished_at",
        "owner",
    ):
        op.create_index(f"ix_operations_{column}", "operations", [column])

    op.create_table(
        "steps",
        sa.Column("id", _bigint_id(), autoincrement=True, nullable=False),
        sa.Column("operation_id", sa.String(64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("detail", _json(), nullable=False),
        sa.Column("nova_requests", sa.Integer(), nullable=False),
        sa.Column("at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_steps"),
        sa.ForeignKeyConstraint(
            ["operation_id"],
            ["operations.id"],
            name="fk_steps_operation_id_operations",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("operation_id", "seq", name="uq_steps_operation_id_seq"),
        **_MYSQL_TABLE,
    )

    op.create_table(
        "processed_messages",
        sa.Column("id", _bigint_id(), autoincrement=True, nullable=False),
        sa.Column("message_key", sa.String(255), nullable=False),
        sa.Column("first_seen_at", _utc(), nullable=False),
        sa.Column("operation_ids", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_processed_messages"),
        sa.UniqueConstraint("message_key", name="uq_processed_messages_message_key"),
        **_MYSQL_TABLE,
    )
    op.create_index("ix_processed_messages_first_seen_at", "processed_messages", ["first_seen_at"])


def downgrade() -> None:
    op.drop_table("processed_messages")
    op.drop_table("steps")
    op.drop_table("operations")
