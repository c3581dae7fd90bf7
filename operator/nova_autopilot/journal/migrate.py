"""Schema migrations of the journal, run with alembic from inside the package.

:func:`upgrade` brings a database to the schema this code knows (``head``): it takes a
lock first (SQLite's write lock, a PostgreSQL advisory lock, a MySQL named lock), so
daemons starting together on one shared database migrate it once. It refuses a database
whose schema is newer than this code, rather than writing rows a newer release would
misread. :func:`new_revision` is for developers: it writes the migration that turns the
current schema into what ``journal/schema.py`` declares.

alembic is imported by the functions that use it, not with this module: :func:`at_head`
tells without it whether a database is at :data:`HEAD`, which is all that opening a
journal at this release's schema without migrating needs (the journal commands do).

alembic logs only its warnings and errors: what it says at INFO (its plugins when it is
imported, its context and every revision it runs, at each start) is no news to an
operator; ``migrations current`` and ``upgrade`` print what they did themselves.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Final

from sqlalchemy import Connection, inspect, text

from nova_autopilot.journal.database import Database, safe_url
from nova_autopilot.journal.errors import JournalError, SchemaMismatch

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

__all__ = [
    "HEAD",
    "MIGRATIONS",
    "at_head",
    "current_revisions",
    "downgrade",
    "head",
    "new_revision",
    "upgrade",
]

#: alembic's loggers (``alembic.*``) log at this level and above. Set with this module,
#: so before the functions below import alembic, which logs on import.
ALEMBIC_LOG_LEVEL: Final = logging.WARNING
logging.getLogger("alembic").setLevel(ALEMBIC_LOG_LEVEL)

#: The alembic environment: env.py, script.py.mako and versions/.
MIGRATIONS: Final = Path(__file__).resolve().with_name("migrations")
#: The revision of this code's schema, the last one in ``migrations/versions``: what
#: :func:`head` reads there, written here to be known without alembic. A new revision
#: changes it too (a test checks that the two agree).
HEAD: Final = "0003"
# Same number for every nova-autopilot: it names "the journal's schema" for the lock.
_PG_LOCK_KEY: Final = 0x6E6F7661_6A726E6C  # b"novajrnl"
_MYSQL_LOCK_NAME: Final = "nova_autopilot.journal.schema"
_MYSQL_LOCK_WAIT_S: Final = 120


def _config(script_location: Path, connection: Connection | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(script_location))
    # Revisions are numbered (--rev-id 0002) and their files are importable modules.
    config.set_main_option("file_template", "r%%(rev)s_%%(slug)s")
    config.set_main_option("truncate_slug_length", "40")
    config.attributes["connection"] = connection
    return config


def head(script_location: Path = MIGRATIONS) -> str:
    """The revision this code's schema is at, as the revisions in ``script_location`` say."""
    from alembic.script import ScriptDirectory

    revision = ScriptDirectory.from_config(_config(script_location)).get_current_head()
    if revision is None:  # pragma: no cover - the package always ships its revisions
        raise RuntimeError(f"no migration in {script_location}")
    return revision


def current_revisions(conn: Connection) -> tuple[str, ...]:
    """The revisions the database is at; empty for a database without the journal."""
    from alembic.runtime.migration import MigrationContext

    return tuple(MigrationContext.configure(conn).get_current_heads())


def at_head(database: Database) -> bool:
    """Whether the database is at :data:`HEAD` and no other revision, read in one reading
    transaction without alembic. False for anything else (no journal, behind, ahead, an
    unknown revision), which :func:`upgrade` then deals with and explains."""
    return database.read(_revisions) == (HEAD,)


def _revisions(conn: Connection) -> tuple[str, ...]:
    # What alembic's MigrationContext.get_current_heads() reads: the rows of its version
    # table (the default one: env.py names no other), none when there is no such table.
    if not inspect(conn).has_table("alembic_version"):
        return ()
    return tuple(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())


