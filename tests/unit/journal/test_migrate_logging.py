"""alembic is quiet below WARNING: opening (and migrating) the journal logs no INFO line
of alembic's, neither the plugins it announces on import nor the context and revisions
it announces at every start; its warnings still come through.

Each case runs in a fresh interpreter, as a start does: alembic logs when it is first
imported, which a test process that already imported it would never see.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

OPEN_TWICE = """
from nova_autopilot import logs
logs.configure(level={level!r}, fmt="json")
from nova_autopilot.journal import Journal
Journal.open({url!r}).close()  # a new journal: every revision runs
Journal.open({url!r}).close()  # a start on an existing one
import logging
logging.getLogger("alembic.runtime.migration").warning("a warning of alembic's")
logging.getLogger("nova_autopilot.test").info("an INFO line of the package")
"""


def logged(tmp_path: Path, level: str) -> list[dict[str, Any]]:
    url = f"sqlite:///{tmp_path / 'journal.sqlite'}"
    script = textwrap.dedent(OPEN_TWICE.format(level=level, url=url))
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def test_a_new_journal_and_a_start_log_no_alembic_line_below_warning(tmp_path: Path) -> None:
    lines = logged(tmp_path, "INFO")
    alembic = [line for line in lines if line["logger"].startswith("alembic")]
    assert [(line["level"], line["event"]) for line in alembic] == [
        ("warning", "a warning of alembic's")
    ]
    # the package's own INFO lines still come: it is alembic's, not the level, that changed
    assert any(line["event"] == "an INFO line of the package" for line in lines)
    assert (tmp_path / "journal.sqlite").exists()
