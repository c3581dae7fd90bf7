"""A PostgreSQL cluster of the test's own, which the test may stop and start at will.

The machine's PostgreSQL (127.0.0.1:5432, tests/databases.py) is shared by other
tests and by CI: a test must never take it down. A test that needs the journal's
database to go away (a crash, a restart) runs this private cluster instead:

* made with ``initdb`` in a temporary directory of its own (owned by the OS user
  ``postgres`` when the tests run as root, since PostgreSQL refuses to run as root;
  run as the tests' own user otherwise), trust authentication, ``fsync`` on;
* listening on a free TCP port of 127.0.0.1, its unix socket in that directory;
* stopped (``pg_ctl stop -m immediate``), its postmaster killed if it outlived
  that, and the directory removed on :meth:`PrivatePostgres.close`, whatever
  happened before (the module's fixture closes it even when a test failed).

``PostgreSQL 15`` binaries are looked for in ``/usr/lib/postgresql/15/bin``
(``NOVA_AUTOPILOT_PG_BIN`` overrides the folder); without them the tests that need
the cluster are unavailable (skipped with a loud reason, failed in CI).

Use the ``private_postgres`` fixture (a cluster for the test module, started for
every test), or the class as a context manager::

    with PrivatePostgres.create() as pg:
        url = pg.create_database("journal")   # postgresql+psycopg://postgres@127.0.0.1:PORT/journal
        pg.stop(mode="immediate")              # the journal's server crashes
        pg.start()                             # and comes back (crash recovery)
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Literal

import pytest
import sqlalchemy as sa

from tests.novabox.probes import free_ports
from tests.unavailable import unavailable

#: Where the PostgreSQL 15 binaries are (Debian's layout).
BIN = Path(os.environ.get("NOVA_AUTOPILOT_PG_BIN", "/usr/lib/postgresql/15/bin"))
#: The cluster's superuser (trust authentication: no password).
SUPERUSER = "postgres"
#: The driver of the project's PostgreSQL URLs (nova_autopilot.journal.database, setup.py's
#: ``postgresql`` extra).
DRIVER = "postgresql+psycopg"
#: Seconds pg_ctl waits for the server to start or stop.
WAIT_S = 60
StopMode = Literal["smart", "fast", "immediate"]


class PrivatePostgres:
    """One private PostgreSQL cluster: its data directory, port and server process.

    :meth:`create` makes and starts it; :meth:`stop`, :meth:`start` and
    :meth:`restart` take it down and bring it back on the same port with the same
    data; :meth:`create_database` makes a database on it and returns its URL;
    :meth:`close` (or leaving the ``with`` block) removes every trace of it.
    """

    def __init__(self, root: Path, port: int, run_as: str | None) -> None:
        self.root = root  # the temporary directory: data, socket, log
        self.data = root / "data"
        self.log = root / "server.log"
        self.port = port
        self.host = "127.0.0.1"
        self._run_as = run_as  # an OS user to run the server as (we are root), or None
        self._closed = False

    # -- making it ----------------------------------------------------------------------

    @classmethod
    def create(cls) -> PrivatePostgres:
        """A new cluster, started (unavailable() when PostgreSQL 15 is not installed)."""
        for tool in ("initdb", "pg_ctl", "postgres"):
            if not (BIN / tool).is_file():
                unavailable(f"POSTGRESQL 15 UNAVAILABLE: no {BIN / tool} for a private cluster")
        run_as: str | None = None
        if os.geteuid() == 0:  # initdb and postgres refuse root: run them as postgres
            try:
                pwd.getpwnam(SUPERUSER)
            except KeyError:
                unavailable(f"no OS user {SUPERUSER!r} to run a private PostgreSQL as")
            if shutil.which("runuser") is None:
                unavailable("no runuser to run a private PostgreSQL as the user postgres")
            run_as = SUPERUSER
        root = Path(tempfile.mkdtemp(prefix="na-pg-"))  # short: the socket path is limited
        cluster = cls(root, _free_port(), run_as)
        try:
            if run_as is not None:
                entry = pwd.getpwnam(run_as)
                os.chown(root, entry.pw_uid, entry.pw_gid)
            root.chmod(0o700)
            cluster._initdb()
            cluster._first_start()
        except BaseException:
            cluster.close()
            raise
        return cluster

    def _initdb(self) -> None:
        self._run(
            "initdb",
            "-D", str(self.data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8",
            "--locale=C", "--no-instructions",
        )  # fmt: skip
        settings = {
            "listen_addresses": f"'{self.host}'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.root}'",
            "fsync": "on",
            "max_connections": "50",
            "shared_buffers": "16MB",
            "logging_collector": "off",
        }
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write("\n# private_postgres (tests)\n")
            conf.writelines(f"{name} = {value}\n" for name, value in settings.items())

    def _first_start(self) -> None:
        """Start it; another port if the one picked was taken meanwhile."""
        for attempt in range(3):
            try:
                self.start()
                return
            except RuntimeError:
                if attempt == 2 or "could not bind" not in self.server_log():
                    raise
            self.port = _free_port()
            with (self.data / "postgresql.conf").open("a") as conf:
                conf.write(f"port = {self.port}\n")

    # -- running it ---------------------------------------------------------------------

    @property
    def admin_url(self) -> str:
        """The URL of the cluster's ``postgres`` database."""
        return self.url("postgres")

    def url(self, database: str) -> str:
        """The URL of ``database`` on this cluster, in the project's driver."""
        return f"{DRIVER}://{SUPERUSER}@{self.host}:{self.port}/{database}"

    def start(self) -> None:
        """Start the server and wait until it accepts connections (after a crash, its
        recovery included)."""
        self._run(
            "pg_ctl", "start", "-D", str(self.data), "-l", str(self.log), "-w",
            "-t", str(WAIT_S),
        )  # fmt: skip

    def stop(self, mode: StopMode = "fast") -> None:
        """Stop the server: ``fast`` ends the sessions and shuts down cleanly;
        ``immediate`` kills it at once, as a crash or a power cut would (the next
        :meth:`start` recovers from the WAL)."""
        self._run("pg_ctl", "stop", "-D", str(self.data), "-m", mode, "-w", "-t", str(WAIT_S))

    def restart(self, mode: StopMode = "fast") -> None:
        """:meth:`stop` in ``mode``, then :meth:`start`."""
        self.stop(mode)
        self.start()

    def running(self) -> bool:
        """Whether the server process runs (``pg_ctl status``)."""
        return self._run("pg_ctl", "status", "-D", str(self.data), check=False).returncode == 0

    def ensure_started(self) -> None:
        """Start the server unless it runs (a test that failed may have left it down)."""
        if not self.running():
            self.start()

    def create_database(self, name: str) -> str:
        """Create the empty database ``name`` (a plain identifier); its URL."""
        if not name.isidentifier():
            raise ValueError(f"not a plain database name: {name!r}")
        engine = sa.create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        finally:
            engine.dispose()
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop ``name`` with every session still on it."""
        engine = sa.create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        finally:
            engine.dispose()

    def server_log(self, last: int = 4000) -> str:
        """The end of the server's log, for a failure's message."""
        try:
            return self.log.read_text(errors="replace")[-last:]
        except OSError:
            return ""

    # -- removing it --------------------------------------------------------------------

    def close(self) -> None:
        """Stop the server at once, kill its postmaster if it outlived that, and remove
        the directory. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            pid = self._postmaster_pid()
            if pid is not None:
                self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "immediate", "-w",
                          "-t", "20", check=False)  # fmt: skip
                self._kill_if_alive(pid)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PrivatePostgres:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- helpers ------------------------------------------------------------------------

    def _postmaster_pid(self) -> int | None:
        """The pid of this cluster's postmaster while it runs, else None (its pid file is
        checked against the process: a stale file must not name someone else's)."""
        try:
            first = (self.data / "postmaster.pid").read_text().split("\n", 1)[0].strip()
        except OSError:
            return None
        return int(first) if first.isdigit() and self._is_ours(int(first)) else None

    def _is_ours(self, pid: int) -> bool:
        """Whether ``pid`` runs (not a zombie) and is this cluster's postmaster."""
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        return "\nState:\tZ" not in status and os.fsencode(self.data) in command

    def _kill_if_alive(self, pid: int) -> None:
        """SIGKILL the postmaster ``pid`` if it still runs a moment after its stop."""
        deadline = time.monotonic() + 5
        while self._is_ours(pid):
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                return
            time.sleep(0.05)  # polling for the process's exit, with a deadline

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command: Sequence[str] = [str(BIN / tool), *args]
        if self._run_as is not None:
            command = ["runuser", "-u", self._run_as, "--", *command]
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            check=False,
            timeout=WAIT_S + 30,
            cwd=self.root,  # a directory the server's user can enter
            stdin=subprocess.DEVNULL,
        )
        if check and done.returncode != 0:
            raise RuntimeError(
                f"{tool} {' '.join(args)} failed ({done.returncode}): "
                f"{done.stdout}{done.stderr}\n--- server log ---\n{self.server_log()}"
            )
        return done


def _free_port() -> int:
    """A TCP port of 127.0.0.1 free now (the cluster binds it a moment later)."""
    return free_ports(1)[0]


@pytest.fixture(scope="module")
def private_postgres_cluster() -> Iterator[PrivatePostgres]:
    """A private cluster shared by the tests of a module (initdb is the slow part)."""
    with PrivatePostgres.create() as cluster:
        yield cluster


@pytest.fixture
def private_postgres(private_postgres_cluster: PrivatePostgres) -> PrivatePostgres:
    """The module's private cluster, running when the test begins."""
    private_postgres_cluster.ensure_started()
    return private_postgres_cluster
