"""``nova-autopilot history``: reading the journal's records back as the chain of
each operation (event, policy, decision, steps with their Nova calls, outcome), as
JSON and as text; the filters; and that no secret ever comes out."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from nova_autopilot.cli import main
from nova_autopilot.journal import Journal, NewOperation, Operation, Step
from nova_autopilot.reports import history

T0 = datetime(2026, 11, 25, 20, 0, tzinfo=timezone.utc)
SID = "5e1f7a52-0000-4000-8000-000000000001"
SECRET = "s3cr3t-Pa55w0rd-never-shown"


def operation(**fields: Any) -> Operation:
    values: dict[str, Any] = {
        "id": "op-1",
        "message_key": "request:req-1",
        "policy": "grow-on-approval",
        "action": "resize",
        "project_id": "proj-1",
        "server_id": SID,
        "server_name": "web-1",
        "params": {"server": {"id": SID}, "flavor": "m1.large"},
        "mode": "enforce",
        "event": {
            "source": "request",
            "format": "request",
            "event_type": "quota.request.approved",
            "message_id": "req-1",
            "request_id": "req-1",
            "instance_id": SID,
            "project_id": "proj-1",
            "timestamp": "2026-11-25T19:59:59+00:00",
            "payload": {
                "type": "quota.request.approved",
                "server": {"id": SID},
                "flavor": "m1.large",
                "requested_by": "alice",
                "timestamp": "2026-11-25T19:59:59Z",
            },
        },
        "why": "quota.request.approved matched quota.request.approved",
        "request_id": "req-1",
        "correlation_id": None,
        "reply_to": None,
        "deadline_at": T0 + timedelta(minutes=15),
        "status": "done",
        "phase": "verify",
        "state": {"server_id": SID},
        "outcome": "confirmed",
        "reason": None,
        "nova_requests": 3,
        "step_count": 2,
        "created_at": T0,
        "updated_at": T0 + timedelta(seconds=42),
        "finished_at": T0 + timedelta(seconds=42),
        "owner": None,
        "lease_until": None,
        "version": 5,
    }
    values.update(fields)
    return Operation(**values)


def step(seq: int, name: str, detail: dict[str, Any], requests: int, seconds: float) -> Step:
    return Step(
        operation_id="op-1",
        seq=seq,
        name=name,
        detail=detail,
        nova_requests=requests,
        at=T0 + timedelta(seconds=seconds),
    )


GET = {"call": "get_server", "method": "GET", "path": "/v2.1/servers/{id}", "status": 200}
RESIZE = {"call": "resize", "method": "POST", "path": "/v2.1/servers/{id}/action", "status": 202}
STEPS = [
    step(1, "checked", {"status": "ACTIVE", "calls": [GET, GET]}, 2, 1),
    step(2, "resize_requested", {"flavor": "m1.large", "calls": [RESIZE]}, 1, 2),
]


# --- --since / --until --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ago"),
    [
        ("30m", timedelta(minutes=30)),
        ("2h", timedelta(hours=2)),
        ("7d", timedelta(days=7)),
        ("1w", timedelta(weeks=1)),
        ("90s", timedelta(seconds=90)),
        ("1.5h", timedelta(minutes=90)),
        (" 2H ", timedelta(hours=2)),
    ],
)
def test_an_age_means_that_long_before_now(text: str, ago: timedelta) -> None:
    assert history.parse_when(text, now=T0) == T0 - ago


@pytest.mark.parametrize(
    ("text", "moment"),
    [
        ("2026-11-25T18:30:00Z", datetime(2026, 11, 25, 18, 30, tzinfo=timezone.utc)),
        ("2026-11-25T19:30:00+01:00", datetime(2026, 11, 25, 18, 30, tzinfo=timezone.utc)),
        ("2026-11-25 18:30", datetime(2026, 11, 25, 18, 30, tzinfo=timezone.utc)),
        ("2026-11-25", datetime(2026, 11, 25, tzinfo=timezone.utc)),
    ],
)
def test_an_iso_8601_time_is_taken_as_utc_unless_it_names_its_zone(
    text: str, moment: datetime
) -> None:
    parsed = history.parse_when(text, now=T0)
    assert parsed == moment
    assert parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize("text", ["yesterday", "2x", "-2h", "", "h"])
def test_anything_else_is_refused_saying_what_is_accepted(text: str) -> None:
    with pytest.raises(ValueError, match="30m, 2h, 7d"):
        history.parse_when(text, now=T0)


# --- the chain ----------------------------------------------------------------------------


def test_an_operation_is_told_from_its_event_to_its_outcome() -> None:
    view = history.operation_view(operation(), STEPS)

    assert view["event"] == {
        "source": "request",
        "format": "request",
        "type": "quota.request.approved",
        "message_id": "req-1",
        "request_id": "req-1",
        "at": "2026-11-25T19:59:59+00:00",
        "server_id": SID,
        "project_id": "proj-1",
        "publisher_id": None,
        "fields": {"server": {"id": SID}, "flavor": "m1.large", "requested_by": "alice"},
    }
    assert (view["policy"], view["why"], view["mode"]) == (
        "grow-on-approval",
        "quota.request.approved matched quota.request.approved",
        "enforce",
    )
    assert view["decision"] == {"verdict": "run", "reason": None}
    assert view["steps"] == [
        {
            "seq": 1,
            "at": "2026-11-25T20:00:01+00:00",
            "name": "checked",
            "detail": {"status": "ACTIVE"},
            "nova_requests": 2,
            "calls": [GET, GET],
            "calls_omitted": 0,
        },
        {
            "seq": 2,
            "at": "2026-11-25T20:00:02+00:00",
            "name": "resize_requested",
            "detail": {"flavor": "m1.large"},
            "nova_requests": 1,
            "calls": [RESIZE],
            "calls_omitted": 0,
        },
    ]
    assert (view["outcome"], view["reason"], view["nova_requests"]) == ("confirmed", None, 3)
    assert view["duration_s"] == 42.0
    assert view["server"] == {"id": SID, "name": "web-1"}


def test_the_key_fields_of_a_nova_notification_are_picked_from_its_payload() -> None:
    event = history.event_view(
        {
            "source": "nova",
            "format": "versioned",
            "event_type": "instance.update",
            "message_id": "m-1",
            "publisher_id": "nova-compute:host-1",
            "payload": {
                "uuid": SID,
                "state": "error",
                "old_state": "active",
                "task_state": None,
                "flavor": {"name": "m1.small", "vcpus": 1},
                "fault": {"exception_message": "No valid host", "traceback": "..."},
                "image_uuid": "ignored",
            },
        }
    )
    assert event["fields"] == {
        "flavor": "m1.small",
        "state": "error",
        "old_state": "active",
        "fault": "No valid host",
    }
    assert event["publisher_id"] == "nova-compute:host-1"


def test_a_step_whose_calls_were_too_many_says_how_many_are_not_listed() -> None:
    crowded = step(1, "gate_failed", {"calls": [GET], "calls_omitted": 60}, 61, 1)
    (view,) = history.operation_view(operation(), [crowded])["steps"]
    assert (view["calls"], view["calls_omitted"], view["detail"]) == ([GET], 60, {})


def test_the_decision_is_dry_run_refused_before_any_step_or_run() -> None:
    dry = operation(mode="dry-run", outcome="dry_run", reason="dry-run (global)", step_count=0)
    refused = operation(outcome="refused", reason="budget: 3 of 3", step_count=0, phase="start")
    by_action = operation(outcome="refused", reason="already m1.large", step_count=1)

    assert history.decision_of(dry) == {"verdict": "dry-run", "reason": "dry-run (global)"}
    assert history.decision_of(refused) == {"verdict": "refused", "reason": "budget: 3 of 3"}
    assert history.decision_of(by_action) == {"verdict": "run", "reason": None}


def test_an_unfinished_operation_has_no_outcome_nor_duration_yet() -> None:
    running = operation(status="running", phase="wait_verify", outcome=None, finished_at=None)
    view = history.operation_view(running, STEPS[:1])
    assert (view["status"], view["phase"], view["outcome"], view["duration_s"]) == (
        "running",
        "wait_verify",
        None,
        None,
    )
    assert "(running)" in history.render([view])
    assert "phase wait_verify" in history.render([view])


def test_the_json_document_has_its_format_the_filters_and_the_operations() -> None:
    filters = history.Filters(server_id=SID, since=T0, limit=5)
    doc = history.document([history.operation_view(operation(), STEPS)], filters)
    assert doc["format"] == history.FORMAT_VERSION == 1
    assert doc["count"] == 1
    assert doc["filters"] == {
        "server": SID,
        "policy": None,
        "since": "2026-11-25T20:00:00+00:00",
        "until": None,
        "outcome": None,
        "operation": None,
        "limit": 5,
    }
    required = {"event", "policy", "why", "steps", "outcome", "reason", "nova_requests"}
    assert required <= set(doc["operations"][0])
    assert {"at", "name", "detail", "nova_requests", "calls"} <= set(
        doc["operations"][0]["steps"][0]
    )
    json.dumps(doc)  # JSON-ready as it is


# --- secrets ------------------------------------------------------------------------------


def leaky_operation() -> tuple[Operation, list[Step]]:
    """Records as a journal opened without redaction could hold them."""
    op = operation(
        params={"server": {"id": SID}, "admin_password": SECRET},
        event={
            "source": "request",
            "event_type": "server.rescue.requested",
            "payload": {"server": {"id": SID}, "parameters": {"password": SECRET}},
        },
        reason=f"Nova said: adminPass={SECRET}",
        state={"server_id": SID, "token": SECRET},
    )
    steps = [
        step(1, "rescue_requested", {"adminPass": SECRET, "calls": [RESIZE]}, 1, 1),
        step(2, "settled", {"note": f"Bearer {SECRET}"}, 0, 2),
    ]
    return op, steps


def test_no_secret_reaches_the_json_or_the_text() -> None:
    op, steps = leaky_operation()
    view = history.operation_view(op, steps)
    assert SECRET not in json.dumps(history.document([view], history.Filters()))
    assert SECRET not in history.render([view], chains=True, color=True)
    assert SECRET not in history.render([view], chains=True, color=False)


# --- text ---------------------------------------------------------------------------------


def test_no_operation_is_said_plainly() -> None:
    assert history.render([]) == "no operations match"


def test_a_few_operations_are_shown_as_a_table_then_each_chain() -> None:
    view = history.operation_view(operation(), STEPS)
    text = history.render([view])
    lines = text.splitlines()
    assert lines[0].split() == [
        "CREATED",
        "(UTC)",
        "OPERATION",
        "ACTION",
        "SERVER",
        "POLICY",
        "OUTCOME",
        "REQS",
        "TIME",
    ]
    assert lines[1].split()[:7] == [
        "2026-11-25",
        "20:00:00",
        "op-1",
        "resize",
        "web-1",
        f"({SID})",
        "grow-on-approval",
    ]
    assert lines[1].split()[7:] == ["confirmed", "3", "42.0s"]
    assert "  event     request quota.request.approved  id req-1" in text
    assert "  policy    grow-on-approval: quota.request.approved matched" in text
    assert "  decision  run  (mode enforce)" in text
    assert "    20:00:01.000  checked  [2 requests]" in text
    assert "        GET /v2.1/servers/{id} 200  (get_server)" in text
    assert "        POST /v2.1/servers/{id}/action 202  (resize)" in text
    assert "  outcome   confirmed" in text
    assert "3 Nova requests, 42.0s from decision to outcome" in text
    assert "\033[" not in text


def test_many_operations_are_only_a_table_unless_chains_are_asked_for() -> None:
    views = [
        history.operation_view(operation(id=f"op-{i}"), STEPS)
        for i in range(history.CHAIN_UP_TO + 1)
    ]
    assert len(history.render(views).splitlines()) == len(views) + 1
    assert "  event" in history.render(views, chains=True)


def test_the_gate_checks_are_listed_one_a_line_with_their_result() -> None:
    checks = [
        {"check": "status", "passed": True, "detail": "status is VERIFY_RESIZE"},
        {"check": "tcp", "passed": False, "detail": "192.0.2.10:22 did not answer"},
    ]
    gate = step(1, "gate_failed", {"problems": ["tcp: ..."], "final": True, "checks": checks}, 0, 1)
    text = history.render([history.operation_view(operation(), [gate])])
    assert "        final=True" in text
    assert "problems" not in text
    assert "        check ok   status: status is VERIFY_RESIZE" in text
    assert "        check FAIL tcp: 192.0.2.10:22 did not answer" in text


CONSOLE = {
    "call": "console_output",
    "method": "POST",
    "path": "/v2.1/servers/{id}/action",
    "status": 200,
}


def gate_retry(seq: int, seconds: float, detail: str = "the server has no address") -> Step:
    checks = [{"check": "tcp", "passed": False, "detail": detail}]
    return step(
        seq, "gate_failed", {"final": False, "checks": checks, "calls": [CONSOLE]}, 1, seconds
    )


def test_a_run_of_alike_steps_is_one_line_with_its_count_and_its_first_and_last_time() -> None:
    retries = [gate_retry(2 + i, 10 + 5 * i) for i in range(61)]
    steps = [STEPS[0], *retries, step(63, "revert_requested", {"calls": [RESIZE]}, 1, 400)]
    text = history.render([history.operation_view(operation(), steps)])
    folded = [line for line in text.splitlines() if "gate_failed" in line]
    assert folded == [
        "    20:00:10.000  gate_failed  [1 request each]  (x61, first 20:00:10.000, "
        "last 20:05:10.000)"
    ]
    assert text.count("check FAIL tcp: the server has no address") == 1
    assert text.count("(console_output)") == 1
    assert "  steps     63" in text  # the count is of every step
    assert "    20:00:01.000  checked  [2 requests]" in text
    assert "    20:06:40.000  revert_requested  [1 request]" in text


def test_only_consecutive_steps_that_are_alike_in_all_but_time_are_folded() -> None:
    steps = [
        gate_retry(1, 1),
        gate_retry(2, 2),
        gate_retry(3, 3, detail="192.0.2.10:22 did not answer"),  # another detail
        gate_retry(4, 4),  # alike the first two, but not next to them
        step(5, "gate_failed", {"final": False, "checks": [], "calls": []}, 0, 5),
    ]
    runs = history.fold([history.step_view(s) for s in steps])
    assert [[s["seq"] for s in run] for run in runs] == [[1, 2], [3], [4], [5]]
    text = history.render([history.operation_view(operation(), steps)])
    assert "(x2, first 20:00:01.000, last 20:00:02.000)" in text
    assert len([line for line in text.splitlines() if "gate_failed" in line]) == 4


def test_the_json_keeps_every_step_of_a_folded_run() -> None:
    steps = [gate_retry(1 + i, 1 + i) for i in range(61)]
    doc = history.document([history.operation_view(operation(), steps)], history.Filters())
    assert [s["seq"] for s in doc["operations"][0]["steps"]] == list(range(1, 62))


def test_on_a_terminal_outcomes_and_headings_stand_out() -> None:
    views = [
        history.operation_view(operation(), STEPS),
        history.operation_view(operation(id="op-2", outcome="failed", reason="x"), STEPS),
    ]
    text = history.render(views, color=True)
    assert "\033[32mconfirmed\033[0m" in text
    assert "\033[31mfailed\033[0m" in text
    assert "\033[1mCREATED" in text


# --- the command --------------------------------------------------------------------------


def config(tmp_path: Path) -> Path:
    conf = tmp_path / "nova-autopilot.conf"
    conf.write_text(
        f"[DEFAULT]\nstate_dir = {tmp_path / 'state'}\n"
        f"[journal]\nconnection = sqlite:///{tmp_path / 'journal.sqlite'}\n",
        encoding="utf-8",
    )
    return conf


def record(journal: Journal, at: datetime, **fields: Any) -> str:
    new = NewOperation(
        policy=fields.pop("policy", "grow"),
        action="resize",
        server_id=fields.pop("server_id", SID),
        event={"source": "request", "event_type": "quota.request.approved", "payload": {}},
        why="quota.request.approved matched quota.request.approved",
        **fields,
    )
    journal.accept(message_key=f"request:{new.id}", operations=[new], now=at)
    return new.id


@pytest.fixture
def recorded(tmp_path: Path) -> dict[str, str]:
    """Three operations: two hours ago, one hour ago, and now (unfinished)."""
    now = datetime.now(timezone.utc)
    with Journal.open(f"sqlite:///{tmp_path / 'journal.sqlite'}") as journal:
        old = record(journal, now - timedelta(hours=2))
        journal.record_step(
            old,
            name="checked",
            detail={"calls": [GET]},
            nova_requests=1,
            now=now - timedelta(hours=2),
        )
        journal.finish(old, outcome="confirmed", now=now - timedelta(hours=2))
        refused = record(journal, now - timedelta(hours=1), policy="shrink")
        journal.finish(refused, outcome="refused", reason="budget", now=now - timedelta(hours=1))
        running = record(journal, now, server_id="other-server")
    return {"old": old, "refused": refused, "running": running}


def run_history(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, *options: str
) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["--config-file", str(config(tmp_path)), "history", *options])
    out, err = capsys.readouterr()
    return code, out, err


def ids(capsys: pytest.CaptureFixture[str], tmp_path: Path, *options: str) -> list[str]:
    code, out, _ = run_history(capsys, tmp_path, "--json", *options)
    assert code == 0
    return [op["id"] for op in json.loads(out)["operations"]]


def test_the_filters_select_by_server_policy_outcome_time_and_operation(
    recorded: dict[str, str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    old, refused, running = recorded["old"], recorded["refused"], recorded["running"]
    assert ids(capsys, tmp_path) == [running, refused, old]
    assert ids(capsys, tmp_path, "--server", SID) == [refused, old]
    assert ids(capsys, tmp_path, "--policy", "shrink") == [refused]
    assert ids(capsys, tmp_path, "--outcome", "confirmed") == [old]
    assert ids(capsys, tmp_path, "--since", "90m") == [running, refused]
    assert ids(capsys, tmp_path, "--since", "3h", "--until", "90m") == [old]
    assert ids(capsys, tmp_path, "--limit", "1") == [running]
    assert ids(capsys, tmp_path, "--operation", old) == [old]
    assert ids(capsys, tmp_path, "--operation", old[:12]) == [old]  # as the table shows it
    assert ids(capsys, tmp_path, "--operation", old, "--policy", "shrink") == []


def test_one_operation_is_shown_with_its_chain_even_among_many(
    recorded: dict[str, str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, _ = run_history(capsys, tmp_path, "--operation", recorded["old"])
    assert code == 0
    assert f"operation {recorded['old']}" in out
    assert "GET /v2.1/servers/{id} 200  (get_server)" in out


def test_nothing_matching_exits_0_and_says_so(
    recorded: dict[str, str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert run_history(capsys, tmp_path, "--policy", "none")[:2] == (0, "no operations match\n")


def test_a_journal_not_written_yet_is_no_operation_and_is_not_created(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert run_history(capsys, tmp_path)[:2] == (0, "no operations match\n")
    assert not (tmp_path / "journal.sqlite").exists()
    code, out, _ = run_history(capsys, tmp_path, "--json")
    assert (code, json.loads(out)["operations"]) == (0, [])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (("--since", "yesterday"), "--since: 'yesterday' is neither"),
        (("--until", "2h ago"), "--until: '2h ago' is neither"),
        (("--limit", "0"), "--limit must be at least 1"),
        (("--outcome", "great"), "--outcome 'great': expected one of confirmed"),
    ],
)
def test_wrong_options_are_usage_errors(
    options: tuple[str, ...], message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = run_history(capsys, tmp_path, *options)
    assert (code, out) == (2, "")
    assert message in err


def test_no_secret_of_the_journal_reaches_the_command_output(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    op, steps = leaky_operation()
    with Journal.open(f"sqlite:///{tmp_path / 'journal.sqlite'}") as journal:  # no redaction
        new = NewOperation(
            policy=op.policy, action=op.action, server_id=SID, params=op.params, event=op.event
        )
        journal.accept(message_key="request:leaky", operations=[new])
        for s in steps:
            journal.record_step(new.id, name=s.name, detail=s.detail, nova_requests=s.nova_requests)
        journal.finish(new.id, outcome="failed", reason=op.reason)
    for options in ((), ("--json",), ("--operation", new.id)):
        code, out, _ = run_history(capsys, tmp_path, *options)
        assert code == 0
        assert SECRET not in out
        assert new.id[:12] in out


def test_every_field_of_the_json_is_documented() -> None:
    page = (Path(__file__).resolve().parents[3] / "docs" / "history.md").read_text("utf-8")
    step_fields = page.replace(".steps[]", "")  # `.steps[].at` documents a step's `.at`

    def undocumented(keys: Any, form: str, text: str = page) -> list[str]:
        return [k for k in keys if form.format(k) not in text and form.format(f"{k}[]") not in text]

    doc = history.document([history.operation_view(operation(), STEPS)], history.Filters())
    (chain,) = doc["operations"]
    assert undocumented(doc, "| `{}`") == []
    assert undocumented(chain, "`.{}`") == []
    assert undocumented(chain["steps"][0], "`.{}`", step_fields) == []
    assert undocumented(chain["event"], "`{}`") == []
    assert "`.decision` | `{verdict, reason}`" in page


def test_a_step_of_a_woken_phase_says_what_woke_it_after_its_name() -> None:
    woken = Step(
        operation_id="op-1",
        seq=2,
        name="task_ended",
        detail={
            "status": "ERROR",
            "woken_by": {"by": "notification", "event": "instance.update"},
        },
        nova_requests=0,
        at=datetime(2026, 11, 25, 20, 0, 3, tzinfo=timezone.utc),
    )
    text = history.render([history.operation_view(operation(), [woken])])
    (line,) = [line for line in text.splitlines() if "task_ended" in line]
    assert line.endswith("task_ended  (woken by notification instance.update)")
    assert "woken_by" not in text
    doc = history.document([history.operation_view(operation(), [woken])], history.Filters())
    assert doc["operations"][0]["steps"][0]["detail"]["woken_by"] == {
        "by": "notification",
        "event": "instance.update",
    }


def test_the_server_filter_takes_the_start_of_an_id_and_refuses_one_that_fits_several(
    recorded: dict[str, str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert ids(capsys, tmp_path, "--server", SID[:8]) == [recorded["refused"], recorded["old"]]
    with Journal.open(f"sqlite:///{tmp_path / 'journal.sqlite'}") as journal:
        record(journal, datetime.now(timezone.utc), server_id=SID[:-1] + "2")
    code, out, err = run_history(capsys, tmp_path, "--server", SID[:8])
    assert (code, out) == (2, "")
    assert "is the start of 2 server ids" in err
    assert "Traceback" not in err
