"""Migrations by hand: ``python -m nova_autopilot.journal.migrations COMMAND``.

``upgrade``   bring the journal at the URL to this release's schema (what the daemon does
              when it opens it, unless told not to)
``current``   the revision the journal at the URL is at, and this release's
``revision``  (developers) write the next migration from the changes to journal/schema.py

The URL comes from ``--url`` or the environment variable NOVA_AUTOPILOT_JOURNAL_URL
(which keeps a password out of the process list).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from nova_autopilot.journal import migrate
from nova_autopilot.journal.database import Database, safe_url
from nova_autopilot.journal.errors import JournalError, SchemaMismatch

URL_VARIABLE = "NOVA_AUTOPILOT_JOURNAL_URL"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m nova_autopilot.journal.migrations",
        description="Schema migrations of the nova-autopilot journal.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("upgrade", "migrate the journal to this release's schema"),
        ("current", "show the journal's revision and this release's"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument("--url", default=os.environ.get(URL_VARIABLE), help="SQLAlchemy URL")
    revision = commands.add_parser("revision", help="write the next migration (developers)")
    revision.add_argument("-m", "--message", required=True, help="what the migration does")
    args = parser.parse_args(argv)

    if args.command == "revision":
        print(migrate.new_revision(args.message))
        return 0
    if not args.url:
        parser.error(f"give the journal's URL with --url or {URL_VARIABLE}")
    database = Database(args.url, busy_timeout=30.0)
    try:
        if args.command == "upgrade":
            migrate.upgrade(database)
        with database.connection(write=False) as conn, conn.begin():
            current = ", ".join(migrate.current_revisions(conn)) or "none"
        print(f"{safe_url(database.url)}: at {current}; this release: {migrate.head()}")
    except (JournalError, SchemaMismatch) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        database.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
