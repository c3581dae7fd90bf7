"""``nova-autopilot history`` tells an operation's whole chain, read back from the
journal of real operations: openstacksdk against the sandbox Nova over HTTP, the
engine, the runner and a SQLite journal, then the command on that journal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from nova_autopilot import cli
from nova_autopilot.policies import load_texts
from nova_autopilot.sandbox.faults import ServerFaults
from tests.integration.stack import POLICIES, Stack
from tests.waiting import until

ROOT = Path(__file__).resolve().parents[2]


def config_for(tmp_path: Path) -> Path:
    """A configuration whose journal is the stack's."""
    conf = tmp_path / "nova-autopilot.conf"
    conf.write_text(
        f"[DEFAULT]\nstate_dir = {tmp_path / 'state'}\n\n"
        f"[journal]\nconnection = sqlite:///{tmp_path / 'journal.sqlite'}\n",
        encoding="utf-8",
    )
    return conf


def history(tmp_path: Path, capsys: pytest.CaptureFixture[str], *options: str) -> dict[str, Any]:
    """``nova-autopilot history --json`` in this process."""
    capsys.readouterr()
    code = cli.main(["--config-file", str(config_for(tmp_path)), "history", "--json", *options])
    out = capsys.readouterr().out
    assert code == 0, out
    result = json.loads(out)
    assert isinstance(result, dict)
    return result


def calls_of(step: dict[str, Any]) -> list[tuple[str, str, str, int]]:
    return [(c["call"], c["method"], c["path"], c["status"]) for c in step["calls"]]


def test_a_confirmed_resize_is_told_step_by_step_with_every_nova_call(
    stack: Stack, tmp_path: Path
) -> None:
    server = stack.sandbox.add_server("web-1", "m1.small")
    op_id = stack.request("quota.request.approved", server.id, flavor="m1.large")
    op = stack.outcome(op_id)
    assert op.outcome == "confirmed"

    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "nova_autopilot.cli",
            "--config-file",
            str(config_for(tmp_path)),
            "history",
            "--json",
            "--server",
            server.id,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
        check=False,
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["count"] == 1
    (chain,) = result["operations"]
    assert chain["id"] == op_id
    assert chain["server"] == {"id": server.id, "name": "web-1"}
    event = chain["event"]
    assert (event["source"], event["type"]) == ("request", "quota.request.approved")
    assert event["message_id"] == op.request_id
    assert event["fields"]["flavor"] == "m1.large"
    assert event["fields"]["server"] == {"id": server.id}
    assert chain["policy"] == "resize"
    assert chain["why"] == op.why
    assert chain["decision"] == {"verdict": "run", "reason": None}
    assert chain["mode"] == "enforce"

    steps = chain["steps"]
    assert [s["name"] for s in steps] == [
        "checked",
        "resize_requested",
        "verify_resize",
        "gate_passed",
        "confirm_requested",
        "settled",
    ]
    assert chain["nova_requests"] == op.nova_requests == 7
    assert sum(s["nova_requests"] for s in steps) == op.nova_requests
    for step in steps:
        assert len(step["calls"]) == step["nova_requests"], step["name"]
        assert step["calls_omitted"] == 0
        assert "calls" not in step["detail"]
    assert [c for s in steps for c in calls_of(s)] == [
        ("get_server", "GET", "/v2.1/servers/{id}", 200),
        ("list_flavors", "GET", "/v2.1/flavors/detail", 200),
        ("resize", "POST", "/v2.1/servers/{id}/action", 202),
        ("get_server", "GET", "/v2.1/servers/{id}", 200),
        ("console_output", "POST", "/v2.1/servers/{id}/action", 200),
        ("confirm_resize", "POST", "/v2.1/servers/{id}/action", 204),
        ("get_server", "GET", "/v2.1/servers/{id}", 200),
    ]
    gate = steps[3]["detail"]["checks"]
    assert [(c["check"], c["passed"]) for c in gate] == [
        ("status", True),
        ("flavor", True),
        ("power_state", True),
        ("console", True),
    ]
    assert (chain["outcome"], chain["reason"]) == ("confirmed", None)
    assert chain["duration_s"] == pytest.approx(
        (op.finished_at - op.created_at).total_seconds(), abs=0.001
    )
    assert steps[0]["at"] <= steps[-1]["at"]


