"""The journal on a real PostgreSQL and a real MariaDB.

The behaviour suites of tests/integration/journal/behaviour.py (``JournalBehaviour``,
``MigrationBehaviour``) run here once per server, plus what only a server shows.
Each run creates its own uniquely named databases and drops them afterwards; the
journal's tables are emptied before every test. The servers, and what happens when
one is down: tests/databases.py.
"""

from __future__ import annotations

import contextlib
import json
import random
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from nova_autopilot import cli
from nova_autopilot.journal import Accepted, Duplicate, Journal
from nova_autopilot.journal.schema import metadata
from tests.databases import SERVERS, Server, fresh_database, reachable
from tests.integration.journal.behaviour import (
    JOURNAL_TABLES,
    Clock,
    JournalBehaviour,
    MigrationBehaviour,
    OpenJournal,
    accepted_op,
    all_at_once,
    execute,
    new_op,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session", params=sorted(SERVERS))
def server(request: pytest.FixtureRequest) -> Server:
    return reachable(request.param, what="the journal's tests on it")


@pytest.fixture(scope="session")
def session_database(server: Server) -> Iterator[str]:
    """One migrated journal database per server for the whole run (of each worker)."""
    with fresh_database(server) as url:
        Journal.open(url).close()
        yield url


@pytest.fixture
def journal_url(session_database: str) -> str:
    engine = sa.create_engine(session_database)
    try:
        with engine.begin() as conn:
            for table in reversed(metadata.sorted_tables):
                conn.execute(table.delete())
    finally:
        engine.dispose()
    return session_database


@pytest.fixture
def fresh_url(server: Server) -> Iterator[str]:
    with fresh_database(server) as url:
        yield url


class TestJournalOnServers(JournalBehaviour):
    property_examples = 15

    def test_daemons_with_threads_working_one_stream_accept_every_message_once(
        self, open_journal: OpenJournal, clock: Clock
    ) -> None:
        daemons = [open_journal(clock=clock) for _ in range(4)]
        keys = [f"nova:msg-{n}" for n in range(25)]

        def work(index: int) -> tuple[int, int]:
            journal = daemons[index % len(daemons)]
            mine = random.Random(index).sample(keys, len(keys))
            results = [journal.accept(message_key=k, operations=[new_op()]) for k in mine]
            return (
                sum(isinstance(r, Accepted) for r in results),
                sum(isinstance(r, Duplicate) for r in results),
            )

        results = all_at_once(8, work)

        assert all(isinstance(r, tuple) for r in results), results
        assert sum(r[0] for r in results if isinstance(r, tuple)) == len(keys)
        assert sum(r[1] for r in results if isinstance(r, tuple)) == 7 * len(keys)
        assert len(daemons[0].unfinished()) == len(keys)

    def test_the_journal_reconnects_after_the_server_drops_its_connections(
        self, journal: Journal, server: Server, journal_url: str
    ) -> None:
        op = accepted_op(journal)
        database = make_url(journal_url).database

        _drop_connections(server, database)

        assert journal.get(op.id) == op
        assert isinstance(journal.accept(message_key="after-reconnect"), Accepted)

    def test_history_reads_an_operations_chain_from_this_server(
        self,
        journal: Journal,
        journal_url: str,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        op = accepted_op(journal, server_id="srv-h")
        call = {"call": "get_server", "method": "GET", "path": "/servers/{id}", "status": 200}
        journal.record_step(op.id, name="checked", detail={"calls": [call]}, nova_requests=1)
        journal.finish(op.id, outcome="confirmed")
        conf = tmp_path / "nova-autopilot.conf"
        conf.write_text(f"[journal]\nconnection = {journal_url}\n", encoding="utf-8")

        code = cli.main(["--config-file", str(conf), "history", "--json", "--server", "srv-h"])

        assert code == 0
        (chain,) = json.loads(capsys.readouterr().out)["operations"]
        assert (chain["id"], chain["outcome"], chain["nova_requests"]) == (op.id, "confirmed", 1)
        assert [(s["name"], s["calls"]) for s in chain["steps"]] == [("checked", [call])]


class TestMigrationsOnServers(MigrationBehaviour):
    def test_an_account_allowed_only_rows_works_once_an_administrator_migrated(
        self, server: Server, fresh_url: str
    ) -> None:
        Journal.open(fresh_url).close()
        database = make_url(fresh_url).database or ""

        with _row_only_account(server, database) as url:
            with Journal.open(url, migrate_schema=False) as journal:
                op = accepted_op(journal)
                journal.record_step(op.id, name="resize", detail={}, nova_requests=1)
                journal.finish(op.id, outcome="confirmed")
                assert journal.prune(finished_before=op.created_at + timedelta(days=1)) == 1
            with pytest.raises(sa.exc.DBAPIError):
                execute(url, "DROP TABLE steps")


@pytest.fixture
def mariadb_url() -> Iterator[str]:
    with fresh_database(reachable("mariadb", what="the journal's tests on it")) as url:
        yield url


def test_on_mariadb_the_tables_are_transactional_and_compare_identifiers_exactly(
    mariadb_url: str,
) -> None:
    Journal.open(mariadb_url).close()
    engine = sa.create_engine(mariadb_url)
    try:
        with engine.connect() as conn:
            tables = conn.execute(
                sa.text(
                    "SELECT table_name, engine, table_collation FROM information_schema.tables"
                    " WHERE table_schema = DATABASE()"
                )
            ).all()
    finally:
        engine.dispose()

    options = {name: (kind, collation) for name, kind, collation in tables}
    for table in JOURNAL_TABLES:
        assert options[table] == ("InnoDB", "utf8mb4_bin")


@contextlib.contextmanager
def _row_only_account(server: Server, database: str) -> Iterator[str]:
    """An account with the privileges docs/journal.md lists for daemons that only
    read and write rows; yields the URL to the database with it."""
    user = f"journal_rw_{uuid.uuid4().hex[:8]}"
    tables = ", ".join(sorted(JOURNAL_TABLES))
    if server.name == "postgresql":
        setup = [
            f"CREATE ROLE {user} LOGIN",
            f"GRANT CONNECT ON DATABASE {database} TO {user}",
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON {tables} TO {user}",
            f"GRANT SELECT ON alembic_version TO {user}",
            f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {user}",
        ]
        teardown = [f"DROP OWNED BY {user}", f"DROP ROLE {user}"]
    else:
        setup = [f"CREATE USER '{user}'@'%'"] + [
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON `{database}`.{table} TO '{user}'@'%'"
            for table in sorted(JOURNAL_TABLES)
        ]
        setup.append(f"GRANT SELECT ON `{database}`.alembic_version TO '{user}'@'%'")
        teardown = [f"DROP USER '{user}'@'%'"]
    admin_url = server.url_of(database)
    for statement in setup:
        execute(admin_url, statement)
    try:
        yield (
            make_url(admin_url)
            .set(username=user, password=None)
            .render_as_string(hide_password=False)
        )
    finally:
        for statement in teardown:
            execute(admin_url, statement)


def _drop_connections(server: Server, database: str | None) -> None:
    """What a server restart or an idle time-out does to the pooled connections."""
    engine = sa.create_engine(server.admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            if server.name == "postgresql":
                conn.execute(
                    sa.text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE datname = :db AND pid <> pg_backend_pid()"
                    ),
                    {"db": database},
                )
                return
            ids = conn.execute(
                sa.text(
                    "SELECT id FROM information_schema.processlist"
                    " WHERE db = :db AND id <> CONNECTION_ID()"
                ),
                {"db": database},
            ).scalars()
            for connection_id in list(ids):
                conn.execute(sa.text(f"KILL {int(connection_id)}"))
    finally:
        engine.dispose()
