"""The machine's database servers, on which tests create databases of their own.

PostgreSQL on 127.0.0.1:5432 (user postgres, trust authentication) and MariaDB on
127.0.0.1:3306 (root, no password); ``JOURNAL_TEST_POSTGRESQL`` and
``JOURNAL_TEST_MARIADB`` override them with a URL whose database part is ignored.
Every database a test creates is named after its process and a random part (so
parallel workers never meet) and dropped afterwards. When a server is down, the
tests that need it are skipped with a loud reason, except in CI (``CI`` set),
where they fail.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from tests.unavailable import unavailable


@dataclass(frozen=True)
class Server:
    """A database server on which the tests may create and drop databases."""

    name: str
    url: str  # any database on it; the tests replace the database part

    def url_of(self, database: str) -> str:
        return make_url(self.url).set(database=database).render_as_string(hide_password=False)

    @property
    def admin_url(self) -> str:
        return self.url_of("postgres" if self.name == "postgresql" else "")

    def _admin(self) -> sa.Engine:
        return sa.create_engine(self.admin_url, isolation_level="AUTOCOMMIT")

    def ping(self) -> None:
        engine = sa.create_engine(self.admin_url, connect_args={"connect_timeout": 5})
        try:
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        finally:
            engine.dispose()

    def create_database(self) -> str:
        name = f"journal_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        engine = self._admin()
        try:
            with engine.connect() as conn:
                conn.execute(sa.text(f"CREATE DATABASE {self._quoted(name)}"))
        finally:
            engine.dispose()
        return name

    def drop_database(self, name: str) -> None:
        force = " WITH (FORCE)" if self.name == "postgresql" else ""
        engine = self._admin()
        try:
            with engine.connect() as conn:
                conn.execute(sa.text(f"DROP DATABASE IF EXISTS {self._quoted(name)}{force}"))
        finally:
            engine.dispose()

    def _quoted(self, name: str) -> str:
        return f'"{name}"' if self.name == "postgresql" else f"`{name}`"


SERVERS = {
    "postgresql": Server(
        "postgresql",
        os.environ.get("JOURNAL_TEST_POSTGRESQL")
        or "postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
    ),
    "mariadb": Server(
        "mariadb",
        os.environ.get("JOURNAL_TEST_MARIADB")
        or "mysql+pymysql://root@127.0.0.1:3306/?charset=utf8mb4",
    ),
}


def reachable(name: str, *, what: str) -> Server:
    """The server ``name`` once it answered; ``what`` (the tests that need it) is
    skipped, or failed in CI, when it does not."""
    server = SERVERS[name]
    try:
        server.ping()
    except sa.exc.DBAPIError as error:
        address = make_url(server.url).render_as_string()
        unavailable(f"{name.upper()} UNAVAILABLE at {address}, {what} did not run: {error.orig}")
    return server


@contextmanager
def fresh_database(server: Server) -> Iterator[str]:
    """A new empty database on ``server``, dropped afterwards; yields its URL."""
    name = server.create_database()
    try:
        yield server.url_of(name)
    finally:
        server.drop_database(name)
