"""The benchmarks' PostgreSQL: a database of a run's own on 127.0.0.1:5432, dropped
afterwards (``NOVA_AUTOPILOT_POSTGRES_HOST`` overrides the host)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

HOST = os.environ.get("NOVA_AUTOPILOT_POSTGRES_HOST", "127.0.0.1")
ADMIN = f"postgresql://postgres@{HOST}:5432/postgres"


@contextmanager
def postgresql(purpose: str) -> Iterator[str | None]:
    """The SQLAlchemy URL of a fresh database, or None when there is no PostgreSQL
    to reach or no driver to reach it with."""
    try:
        import psycopg
    except ImportError:
        yield None
        return
    name = f"bench_{purpose}_{uuid.uuid4().hex[:8]}"
    try:
        with psycopg.connect(ADMIN, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
    except psycopg.Error:
        yield None
        return
    try:
        yield f"postgresql+psycopg://postgres@{HOST}:5432/{name}"
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
