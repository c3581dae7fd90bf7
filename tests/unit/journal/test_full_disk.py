"""A full disk under the journal: a temporary error that says so, and a write probe
(what readiness asks) that does not pass while writes fail.

SQLite says "database or disk is full" (SQLITE_FULL) when a write finds no room, here
made real by ``PRAGMA max_page_count`` on a file of the test's own; it may also say
"disk I/O error" (SQLITE_IOERR) when growing its WAL's index fails, which is put down
to a full disk only when the filesystem has (nearly) nothing left. PostgreSQL's
``disk_full`` and MySQL's ``ER_DISK_FULL`` are said the same way. The probe of a
database that takes no write is a write rolled back while writes succeed (a full disk
lets it pass: SQLite writes nothing of a rolled-back transaction), and a write
committed after one failed, until one succeeds. tests/integration/test_journal_disk_full.py
fills a real filesystem under the real daemon.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event, exc

from nova_autopilot.errors import TemporaryError
from nova_autopilot.journal import Journal, JournalError
from nova_autopilot.journal import database as database_module
from nova_autopilot.journal.database import NEARLY_FULL_BYTES, Database

#: SQLite's extended result code of a failed write to the WAL's index (SQLITE_IOERR_SHMSIZE).
IOERR_SHMSIZE = 10 | (19 << 8)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'state' / 'journal.sqlite'}", busy_timeout=1)
    database.write(lambda conn: conn.exec_driver_sql("CREATE TABLE t (x BLOB)"))
    try:
        yield database
    finally:
        database.dispose()


def insert(size: int) -> Any:
    return lambda conn: conn.exec_driver_sql("INSERT INTO t VALUES (?)", (b"x" * size,))


def rows(db: Database) -> int:
    return int(db.read(lambda conn: conn.exec_driver_sql("SELECT count(*) FROM t").scalar()))


def capped(db: Database, pages: dict[str, int]) -> None:
    """Every new connection of ``db`` may grow the file to ``pages["max"]`` pages only."""
    db.dispose()
    event.listen(
        db.engine,
        "connect",
        lambda conn, _: conn.execute(f"PRAGMA max_page_count = {pages['max']}"),
    )


def failing(error: BaseException) -> Any:
    """A transaction's work that meets ``error``, as the driver raises it."""

    def work(conn: sa.Connection) -> None:
        raise exc.OperationalError("INSERT INTO t", {}, error)

    return work


def sqlite_error(text: str, code: int | None) -> sqlite3.OperationalError:
    error = sqlite3.OperationalError(text)
    if code is not None:
        error.sqlite_errorcode = code  # type: ignore[attr-defined]
    return error


class DriverError(Exception):
    """A PostgreSQL or MySQL driver's error: an SQLSTATE, or the error number first."""

    def __init__(self, *args: object, sqlstate: str | None = None) -> None:
        super().__init__(*args)
        self.sqlstate = sqlstate


# -- the message ------------------------------------------------------------------------


def test_a_write_that_finds_no_room_is_a_temporary_error_saying_the_disk_is_full(
    db: Database,
) -> None:
    pages = {"max": 0}
    pages["max"] = int(db.read(lambda conn: conn.exec_driver_sql("PRAGMA page_count").scalar()))
    capped(db, pages)

    with pytest.raises(JournalError) as caught:
        db.write(insert(64 * 1024))

    message = str(caught.value)
    assert isinstance(caught.value, TemporaryError)
    assert "\n" not in message
    assert message.startswith(f"journal database sqlite:///{db.directory}/journal.sqlite")
    assert "unavailable: the disk is full, " in message
    assert f"bytes free in {db.directory} (database or disk is full)" in message
    assert rows(db) == 0
    # Room again: the same write goes through.
    pages["max"] = 1_000_000
    db.dispose()
    db.write(insert(64 * 1024))
    assert rows(db) == 1


@pytest.mark.parametrize("free", [0, NEARLY_FULL_BYTES - 1])
def test_a_disk_io_error_on_a_filesystem_with_nothing_left_is_a_full_disk(
    db: Database, monkeypatch: pytest.MonkeyPatch, free: int
) -> None:
    monkeypatch.setattr(database_module, "free_bytes", lambda directory: free)
    with pytest.raises(JournalError) as caught:
        db.write(failing(sqlite_error("disk I/O error", IOERR_SHMSIZE)))
    assert str(caught.value).endswith(
        f"unavailable: the disk is full, {free:,} bytes free in {db.directory} (disk I/O error)"
    )


