"""Record refused requests, and what each processed request said.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25

``refusals``: one row per request the daemon refused (dead-lettered) with the reason
and its body, redacted. ``processed_messages.fingerprint``: the SHA-256 of a processed
request and its signing key, so a request id used again for another request is told
from a redelivered copy.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

_MYSQL_TABLE: dict[str, Any] = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_bin",
}

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
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
        "refusals",
        sa.Column("id", _bigint_id(), autoincrement=True, nullable=False),
        sa.Column("at", _utc(), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("queue", sa.String(255), nullable=False),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("request_type", sa.String(255), nullable=True),
        sa.Column("request_id", sa.String(255), nullable=True),
        sa.Column("key_id", sa.String(255), nullable=True),
        sa.Column("message_id", sa.String(255), nullable=True),
        sa.Column("correlation_id", sa.String(255), nullable=True),
        sa.Column("body", _json(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_refusals"),
        **_MYSQL_TABLE,
    )
    for column in ("at", "reason", "request_id", "key_id"):
        op.create_index(f"ix_refusals_{column}", "refusals", [column])
    with op.batch_alter_table("processed_messages") as batch:
        batch.add_column(sa.Column("fingerprint", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("processed_messages") as batch:
        batch.drop_column("fingerprint")
    op.drop_table("refusals")
