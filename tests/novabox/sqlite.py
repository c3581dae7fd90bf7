"""Let several Nova processes share SQLite files without "database is locked".

Only used when the box falls back to SQLite (no MariaDB or PostgreSQL). Three
processes (API, conductor, scheduler) write the same files; with SQLite's
defaults the first resize fails with "database is locked": a transaction that
began reading cannot take the write lock while another process holds it, and
SQLite gives up instead of waiting. Write-ahead logging, transactions that
take the write lock when they begin (``BEGIN IMMEDIATE``) and a long busy
timeout make the processes wait for each other instead.

oslo.db already takes transaction control away from the sqlite3 module and
emits ``BEGIN`` itself; this only turns that ``BEGIN`` into ``BEGIN
IMMEDIATE`` and sets the pragmas on each new connection. Installed through
SQLAlchemy engine events in each process, before Nova creates its engines.
"""

import sqlite3
from typing import Any

BUSY_TIMEOUT_MS = 30_000


def install() -> None:
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    event.listen(Engine, "connect", _on_connect)
    event.listen(Engine, "before_cursor_execute", _begin_immediate, retval=True)


def _on_connect(dbapi_connection: Any, _record: Any) -> None:
    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.close()


def _begin_immediate(
    connection: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
) -> tuple[str, Any]:
    if connection.dialect.name == "sqlite" and statement.strip().upper() == "BEGIN":
        return "BEGIN IMMEDIATE", parameters
    return statement, parameters
