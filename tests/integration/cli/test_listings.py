"""Every listing (``history``, ``pending``, ``refusals``, ``breaker list``,
``status``) run as an operator runs it, the installed ``nova-autopilot`` on a real
SQLite journal (and, for ``status``, a real HTTP endpoint): ``-f
table|json|yaml|value|csv``, ``-c``, ``--json`` as ``-f json``, an unknown column,
ids given by their start, a run of alike steps folded."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from nova_autopilot.daemon.endpoints import Endpoints
from nova_autopilot.daemon.health import Readiness
from nova_autopilot.engine.holds import hold_state
from nova_autopilot.journal import AWAITING_APPROVAL, Breaker, Journal, NewOperation, NewRefusal

BIN = Path(sys.executable).parent
GATE = {
    "final": False,
    "checks": [{"check": "tcp", "passed": False, "detail": "the server has no address"}],
    "calls": [
        {"call": "console_output", "method": "POST", "path": "/v2.1/servers/{id}/action",
         "status": 200},
    ],
}  # fmt: skip
REVERTED = "ab" + "1" * 30
RUNNING = "ab" + "2" * 30  # starts as REVERTED does: "ab" names neither
HELD = "c" + "3" * 31


@dataclass(frozen=True)
class Place:
    conf: Path
    journal: str


def command(place: Place, *argv: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    done = subprocess.run(
        [str(BIN / "nova-autopilot"), "--config-file", str(place.conf), *argv],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "NO_COLOR": "1", **(env or {})},
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, done.stdout, done.stderr


def output(place: Place, *argv: str) -> str:
    code, out, err = command(place, *argv)
    assert code == 0, err
    return out


@pytest.fixture(scope="module")
def place(tmp_path_factory: pytest.TempPathFactory) -> Place:
    """A journal with a reverted resize whose gate failed 61 times alike, a running
    one, one awaiting approval, two refusals and an open breaker."""
    tmp = tmp_path_factory.mktemp("listings")
    journal_url = f"sqlite:///{tmp / 'journal.sqlite'}"
    conf = tmp / "nova-autopilot.conf"
    conf.write_text(
        f"[DEFAULT]\nstate_dir = {tmp}\n[journal]\nconnection = {journal_url}\n"
        "[metrics]\nport = 1\n"  # nobody answers there: status reads the journal
    )
    now = datetime.now(timezone.utc)
    event = {"source": "request", "event_type": "quota.request.approved", "payload": {}}
    with Journal.open(journal_url) as journal:
        reverted = NewOperation(
            id=REVERTED, policy="grow", action="resize", server_id="srv-1", server_name="web-1",
            params={"flavor": "m1.large"}, event=event, why="quota.request.approved matched",
        )  # fmt: skip
        journal.accept(
            message_key="request:r-1", operations=[reverted], now=now - timedelta(hours=1)
        )
        for i in range(61):
            at = now - timedelta(hours=1) + timedelta(seconds=5 * (i + 1))
            journal.record_step(REVERTED, name="gate_failed", detail=GATE, nova_requests=1, now=at)
        journal.finish(REVERTED, outcome="reverted", reason="health gate failed", now=now)
        running = NewOperation(id=RUNNING, policy="grow", action="resize", server_id="srv-2")
        journal.accept(message_key="request:r-2", operations=[running], now=now)
        held = NewOperation(
            id=HELD, policy="grow", action="resize", server_id="srv-3",
            params={"flavor": "m1.large"}, phase=AWAITING_APPROVAL, state=hold_state(now),
            why="quota.request.approved matched",
        )  # fmt: skip
        journal.accept(message_key="request:r-3", operations=[held], now=now)
        for request_id, reason in (("req-aa1", "expired"), ("req-aa2", "bad_signature")):
            journal.record_refusal(
                NewRefusal(
                    at=now, source="request", queue="nova-autopilot.requests", reason=reason,
                    detail=f"refused: {reason}", body={"id": request_id},
                    request_type="quota.request.approved", request_id=request_id, key_id="ops-1",
                )
            )  # fmt: skip
        journal.save_breaker(
            Breaker(scope="policy:grow", state="open", failures=3, reason="boom", opened_at=now),
            expect_version=None,
        )
    return Place(conf, journal_url)


# --- history ------------------------------------------------------------------------------


def test_history_json_is_the_document_of_json(place: Place) -> None:
    as_f = output(place, "history", "-f", "json")
    assert as_f == output(place, "history", "--json")
    document = json.loads(as_f)
    assert document["format"] == 1
    assert [op["id"] for op in document["operations"]] == [HELD, RUNNING, REVERTED]
    (reverted,) = [op for op in document["operations"] if op["id"] == REVERTED]
    assert len(reverted["steps"]) == 61  # every step, folded only in the text
    assert yaml.safe_load(output(place, "history", "-f", "yaml")) == document


def test_history_value_prints_ids_one_a_line(place: Place) -> None:
    assert output(place, "history", "-f", "value", "-c", "id").splitlines() == [
        HELD,
        RUNNING,
        REVERTED,
    ]
    lines = output(place, "history", "-f", "value", "-c", "id", "-c", "outcome", "-c", "steps")
    assert f"{REVERTED} reverted 61" in lines.splitlines()


def test_history_csv_table_and_chosen_json_columns(place: Place) -> None:
    rows = list(csv.DictReader(io.StringIO(output(place, "history", "-f", "csv"))))
    assert [r["id"] for r in rows] == [HELD, RUNNING, REVERTED]
    assert list(rows[0]) == [
        "id", "created_at", "action", "server_id", "server_name", "policy", "outcome",
        "nova_requests", "duration_s",
    ]  # fmt: skip
    assert rows[2]["outcome"] == "reverted"
    assert rows[2]["nova_requests"] == "61"

    table = output(place, "history", "-f", "table", "-c", "id", "-c", "policy")
    assert table.splitlines()[1].split() == ["|", "id", "|", "policy", "|"]
    assert f"| {REVERTED} | grow   |" in table
    assert output(place, "history", "-c", "id", "-c", "policy") == table  # -c alone: a table

    chosen = json.loads(output(place, "history", "-f", "json", "-c", "ID", "-c", "outcome"))
    assert chosen == [
        {"id": HELD, "outcome": None},
        {"id": RUNNING, "outcome": None},
        {"id": REVERTED, "outcome": "reverted"},
    ]


def test_history_text_folds_the_alike_steps_into_one_line(place: Place) -> None:
    text = output(place, "history", "--operation", REVERTED[:6] + "1")
    (line,) = [line for line in text.splitlines() if "gate_failed" in line]
    assert "gate_failed  [1 request each]  (x61, first " in line
    assert text.count("check FAIL tcp: the server has no address") == 1
    assert "  steps     61" in text


def test_an_id_is_taken_by_its_start_unless_several_start_so(place: Place) -> None:
    ids = output(place, "history", "--operation", "ab1", "-f", "value", "-c", "id")
    assert ids == f"{REVERTED}\n"
    code, out, err = command(place, "history", "--operation", "ab")
    assert (code, out) == (2, "")
    assert err == (
        f"nova-autopilot: operation id 'ab' is ambiguous: it starts {RUNNING}, {REVERTED}; "
        "give more of it\n"
    )
    code, _, err = command(place, "approve", "ab")  # resolved before any broker is asked
    assert code == 2
    assert "operation id 'ab' is ambiguous" in err
    assert output(place, "history", "--operation", "ffff") == "no operations match\n"


# --- the other listings -------------------------------------------------------------------


def test_pending_in_every_format(place: Place) -> None:
    assert output(place, "pending", "-f", "value", "-c", "operation_id") == f"{HELD}\n"
    (listed,) = json.loads(output(place, "pending", "-f", "json"))
    assert output(place, "pending", "--json") == output(place, "pending", "-f", "json")
    assert (listed["operation_id"], listed["params"]) == (HELD, {"flavor": "m1.large"})
    assert yaml.safe_load(output(place, "pending", "-f", "yaml")) == [listed]
    (row,) = csv.DictReader(io.StringIO(output(place, "pending", "-f", "csv")))
    assert json.loads(row["params"]) == {"flavor": "m1.large"}
    assert f"| {HELD} |" in output(place, "pending", "-f", "table")
    assert f"{HELD}  resize srv-3  policy grow" in output(place, "pending")


def test_refusals_in_every_format_and_by_the_start_of_a_request_id(place: Place) -> None:
    ids = output(place, "refusals", "-f", "value", "-c", "request_id").split()
    assert sorted(ids) == ["req-aa1", "req-aa2"]
    listed = json.loads(output(place, "refusals", "--json"))
    assert {r["request_id"]: r["body"] for r in listed} == {
        "req-aa1": {"id": "req-aa1"},
        "req-aa2": {"id": "req-aa2"},
    }
    assert datetime.fromisoformat(listed[0]["at"]).tzinfo is not None  # ISO 8601
    one = yaml.safe_load(output(place, "refusals", "--request", "req-aa2", "-f", "yaml"))
    assert [r["reason"] for r in one] == ["bad_signature"]
    code, out, err = command(place, "refusals", "--request", "req-aa")
    assert (code, out) == (2, "")
    assert "request id 'req-aa' is ambiguous: it starts req-aa1, req-aa2" in err
    rows = list(csv.reader(io.StringIO(output(place, "refusals", "-f", "csv", "-c", "reason"))))
    assert sorted(rows) == [["bad_signature"], ["expired"], ["reason"]]


def test_breaker_list_in_every_format(place: Place) -> None:
    assert output(place, "breaker", "list", "-f", "value", "-c", "scope", "-c", "state") == (
        "policy:grow open\n"
    )
    (listed,) = json.loads(output(place, "breaker", "list", "-f", "json"))
    assert (listed["scope"], listed["failures"], listed["reason"]) == ("policy:grow", 3, "boom")
    assert yaml.safe_load(output(place, "breaker", "list", "-f", "yaml")) == [listed]
    assert "| policy:grow | open  |" in output(
        place, "breaker", "list", "-c", "scope", "-c", "state"
    )
    (row,) = csv.DictReader(io.StringIO(output(place, "breaker", "list", "-f", "csv")))
    assert row["failures"] == "3"


@pytest.mark.parametrize(
    "listing", [["history"], ["pending"], ["refusals"], ["breaker", "list"], ["status"]]
)
def test_an_unknown_column_is_one_line_and_exit_2(place: Place, listing: list[str]) -> None:
    code, out, err = command(place, *listing, "-f", "value", "-c", "nope")
    assert (code, out) == (2, "")
    assert err.count("\n") == 1
    assert err.startswith(f"nova-autopilot: -c nope: {' '.join(listing)} has no such column; ")


# --- status -------------------------------------------------------------------------------


@pytest.fixture
def live(place: Place, tmp_path: Path) -> Iterator[Place]:
    """A daemon's endpoints answering a status document, and a configuration naming them."""
    document = {
        "daemon": {"version": "0.1.0", "pid": 42, "uptime_s": 60, "policies": 3},
        "readiness": {"ready": True, "problems": {}},
        "operations": [
            {"operation_id": "op-9", "action": "rescue", "server_id": "srv-9",
             "phase": "wait_rescued", "waiting": True, "attempts": 1,
             "started_at": "2026-11-25T10:00:00+00:00", "age_s": 12.5},
        ],
        "consumers": [],
    }  # fmt: skip
    endpoints = Endpoints(
        host="127.0.0.1",
        port=0,
        metrics=lambda: (b"", "text/plain"),
        alive=lambda: True,
        readiness=lambda: Readiness(True, {}),
        status=lambda: document,
    )
    endpoints.start()
    conf = tmp_path / "live.conf"
    conf.write_text(f"[metrics]\nport = {endpoints.address[1]}\n")
    try:
        yield Place(conf, place.journal)
    finally:
        endpoints.stop()


