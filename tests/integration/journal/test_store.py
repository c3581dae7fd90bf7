"""Behaviour of nova_autopilot.journal, on SQLite files.

The behaviour suites of tests/integration/journal/behaviour.py run here on SQLite in
tmp_path (tests/integration/journal/test_databases.py runs them on the servers), then
what only SQLite shows.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

from nova_autopilot.errors import TemporaryError
from nova_autopilot.journal import Accepted, Journal, JournalError, default_url, migrate
from nova_autopilot.journal.database import Database
from nova_autopilot.journal.migrations.__main__ import main as migrations_main
from nova_autopilot.logs import redact, redacted_document
from tests.integration.journal.behaviour import (
    SECRET,
    JournalBehaviour,
    MigrationBehaviour,
    accepted_op,
    execute,
    new_op,
)
from tests.integration.journal.behaviour import Clock as Clock  # for older imports from here


@pytest.fixture
def journal_url(tmp_path: Path) -> str:
    return default_url(tmp_path / "state")


@pytest.fixture
def fresh_url(tmp_path: Path) -> str:
    return default_url(tmp_path / "fresh")


class TestJournalOnSQLite(JournalBehaviour):
    property_examples = 30


class TestMigrationsOnSQLite(MigrationBehaviour):
    pass


# --- SQLite specifics -------------------------------------------------------------------


def test_the_default_journal_is_journal_sqlite_in_the_state_directory(tmp_path: Path) -> None:
    url = default_url(tmp_path / "state")

    assert url == f"sqlite:///{tmp_path}/state/journal.sqlite"
    assert default_url("relative/dir") == f"sqlite:///{Path.cwd()}/relative/dir/journal.sqlite"
    assert default_url("/var/lib/nova-autopilot") == (
        "sqlite:////var/lib/nova-autopilot/journal.sqlite"
    )


def test_opening_creates_the_file_and_its_directories_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "journal.sqlite"

    with Journal.open(f"sqlite:///{path}") as journal:
        accepted_op(journal)
        raw = sqlite3.connect(path)
        try:
            assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        finally:
            raw.close()

    assert path.is_file()


def test_connections_enforce_foreign_keys_and_wait_for_a_busy_writer(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path}/j.sqlite", busy_timeout=7.5)
    try:
        with database.connection(write=False) as conn:
            pragma = conn.exec_driver_sql
            assert pragma("PRAGMA foreign_keys").scalar() == 1
            assert pragma("PRAGMA busy_timeout").scalar() == 7500
            assert pragma("PRAGMA synchronous").scalar() == 2  # FULL
    finally:
        database.dispose()


def test_a_database_locked_by_another_process_beyond_the_timeout_is_a_temporary_error(
    tmp_path: Path,
) -> None:
    url = default_url(tmp_path)
    journal = Journal.open(url, busy_timeout=0.2)
    other = sqlite3.connect(tmp_path / "journal.sqlite", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")

        with pytest.raises(JournalError, match="unavailable") as caught:
            journal.accept(message_key="while-locked")

        assert isinstance(caught.value, TemporaryError)
        other.execute("ROLLBACK")
        assert isinstance(journal.accept(message_key="while-locked"), Accepted)
    finally:
        other.close()
        journal.close()


def test_secrets_never_reach_the_database_files(tmp_path: Path) -> None:
    with Journal.open(default_url(tmp_path), redact=redact) as journal:
        op = accepted_op(journal, params={"admin_password": SECRET})
        journal.record_step(op.id, name="rescue", detail={"admin_password": SECRET})
        journal.advance(op.id, phase="rescuing", state={"admin_password": SECRET}, expect_version=0)
        files = list(tmp_path.iterdir())

        assert files
        assert all(SECRET.encode() not in path.read_bytes() for path in files)

    without = tmp_path / "unredacted"
    with Journal.open(default_url(without)) as journal:
        accepted_op(journal, params={"admin_password": SECRET})
        assert any(SECRET.encode() in path.read_bytes() for path in without.iterdir())


def test_an_accepted_event_is_held_as_given_unless_something_in_it_was_redacted(
    tmp_path: Path,
) -> None:
    """The operations accept hands back hold the event they were given (what a JSON
    parser gave, as reading the row back gives), not a copy; one with a secret holds
    the redacted copy the row has."""
    plain = {"event_type": "instance.update", "payload": {"key_name": "k", "n": [1, 2.5]}}
    secret = {"event_type": "instance.update", "payload": {"adminPass": SECRET}}
    with Journal.open(default_url(tmp_path), redact=redact, documents=redacted_document) as journal:
        news = [new_op(event=plain), new_op(event=secret)]
        accepted = journal.accept(message_key="m-1", operations=news)
        assert isinstance(accepted, Accepted)
        held, hidden = accepted.operations

        assert held.event is plain
        assert held == journal.get(held.id)
        assert hidden.event == {"event_type": "instance.update", "payload": {"adminPass": "***"}}
        assert hidden == journal.get(hidden.id)


def test_a_process_killed_mid_operation_leaves_it_to_resume_from_its_phase(
    tmp_path: Path,
) -> None:
    url = default_url(tmp_path)
    crashing = textwrap.dedent(
        f"""
        import os
        from nova_autopilot.journal import Journal, NewOperation
        journal = Journal.open({url!r})
        new = NewOperation(id="op-1", policy="p", action="rescue", server_id="srv-1")
        journal.accept(message_key="nova:boot-failed", operations=[new])
        journal.record_step("op-1", name="rescue", detail={{}}, nova_requests=1)
        journal.advance("op-1", phase="waiting_rescue", state={{"image": "img"}}, expect_version=0)
        os._exit(137)  # no close, no cleanup: as if killed
        """
    )

    died = subprocess.run([sys.executable, "-c", crashing], check=False, timeout=120)

    assert died.returncode == 137
    with Journal.open(url) as journal:
        (op,) = journal.unfinished()
        assert (op.id, op.phase, op.state, op.nova_requests) == (
            "op-1",
            "waiting_rescue",
            {"image": "img"},
            1,
        )
        assert journal.is_processed("nova:boot-failed")


def test_a_journal_in_memory_is_refused_because_it_would_not_outlive_the_process() -> None:
    with pytest.raises(ValueError, match="in memory"):
        Journal.open("sqlite://")
    with pytest.raises(ValueError, match="in memory"):
        Journal.open("sqlite:///:memory:")


def test_an_unreachable_server_is_a_temporary_error_that_hides_the_password() -> None:
    with pytest.raises(JournalError) as caught:
        Journal.open("postgresql+psycopg://autopilot:hunter2@127.0.0.1:1/journal")

    assert "hunter2" not in str(caught.value)
    assert "127.0.0.1:1" in str(caught.value)


def test_a_new_revision_is_numbered_next_and_empty_when_the_schema_has_not_changed(
    tmp_path: Path,
) -> None:
    scripts = tmp_path / "migrations"
    shutil.copytree(migrate.MIGRATIONS, scripts, ignore=shutil.ignore_patterns("__pycache__"))

    path = migrate.new_revision("add nothing", script_location=scripts)

    assert path.parent == scripts / "versions"
    assert path.name == f"r{int(migrate.head()) + 1:04d}_add_nothing.py"
    text = path.read_text()
    assert f"down_revision: str | Sequence[str] | None = {migrate.head()!r}" in text
    assert "op." not in text
    assert migrate.head(scripts) == f"{int(migrate.head()) + 1:04d}"


def test_the_schema_revision_the_code_names_is_the_last_of_its_migrations() -> None:
    # A new revision must change migrate.HEAD too: opening without migrating compares
    # the database's revision with it.
    assert migrate.head() == migrate.HEAD


def test_a_journal_at_this_releases_schema_opens_without_migrating_and_without_alembic(
    tmp_path: Path,
) -> None:
    url = default_url(tmp_path)
    with Journal.open(url) as journal:
        accepted_op(journal)
    reading = textwrap.dedent(
        f"""
        import sys
        from nova_autopilot.journal import Journal
        with Journal.open({url!r}, migrate_schema=False) as journal:
            assert len(journal.history()) == 1
        loaded = sorted(name for name in sys.modules if name.partition(".")[0] == "alembic")
        assert not loaded, loaded
        """
    )

    done = subprocess.run(
        [sys.executable, "-c", reading], capture_output=True, text=True, check=False, timeout=120
    )

    assert done.returncode == 0, done.stderr


def test_operations_are_values_that_compare_by_content() -> None:
    new = new_op(id="abc")

    assert replace(new, why="other") != new
    assert replace(new, why="other").id == "abc"
    assert len(new_op().id) == 32


def test_migrations_run_by_hand_report_the_revision_and_refuse_an_unknown_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = default_url(tmp_path)
    head = migrate.head()

    assert migrations_main(["current", "--url", url]) == 0
    assert capsys.readouterr().out.strip().endswith(f"at none; this release: {head}")
    monkeypatch.setenv("NOVA_AUTOPILOT_JOURNAL_URL", url)
    assert migrations_main(["upgrade"]) == 0
    assert capsys.readouterr().out.strip().endswith(f"at {head}; this release: {head}")

    execute(url, "UPDATE alembic_version SET version_num = '9999'")
    assert migrations_main(["upgrade"]) == 1
    assert "9999" in capsys.readouterr().err
