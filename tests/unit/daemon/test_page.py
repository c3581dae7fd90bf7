"""The status page renders the status document and the journal as escaped HTML:
held operations, the last hour's chains, a journal that cannot be read."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from nova_autopilot.daemon.page import StatusPage
from nova_autopilot.journal import Journal, JournalError, NewOperation

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
EVIL = "<script>alert(1)</script>"


def document() -> dict[str, Any]:
    return {
        "daemon": {"version": "1.2", "pid": 7, "uptime_s": 90.0, "policies": 2},
        "readiness": {"ready": False, "problems": {"cloud": f"Nova {EVIL}"}},
        "operations": [
            {
                "operation_id": "op-1",
                "action": "resize",
                "server_id": EVIL,
                "phase": "await_verify",
                "waiting": True,
                "attempts": 0,
                "age_s": 42.0,
            }
        ],
        "breakers": {"global": "closed", "policy:p": "open"},
        "consumers": [{"name": "requests", "queue": "q", "up": False, "reconnects": 1}],
    }


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    with Journal.open(f"sqlite:///{tmp_path / 'journal.sqlite'}") as opened:
        yield opened


def test_every_value_is_escaped_and_held_operations_are_listed(journal: Journal) -> None:
    until = NOW + timedelta(hours=1)
    held = NewOperation(
        policy="p", action="rescue", server_id="s-1", server_name=EVIL,
        phase="awaiting_approval", deadline_at=until,
    )  # fmt: skip
    journal.accept(message_key="k-1", operations=[held], now=NOW - timedelta(minutes=5))
    page = StatusPage(status=document, journal=journal, clock=lambda: NOW).render().decode()
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert 'id="readiness">not ready<' in page
    assert ">await_verify<" in page
    assert "42 s" in page
    assert held.id in page
    assert ">awaiting_approval<" in page
    assert "5 min" in page
    assert f'id="op-{held.id}"' in page  # in the last hour, with its (empty) chain
    assert '<span class="bad">open</span>' in page


def test_a_journal_that_cannot_be_read_is_said_not_raised() -> None:
    class Broken:
        def unfinished(self, **_: Any) -> Any:
            raise JournalError("database is locked")

        history = steps = unfinished

    page = StatusPage(status=document, journal=Broken(), clock=lambda: NOW)  # type: ignore[arg-type]
    body = page.render().decode()
    assert body.count("the journal cannot be read: database is locked") == 2