def test_a_disk_io_error_with_room_left_is_not_put_down_to_a_full_disk(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(database_module, "free_bytes", lambda directory: NEARLY_FULL_BYTES)
    with pytest.raises(JournalError) as caught:
        db.write(failing(sqlite_error("disk I/O error", IOERR_SHMSIZE)))
    assert str(caught.value).endswith("unavailable: disk I/O error")


@pytest.mark.parametrize(
    ("text", "full"),
    [("database or disk is full", True), ("database is locked", False)],
)
def test_without_an_error_code_sqlites_words_tell_a_full_disk(
    db: Database, text: str, full: bool
) -> None:
    said = db.full_disk(exc.OperationalError("INSERT", {}, sqlite_error(text, None)))
    assert (said is not None and said.startswith("the disk is full")) is full


@pytest.mark.parametrize(
    ("url", "error", "full"),
    [
        (
            "postgresql+psycopg://u@h/j",
            DriverError("could not extend", sqlstate="53100"),
            True,
        ),
        ("postgresql+psycopg://u@h/j", DriverError("server closed", sqlstate="08006"), False),
        ("mariadb+pymysql://u@h/j", DriverError(1021, "Disk full (/var/tmp/#sql)"), True),
        ("mariadb+pymysql://u@h/j", DriverError(2003, "Can't connect"), False),
    ],
)
def test_a_database_servers_full_disk_is_said_so(url: str, error: Exception, full: bool) -> None:
    database = Database(url, busy_timeout=1)  # no connection is made
    said = database.full_disk(exc.OperationalError("INSERT", {}, error))
    assert said == ("the database server's disk is full" if full else None)


# -- the write probe ---------------------------------------------------------------------


def test_the_write_probe_commits_after_a_write_failed_until_one_succeeds(db: Database) -> None:
    full = sqlite_error("database or disk is full", 13)
    db.probe_write(insert(10))
    assert rows(db) == 0  # rolled back: all is well
    with pytest.raises(JournalError):
        db.write(failing(full))
    assert db.write_failure is not None

    # A probe that fails leaves the failure in place; one that passes was committed.
    with pytest.raises(JournalError, match="the disk is full"):
        db.probe_write(failing(full))
    assert db.write_failure is not None
    db.probe_write(insert(10))
    assert rows(db) == 1
    assert db.write_failure is None
    db.probe_write(insert(10))
    assert rows(db) == 1  # rolled back again

    # A write that succeeds ends the failure as well.
    with pytest.raises(JournalError):
        db.write(failing(full))
    db.write(insert(10))
    assert db.write_failure is None
    db.probe_write(insert(10))
    assert rows(db) == 2


def test_once_a_write_found_no_room_the_probe_fails_until_there_is_room_again(
    db: Database,
) -> None:
    # max_page_count stands for the disk here: the table's next page cannot be had.
    pages = {"max": 0}
    pages["max"] = int(db.read(lambda conn: conn.exec_driver_sql("PRAGMA page_count").scalar()))
    capped(db, pages)
    fills_a_page = insert(8 * 1024)
    with pytest.raises(JournalError, match="the disk is full"):
        db.write(fills_a_page)
    with pytest.raises(JournalError, match="the disk is full"):
        db.probe_write(fills_a_page)
    pages["max"] = 1_000_000
    db.dispose()
    db.probe_write(fills_a_page)
    assert db.write_failure is None
    assert rows(db) == 1


def test_the_journals_writable_check_after_a_failed_write_leaves_no_trace(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'journal.sqlite'}"
    with Journal.open(url, busy_timeout=0.2) as journal:
        other = sqlite3.connect(tmp_path / "journal.sqlite", isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # the journal takes no write meanwhile
            with pytest.raises(JournalError):
                journal.accept(message_key="refused")
            with pytest.raises(JournalError):
                journal.check_writable()
        finally:
            other.execute("ROLLBACK")
            other.close()
        journal.check_writable()  # committed: the probe row inserted and deleted
        journal.check_writable()  # rolled back
        count = sa.select(sa.func.count()).select_from(sa.table("processed_messages"))
        with sa.create_engine(url).connect() as conn:
            assert conn.execute(count).scalar() == 0
        assert journal.history() == []