def test_status_of_a_live_daemon_in_every_format(live: Place) -> None:
    document = json.loads(output(live, "status", "-f", "json"))
    assert document == json.loads(output(live, "status", "--json"))
    assert document["daemon"]["pid"] == 42
    assert yaml.safe_load(output(live, "status", "-f", "yaml")) == document
    assert output(live, "status", "-f", "value", "-c", "operation_id", "-c", "phase") == (
        "op-9 wait_rescued\n"
    )
    (row,) = csv.DictReader(io.StringIO(output(live, "status", "-f", "csv")))
    assert (row["operation_id"], row["age_s"]) == ("op-9", "12.5")
    assert "| op-9         |" in output(live, "status", "-f", "table")
    assert output(live, "status").startswith("nova-autopilot 0.1.0 (pid 42)")


def test_status_of_a_silent_daemon_lists_the_journals_operations_and_exits_1(
    place: Place,
) -> None:
    code, out, err = command(place, "status", "-f", "value", "-c", "operation_id")
    assert code == 1
    assert sorted(out.split()) == sorted([RUNNING, HELD])
    assert err.startswith("nova-autopilot: the daemon does not answer: ")
    assert "the operations listed are the journal's unfinished ones" in err
    code, out, err = command(place, "status", "-f", "json")
    assert (code, err) == (1, "")
    assert json.loads(out)["answered"] is False
