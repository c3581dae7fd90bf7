"""The run's databases: nova_api, nova_cell0, nova_cell1 and placement.

MariaDB/MySQL is preferred (it is what production Nova uses), then
PostgreSQL; SQLite is the fallback when neither answers. Server-side work
(create, drop, list) runs through Nova's venv, which has SQLAlchemy and the
drivers, so the test side needs no database library.
"""

import json
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from tests.novabox.errors import CommandFailed, NovaBoxError
from tests.novabox.runs import DATABASE_PREFIX, RunId
from tests.novabox.settings import BoxSettings
from tests.novabox.venv import NovaVenv

ROLES = ("nova_api", "nova_cell0", "nova_cell1", "placement")

# Runs inside Nova's venv: argv = server URL, JSON list of SQL statements.
# Prints the rows of the last statement as JSON.
_ADMIN_SCRIPT = """
import json, sys
import sqlalchemy
engine = sqlalchemy.create_engine(sys.argv[1], isolation_level="AUTOCOMMIT")
rows = []
with engine.connect() as connection:
    for statement in json.loads(sys.argv[2]):
        result = connection.exec_driver_sql(statement)
        rows = [list(row) for row in result] if result.returns_rows else []
print(json.dumps(rows, default=str))
"""


class Databases(Protocol):
    """The databases of one kind of server."""

    kind: str

    def url(self, name: str) -> str:
        """SQLAlchemy URL of database ``name``, as Nova's configuration wants it."""
        ...

    def create(self, names: list[str]) -> None: ...

    def drop(self, names: list[str]) -> None:
        """Drop the databases that exist among ``names``."""
        ...

    def list_box_databases(self) -> list[str]:
        """Every database on the server that a box created (any run)."""
        ...


def names_for(run_id: RunId) -> dict[str, str]:
    """Role -> database name for a run."""
    return {role: f"{run_id.database_prefix}_{role}" for role in ROLES}


@dataclass
class ServerDatabases:
    """Databases on a MariaDB/MySQL or PostgreSQL server."""

    kind: str
    server_url: str
    venv: NovaVenv

    def url(self, name: str) -> str:
        if self.kind == "mysql":
            return f"{self.server_url}/{name}?charset=utf8mb4"
        return f"{self.server_url}/{name}"

    def create(self, names: list[str]) -> None:
        self._sql([f"CREATE DATABASE {_safe(name)}" for name in names])

    def drop(self, names: list[str]) -> None:
        force = " WITH (FORCE)" if self.kind == "postgresql" else ""
        self._sql([f"DROP DATABASE IF EXISTS {_safe(name)}{force}" for name in names])

    def list_box_databases(self) -> list[str]:
        if self.kind == "mysql":
            query = "SHOW DATABASES"
        else:
            query = "SELECT datname FROM pg_database"
        return sorted(row[0] for row in self._sql([query]) if row[0].startswith(DATABASE_PREFIX))

    def _sql(self, statements: list[str]) -> list[list[str]]:
        admin_url = self.server_url + ("/postgres" if self.kind == "postgresql" else "/")
        argv = [str(self.venv.python), "-c", _ADMIN_SCRIPT, admin_url, json.dumps(statements)]
        result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
        if result.returncode != 0:
            shown = [str(self.venv.python), "-c", "<admin script>", admin_url, *statements]
            raise CommandFailed(shown, result.returncode, result.stdout + result.stderr)
        rows: list[list[str]] = json.loads(result.stdout)
        return rows


@dataclass
class SqliteDatabases:
    """SQLite files in the run directory: the fallback when no server answers.

    Three Nova processes share these files; the services install the locking
    work-around of :mod:`tests.novabox.sqlite` (WAL, BEGIN IMMEDIATE, a long
    busy timeout) when they see NOVABOX_SQLITE=1.
    """

    directory: Path
    kind: str = "sqlite"

    def url(self, name: str) -> str:
        return f"sqlite:///{self.directory / name}.sqlite"

    def create(self, names: list[str]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)

    def drop(self, names: list[str]) -> None:
        for name in names:
            for suffix in (".sqlite", ".sqlite-wal", ".sqlite-shm"):
                (self.directory / f"{name}{suffix}").unlink(missing_ok=True)

    def list_box_databases(self) -> list[str]:
        return []


def choose(settings: BoxSettings, venv: NovaVenv, run_dir: Path) -> Databases:
    """The databases to use: the configured kind, or the first that answers."""
    candidates = {
        "mysql": settings.mysql_url,
        "postgresql": settings.postgresql_url,
    }
    if settings.database == "sqlite":
        return SqliteDatabases(run_dir / "db")
    if settings.database in candidates:
        return ServerDatabases(settings.database, candidates[settings.database], venv)
    for kind, url in candidates.items():
        if _answers(url):
            return ServerDatabases(kind, url, venv)
    return SqliteDatabases(run_dir / "db")


def server_databases(settings: BoxSettings, venv: NovaVenv) -> list[Databases]:
    """Every database server that answers (for the stale-run cleaner)."""
    found: list[Databases] = []
    for kind, url in (("mysql", settings.mysql_url), ("postgresql", settings.postgresql_url)):
        if _answers(url):
            found.append(ServerDatabases(kind, url, venv))
    return found


def _answers(server_url: str) -> bool:
    parts = urlsplit(server_url)
    address = (parts.hostname or "127.0.0.1", parts.port or _default_port(parts.scheme))
    try:
        with socket.create_connection(address, timeout=1):
            return True
    except OSError:
        return False


def _default_port(scheme: str) -> int:
    return 3306 if scheme.startswith("mysql") else 5432


def _safe(name: str) -> str:
    if not name.replace("_", "").isalnum():
        raise NovaBoxError(f"refusing an unusual database name: {name!r}")
    return name