def test_a_reverted_resize_shows_the_gate_check_that_failed(
    stack: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = stack.sandbox.add_server("web-2", "m1.small")
    stack.sandbox.faults.add_server(server.id, ServerFaults(console="panic"))
    op = stack.outcome(stack.request("quota.request.approved", server.id, flavor="m1.large"))
    assert op.outcome == "reverted"

    (chain,) = history(tmp_path, capsys, "--operation", op.id)["operations"]
    steps = {s["name"]: s for s in chain["steps"]}
    assert list(steps)[-3:] == ["gate_failed", "revert_requested", "settled"]
    checks = steps["gate_failed"]["detail"]["checks"]
    assert [(c["check"], c["passed"]) for c in checks] == [
        ("status", True),
        ("flavor", True),
        ("power_state", True),
        ("console", False),
    ]
    assert "Kernel panic" in checks[-1]["detail"]
    assert steps["gate_failed"]["detail"]["final"] is True
    assert calls_of(steps["revert_requested"]) == [
        ("revert_resize", "POST", "/v2.1/servers/{id}/action", 202)
    ]
    assert (chain["outcome"], chain["reason"]) == ("reverted", op.reason)
    assert sum(s["nova_requests"] for s in chain["steps"]) == chain["nova_requests"]

    capsys.readouterr()
    conf = str(config_for(tmp_path))
    assert cli.main(["--config-file", conf, "history", "--operation", op.id]) == 0
    text = capsys.readouterr().out
    assert "check FAIL console: console shows 'Kernel panic'" in text
    assert "POST /v2.1/servers/{id}/action 202  (revert_resize)" in text
    assert f"outcome   reverted: {op.reason}" in text


def test_a_dry_run_and_a_refusal_are_told_with_the_guards_reason_and_no_step(
    stack: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stack.policies = load_texts(
        [
            (
                "history.yaml",
                POLICIES.replace("{gate_timeout}", "2s")
                .replace("  - name: resize\n", "  - name: resize\n    limits: {cooldown: 1h}\n")
                .replace("  - name: rescue\n", "  - name: rescue\n    mode: dry-run\n"),
            )
        ]
    )
    server = stack.sandbox.add_server("web-3", "m1.small")
    dry = stack.outcome(stack.request("server.rescue.requested", server.id))
    first = stack.outcome(stack.request("quota.request.approved", server.id, flavor="m1.large"))
    again = stack.outcome(stack.request("quota.request.approved", server.id, flavor="m1.small"))
    assert (dry.outcome, first.outcome, again.outcome) == ("dry_run", "confirmed", "refused")

    result = history(tmp_path, capsys, "--server", server.id)
    assert [o["id"] for o in result["operations"]] == [again.id, first.id, dry.id]
    refused, _, dry_run = result["operations"]
    assert refused["decision"]["verdict"] == "refused"
    assert "cooldown" in refused["decision"]["reason"]
    assert (refused["steps"], refused["nova_requests"]) == ([], 0)
    assert dry_run["decision"] == {"verdict": "dry-run", "reason": "dry-run (policy)"}
    assert (dry_run["mode"], dry_run["outcome"]) == ("dry-run", "dry_run")
    assert (dry_run["steps"], dry_run["nova_requests"]) == ([], 0)

    only_refused = history(tmp_path, capsys, "--outcome", "refused", "--policy", "resize")
    assert [o["id"] for o in only_refused["operations"]] == [again.id]
    assert history(tmp_path, capsys, "--since", "1h", "--limit", "1")["count"] == 1
    assert history(tmp_path, capsys, "--until", "1h")["operations"] == []


def test_a_rescue_password_never_reaches_the_history(
    stack: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = stack.sandbox.add_server("web-4", "m1.small")
    op = stack.outcome(stack.request("server.rescue.requested", server.id))
    assert op.outcome == "rescued"
    # The answer to the requester is published just after the outcome is written.
    answer = until(
        lambda: next(
            (r for r in stack.results if r["_reply_to"] and r["operation_id"] == op.id), None
        ),
        20,
        "the answer to the requester",
    )
    password = answer["secrets"]["admin_password"]

    result = history(tmp_path, capsys, "--operation", op.id)
    assert password not in json.dumps(result)
    assert "rescue" in [c["call"] for s in result["operations"][0]["steps"] for c in s["calls"]]
    capsys.readouterr()
    cli.main(["--config-file", str(config_for(tmp_path)), "history", "--operation", op.id])
    assert password not in capsys.readouterr().out
