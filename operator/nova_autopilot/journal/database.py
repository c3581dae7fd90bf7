"""Connections to the journal's database: engines set up per backend, and transactions
that retry deadlocks and turn an unreachable or locked database into a JournalError.

SQLite (the default, one file under the state directory) runs in WAL mode, so readers
never wait for the writer; every writing transaction starts with ``BEGIN IMMEDIATE`` and
writers of one process queue on a lock, so "database is locked" cannot come out of a
half-done transaction. Writers in other processes wait up to ``busy_timeout``.

PostgreSQL and MariaDB/MySQL run at READ COMMITTED; stale pooled connections are
detected before use (a daemon lives for months, databases restart and drop idle links).

What an operator can get wrong is said in one line, in the project's vocabulary: a
database driver that is not installed (:class:`JournalUnusable`, naming the extra to
install), a file that is not an SQLite database (:class:`JournalUnusable`), a database
that does not answer (:class:`JournalError`, temporary), a full disk (a
:class:`JournalError` too, saying "the disk is full" and, for SQLite, how many bytes
are left beside the file: once space is freed the same write succeeds).

Whether the database takes a write now (:meth:`Database.probe_write`, what readiness
asks) is a write rolled back while writes succeed; after a write failed it is a write
committed, until one succeeds: on a full disk a rolled-back write passes (SQLite keeps
it in memory and writes nothing), only a commit meets the disk.
"""

from __future__ import annotations

import contextlib
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Final, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event, exc
from sqlalchemy.engine import URL, make_url

from nova_autopilot.errors import PermanentError
from nova_autopilot.journal.errors import JournalError

__all__ = ["Database", "JournalUnusable", "default_url", "missing_sqlite_file", "safe_url"]

T = TypeVar("T")

#: Transactions chosen as deadlock victims are run again this many times in all.
ATTEMPTS: Final = 4
_WRITE_OPTION: Final = "nova_autopilot_journal_write"
# Deadlock / serialization failure: PostgreSQL SQLSTATEs and MySQL error numbers.
_RETRY_SQLSTATES: Final = frozenset({"40001", "40P01"})
_RETRY_MYSQL_ERRORS: Final = frozenset({1213})
# A full disk: SQLite's result codes (sqlite3.SQLITE_FULL and SQLITE_IOERR from Python
# 3.11), PostgreSQL's SQLSTATE disk_full, MySQL's and MariaDB's ER_DISK_FULL.
_SQLITE_FULL: Final = 13
_SQLITE_IOERR: Final = 10
_FULL_SQLSTATES: Final = frozenset({"53100"})
_FULL_MYSQL_ERRORS: Final = frozenset({1021})
#: What sqlite3 says of SQLITE_FULL and SQLITE_IOERR, for errors that carry no code.
_SQLITE_FULL_TEXT: Final = "database or disk is full"
_SQLITE_IOERR_TEXT: Final = "disk I/O error"
#: An SQLite I/O error with less space than this left beside the file is a full disk
#: (growing the WAL's index, SQLite says "disk I/O error", not "disk is full").
NEARLY_FULL_BYTES: Final = 1 << 20
#: The extra of nova-autopilot (setup.py) that installs each backend's driver, and its URL.
_EXTRAS: Final = {
    "postgresql": ("postgresql", "postgresql+psycopg://"),
    "mysql": ("mysql", "mysql+pymysql://"),
    "mariadb": ("mysql", "mariadb+pymysql://"),
}


class JournalUnusable(PermanentError):
    """The journal's database cannot be used as configured, and waiting will not
    change that: its driver is not installed, or the file is not a database."""


def default_url(state_dir: str | os.PathLike[str]) -> str:
    """The journal of a daemon whose ``[DEFAULT] state_dir`` is ``state_dir``."""
    path = os.path.abspath(os.path.join(os.fspath(state_dir), "journal.sqlite"))
    return f"sqlite:///{path}"


def missing_sqlite_file(url: str) -> str | None:
    """The path of the SQLite file ``url`` names when there is no such file yet (no
    daemon has written a journal there), else None; for readers that must not create it."""
    parsed = make_url(url)
    path = parsed.database
    if parsed.get_backend_name() != "sqlite" or not path or path == ":memory:":
        return None
    return None if os.path.exists(path) else path


