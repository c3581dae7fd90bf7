"""Let several Nova processes share SQLite files without "database is locked".

Only used when the box falls back to SQLite (no MariaDB or PostgreSQL). Three
processes (API, conductor, scheduler) write the same files; with SQLite's
defaults the first resize fails with "database is locked". Write-ahead
logging, transactions that take the write lock when they begin, and a long
busy timeout make them wait for each other instead. Installed through
SQLAlchemy engine events in each process, before Nova creates its engines.
"""

import sqlite3
from typing import Any

BUSY_TIMEOUT_MS = 30_000


def install() -> None:
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    event.listen(Engine, "connect", _on_connect)
    event.listen(Engine, "begin", _on_begin)


def _on_connect(dbapi_connection: Any, _record: Any) -> None:
    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    # Leave transaction control to _on_begin instead of the sqlite3 module.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.close()


def _on_begin(connection: Any) -> None:
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql("BEGIN IMMEDIATE")