def upgrade(database: Database, *, allow: bool = True, script_location: Path = MIGRATIONS) -> None:
    """Bring the database's schema to :func:`head`.

    With ``allow=False`` nothing is changed: a database behind raises
    :class:`SchemaMismatch` (for deployments whose daemons may not run DDL and migrate
    with an administrator's account instead). A database ahead always raises it.
    """
    from alembic import command
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory.from_config(_config(script_location))
    target = head(script_location)
    with database.connection(write=True) as conn, conn.begin(), _schema_lock(conn, database):
        current = current_revisions(conn)
        unknown = [rev for rev in current if not _known(scripts, rev)]
        where = safe_url(database.url)
        if unknown:
            raise SchemaMismatch(
                f"the journal at {where} has schema revision {', '.join(unknown)}, which this "
                f"nova-autopilot does not know (it knows up to {target}): it was migrated by a "
                "newer release, or belongs to another application. Upgrade nova-autopilot, "
                "or point [journal] connection at another database."
            )
        if current == (target,):
            return
        if not allow:
            found = ", ".join(current) or "no journal schema"
            raise SchemaMismatch(
                f"the journal at {where} is at {found}, this nova-autopilot needs {target}, "
                "and migrating is off: run the migration with an account allowed to change "
                "the schema (docs/journal.md, 'Migrations')"
            )
        command.upgrade(_config(script_location, conn), target)


def downgrade(database: Database, *, to: str, script_location: Path = MIGRATIONS) -> None:
    """Take the schema back to revision ``to`` (``"base"``: no journal tables at all).
    Downgrading drops what later revisions added, data included."""
    from alembic import command

    with database.connection(write=True) as conn, conn.begin(), _schema_lock(conn, database):
        command.downgrade(_config(script_location, conn), to)


def new_revision(message: str, *, script_location: Path = MIGRATIONS) -> Path:
    """Write the next numbered revision, autogenerated by comparing the schema the
    migrations build (on a scratch SQLite file) with ``journal/schema.py``; returns its
    path. Review it before committing: autogenerate cannot see renames or data moves; and
    set :data:`HEAD` to the new revision."""
    from alembic import command

    next_id = f"{int(head(script_location)) + 1:04d}"
    with tempfile.TemporaryDirectory(prefix="journal-revision-") as scratch:
        database = Database(f"sqlite:///{scratch}/journal.sqlite", busy_timeout=5.0)
        try:
            upgrade(database, script_location=script_location)
            with database.connection(write=True) as conn, conn.begin():
                script = command.revision(
                    _config(script_location, conn),
                    message=message,
                    autogenerate=True,
                    rev_id=next_id,
                )
        finally:
            database.dispose()
    if script is None or isinstance(script, list):  # pragma: no cover - one head, one script
        raise RuntimeError(f"alembic wrote no single revision for {message!r}")
    return Path(script.path)


def _known(scripts: ScriptDirectory, revision: str) -> bool:
    from alembic.script.revision import RevisionError
    from alembic.util import CommandError

    try:
        return scripts.get_revision(revision) is not None
    except (CommandError, RevisionError):
        return False


@contextlib.contextmanager
def _schema_lock(conn: Connection, database: Database) -> Iterator[None]:
    """Hold the journal's schema lock for the block (SQLite: its BEGIN IMMEDIATE)."""
    dialect = conn.dialect.name
    if dialect == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
        yield
    elif dialect in ("mysql", "mariadb"):
        got = conn.execute(
            text("SELECT GET_LOCK(:name, :wait)"),
            {"name": _MYSQL_LOCK_NAME, "wait": _MYSQL_LOCK_WAIT_S},
        ).scalar()
        if got != 1:
            raise JournalError(
                f"journal {safe_url(database.url)}: another process kept the schema lock "
                f"for {_MYSQL_LOCK_WAIT_S}s"
            )
        try:
            yield
        finally:
            conn.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": _MYSQL_LOCK_NAME})
    else:
        yield