def safe_url(url: str | URL) -> str:
    """``url`` fit for messages and logs: its password hidden."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except exc.ArgumentError:
        return "<unparsable database URL>"


class Database:
    """An engine and the rules for running transactions on it; safe to share by threads."""

    def __init__(self, url: str, *, busy_timeout: float) -> None:
        try:
            parsed = make_url(url)
        except exc.ArgumentError as error:
            raise ValueError(f"not an SQLAlchemy database URL: {safe_url(url)}") from error
        self.url = parsed
        self.busy_timeout = busy_timeout
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        self._write_lock = threading.Lock()
        self._pinned = threading.local()  # a thread's shared read transaction (reading())
        #: Why the last write failed, until a write succeeds (probe_write commits meanwhile).
        self.write_failure: JournalError | None = None
        #: The SQLite file's directory (where its WAL grows), for a full disk's message.
        self.directory = _sqlite_directory(parsed) if self.is_sqlite else None
        if self.is_sqlite:
            self.engine = _sqlite_engine(parsed, busy_timeout=busy_timeout)
            return
        try:
            self.engine = create_engine(
                parsed,
                pool_pre_ping=True,
                pool_recycle=3600,
                isolation_level="READ COMMITTED",
            )
        except ImportError as error:  # create_engine imports the URL's driver
            raise JournalUnusable(_missing_driver(parsed, error)) from error
        except exc.NoSuchModuleError as error:
            raise JournalUnusable(
                f"journal {safe_url(parsed)}: no SQLAlchemy dialect {parsed.drivername!r}"
            ) from error

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def dispose(self) -> None:
        self.engine.dispose()

    def read(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` in a read-only transaction."""
        return self._run(work, write=False)

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        """Every :meth:`read` of this thread within the block runs in one read
        transaction, on one connection: several reads that belong together (a batch's
        facts) as of one moment, for one begin and one checkout. A failing read ends
        the block, without the retries of :meth:`read`. A write within the block is a
        mistake (on SQLite its reads would not see it) and raises RuntimeError. Nested
        blocks share the outermost one's."""
        if getattr(self._pinned, "conn", None) is not None:
            yield
            return
        with self._translated(), self.engine.connect() as conn, conn.begin():
            self._pinned.conn = conn
            try:
                yield
            finally:
                self._pinned.conn = None

    def write(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` in a transaction that commits if it returns, rolls back if it raises.

        ``work`` may run more than once (when the database picks it as a deadlock victim),
        so it must do nothing but database work. An IntegrityError reaches the caller as is.
        """
        return self._run(work, write=True)

    def probe_write(self, work: Callable[[Connection], object]) -> None:
        """Whether the database takes a write now: run ``work`` in a writing transaction
        (JournalError when the database refuses it). While writes succeed the
        transaction is rolled back; after a write failed (:attr:`write_failure`) it is
        committed, until a write succeeds: only a commit meets a full disk. So
        ``work`` must undo what it writes."""
        commit = self.write_failure is not None
        with self.connection(write=True) as conn:
            transaction = conn.begin()
            try:
                work(conn)
            except BaseException:
                transaction.rollback()
                raise
            if commit:
                transaction.commit()
            else:
                transaction.rollback()
        if commit:
            self.write_failure = None

    @contextlib.contextmanager
    def connection(self, *, write: bool) -> Iterator[Connection]:
        """A connection whose next ``begin()`` takes SQLite's write lock when ``write``;
        for the migrations, which manage their own transaction."""
        with self._serialized(write), self._translated(), self.engine.connect() as conn:
            if write:
                conn.execution_options(**{_WRITE_OPTION: True})
            yield conn

    def _run(self, work: Callable[[Connection], T], *, write: bool) -> T:
        pinned = getattr(self._pinned, "conn", None)
        if pinned is not None:
            if write:
                raise RuntimeError("a journal write within reading(), whose reads would miss it")
            with self._translated():
                return work(pinned)
        for attempt in range(1, ATTEMPTS + 1):
            try:
                with self.connection(write=write) as conn, conn.begin():
                    result = work(conn)
            except JournalError as error:
                if attempt == ATTEMPTS or not _is_retryable(error.__cause__):
                    if write:
                        self.write_failure = error
                    raise
            else:
                if write:
                    self.write_failure = None
                return result
            # A deadlock victim: the other transaction goes on; start again a moment later.
            time.sleep(random.uniform(0, 0.02 * attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    @contextlib.contextmanager
    def _serialized(self, write: bool) -> Iterator[None]:
        if not (write and self.is_sqlite):
            yield
            return
        if not self._write_lock.acquire(timeout=self.busy_timeout):
            raise JournalError(
                f"journal {safe_url(self.url)}: no write turn within {self.busy_timeout:g}s"
            )
        try:
            yield
        finally:
            self._write_lock.release()

    @contextlib.contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except exc.IntegrityError:
            raise
        except (exc.OperationalError, exc.InterfaceError, exc.TimeoutError) as error:
            full = self.full_disk(error)
            detail = _first_line(error)
            raise JournalError(
                f"journal database {safe_url(self.url)} unavailable: "
                + (f"{full} ({detail})" if full else detail)
            ) from error
        except exc.DatabaseError as error:
            if type(error) is not exc.DatabaseError:  # ProgrammingError and the like: a bug
                raise
            raise JournalUnusable(
                f"journal database {safe_url(self.url)} cannot be used: {_first_line(error)}"
                + (" (not an SQLite database: restore the journal)" if self.is_sqlite else "")
            ) from error
        except exc.DBAPIError as error:
            if error.connection_invalidated:
                raise JournalError(
                    f"journal database {safe_url(self.url)} connection lost: {_first_line(error)}"
                ) from error
            raise

    def full_disk(self, error: BaseException) -> str | None:
        """What to say when ``error`` (a database error, as SQLAlchemy raises it) comes
        of a full disk; None when it does not."""
        original = getattr(error, "orig", None) or error
        if not self.is_sqlite:
            args: tuple[Any, ...] = tuple(getattr(original, "args", ()))
            if getattr(original, "sqlstate", None) in _FULL_SQLSTATES or (
                bool(args) and args[0] in _FULL_MYSQL_ERRORS
            ):
                return "the database server's disk is full"
            return None
        code = getattr(original, "sqlite_errorcode", None)
        text = str(original)
        full = _SQLITE_FULL_TEXT in text if code is None else code & 0xFF == _SQLITE_FULL
        failed_io = _SQLITE_IOERR_TEXT in text if code is None else code & 0xFF == _SQLITE_IOERR
        if not (full or failed_io):
            return None
        free = free_bytes(self.directory) if self.directory else None
        where = "" if free is None else f", {free:,} bytes free in {self.directory}"
        if full or (free is not None and free < NEARLY_FULL_BYTES):
            return f"the disk is full{where}"
        return None


def free_bytes(directory: str) -> int | None:
    """The bytes the daemon may still write in ``directory``'s filesystem (root may use
    the blocks kept for it, others not); None when it cannot be told."""
    try:
        stat = os.statvfs(directory)
    except OSError:
        return None
    blocks = stat.f_bfree if os.geteuid() == 0 else stat.f_bavail
    return blocks * stat.f_frsize


def _sqlite_directory(url: URL) -> str | None:
    """The directory of the SQLite file ``url`` names (None for a URI)."""
    database = url.database or ""
    if str(url.query.get("uri", "")).lower() in ("true", "1") or database in ("", ":memory:"):
        return None
    return os.path.dirname(os.path.abspath(database))


def _missing_driver(url: URL, error: ImportError) -> str:
    """One line: the driver ``url`` needs is not installed, and what to install."""
    module = error.name or str(error)
    backend = url.get_backend_name()
    text = f"journal {safe_url(url)}: its driver {module!r} is not installed"
    if backend not in _EXTRAS:
        return f"{text}; install it"
    extra, recommended = _EXTRAS[backend]
    if url.drivername == recommended.removesuffix("://"):
        return f"{text}; install nova-autopilot[{extra}]"
    return (
        f"{text}; install it, or install nova-autopilot[{extra}] and write the URL {recommended}..."
    )


def _is_retryable(error: BaseException | None) -> bool:
    if not isinstance(error, exc.DBAPIError):
        return False
    original = error.orig
    if getattr(original, "sqlstate", None) in _RETRY_SQLSTATES:
        return True
    args: tuple[Any, ...] = tuple(getattr(original, "args", ()))
    return bool(args) and args[0] in _RETRY_MYSQL_ERRORS


def _first_line(error: exc.DBAPIError | exc.TimeoutError) -> str:
    original = getattr(error, "orig", None) or error
    text = str(original).strip()
    return text.splitlines()[0] if text else type(original).__name__


def _sqlite_engine(url: URL, *, busy_timeout: float) -> Engine:
    database = url.database or ""
    uri = str(url.query.get("uri", "")).lower() in ("true", "1")
    if database in ("", ":memory:") or (uri and "mode=memory" in database):
        raise ValueError(
            "the journal cannot live in memory: it must outlive the process; "
            "give it a file (sqlite:////var/lib/nova-autopilot/journal.sqlite)"
        )
    if not uri:
        directory = os.path.dirname(os.path.abspath(database))
        os.makedirs(directory, mode=0o750, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": busy_timeout})
    timeout_ms = int(busy_timeout * 1000)

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        if not isinstance(dbapi_connection, sqlite3.Connection):  # pragma: no cover
            return
        # Transactions are begun by on_begin below, not by the sqlite3 module.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {timeout_ms}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = FULL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    def on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get(_WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    event.listen(engine, "connect", on_connect)
    event.listen(engine, "begin", on_begin)
    return engine
