"""Guards: where an operation runs (host, availability zone) and the circuit breakers.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25

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

_MYSQL_TABLE: dict[str, Any] = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_bin",
}

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _utc() -> sa.types.TypeEngine[datetime]:
    return sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    with op.batch_alter_table("operations") as batch:
        batch.add_column(sa.Column("host", sa.String(255), nullable=True))
        batch.add_column(sa.Column("availability_zone", sa.String(255), nullable=True))
    op.create_index("ix_operations_host", "operations", ["host"])
    op.create_index("ix_operations_availability_zone", "operations", ["availability_zone"])

    op.create_table(
        "breakers",
        sa.Column("scope", sa.String(300), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("opened_at", _utc(), nullable=True),
        sa.Column("closed_at", _utc(), nullable=True),
        sa.Column("trial_operation_id", sa.String(64), nullable=True),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("scope", name="pk_breakers"),
        sa.CheckConstraint("state IN ('closed', 'open', 'half_open')", name="ck_breakers_state"),
        **_MYSQL_TABLE,
    )


def downgrade() -> None:
    op.drop_table("breakers")
    op.drop_index("ix_operations_availability_zone", table_name="operations")
    op.drop_index("ix_operations_host", table_name="operations")
    with op.batch_alter_table("operations") as batch:
        batch.drop_column("availability_zone")
        batch.drop_column("host")
