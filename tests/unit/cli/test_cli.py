"""The policy author's commands: check, explain, replay (and backtesting), demo."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from nova_autopilot.cli import main
from tests.samples import on_the_wire, sample, sample_names

ROOT = Path(__file__).resolve().parents[3]
SEED = str(ROOT / "config" / "policies.yaml")
STREAM = str(ROOT / "config" / "demo-stream.jsonl")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_check_accepts_the_seed_policies(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "check", "--policies", SEED)
    assert code == 0
    assert "3 policies valid (3 enabled)" in out


def test_check_prints_every_error_and_exits_1(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "policies:\n"
        "  - name: a\n    when: {event: x.y}\n    do: {action: fly}\n"
        "  - name: b\n    when: {source: moon, event: x.y}\n"
        "    do: {action: rescue, params: {server: x}}\n"
    )
    code, _, err = run(capsys, "check", "--policies", str(bad))
    assert code == 1
    assert "2 problems in policies" in err
    assert (
        f"{bad}:4: policy 'a': do.action: must be one of resize, finish_resize, rescue, "
        "unrescue, verify_boot" in err
    )
    assert (
        f"{bad}:6: policy 'b': when.source: must be one of nova, request, autopilot, sweep, any"
        in err
    )


def test_check_reads_the_policy_path_from_the_config_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    conf = tmp_path / "nova-autopilot.conf"
    conf.write_text(f"[policies]\npath = {SEED}\n")
    code, out, _ = run(capsys, "--config-file", str(conf), "check")
    assert code == 0
    assert SEED in out


@pytest.mark.parametrize("name", sample_names())
def test_explain_runs_on_every_nova_sample(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str
) -> None:
    event_file = tmp_path / "event.json"
    event_file.write_bytes(on_the_wire(sample(name)))
    code, out, _ = run(capsys, "explain", "--policies", SEED, "--event", str(event_file), "--json")
    assert code == 0
    result = json.loads(out)
    assert result["event"]["event_type"] == sample(name)["event_type"]
    assert [p["name"] for p in result["policies"]] == [
        "resize-on-approved-quota",
        "rescue-failed-boot",
        "unrescue-when-repaired",
    ]
    assert all(isinstance(p["matched"], bool) and p["reason"] for p in result["policies"])


def test_explain_says_why_the_rescue_did_not_fire_for_a_never_launched_server(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    notification = sample("instance-update")
    data = notification["payload"]["nova_object.data"]
    data["state_update"]["nova_object.data"].update(old_state="building", state="error")
    event_file = tmp_path / "event.json"
    event_file.write_text(json.dumps(notification))
    code, out, _ = run(capsys, "explain", "--policies", SEED, "--event", str(event_file))
    assert code == 0
    assert "rescue-failed-boot: condition failed: payload.launched_at exists (saw None)" in out
    assert "actions: none" in out


def test_explain_says_the_rescue_of_a_failed_reboot_waits_for_novas_task_to_end(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    notification = sample("instance-update")
    data = notification["payload"]["nova_object.data"]
    data.update(state="error", task_state="reboot_started_hard", launched_at="2026-11-25T10:00:00Z")
    data["state_update"]["nova_object.data"].update(
        old_state="active",
        state="error",
        old_task_state="reboot_started_hard",
        new_task_state="reboot_started_hard",
    )
    event_file = tmp_path / "event.json"
    event_file.write_text(json.dumps(notification))
    code, out, _ = run(capsys, "explain", "--policies", SEED, "--event", str(event_file))
    assert code == 0
    assert "MATCH  rescue-failed-boot" in out
    assert (
        "Nova's task reboot_started_hard is still in progress: the rescue first waits "
        "up to 120s for it to end, then decides on the server's state"
    ) in out
    data.update(task_state=None)
    data["state_update"]["nova_object.data"].update(new_task_state=None)
    event_file.write_text(json.dumps(notification))
    code, out, _ = run(capsys, "explain", "--policies", SEED, "--event", str(event_file), "--json")
    (action,) = json.loads(out)["actions"]
    assert "note" not in action


def test_explain_json_lists_the_actions_of_a_matching_request(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    event_file = tmp_path / "request.json"
    event_file.write_text(
        json.dumps(
            {
                "type": "quota.request.approved",
                "id": "q-1",
                "timestamp": "2026-11-25T10:00:00Z",
                "server": "web-1",
                "flavor": "m1.large",
            }
        )
    )
    code, out, _ = run(capsys, "explain", "--policies", SEED, "--event", str(event_file), "--json")
    assert code == 0
    assert json.loads(out)["actions"] == [
        {
            "policy": "resize-on-approved-quota",
            "action": "resize",
            "params": {"server": {"name": "web-1"}, "flavor": "m1.large"},
            "mode": "enforce",
        }
    ]


def test_explain_refuses_a_malformed_event_with_its_reason(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    event_file = tmp_path / "bad.json"
    event_file.write_text('{"type": "quota.request.approved"}')
    code, out, _ = run(capsys, "explain", "--policies", SEED, "--event", str(event_file), "--json")
    assert code == 1
    assert json.loads(out)["error"]["reason"] == "missing_field"


def test_an_unreadable_event_file_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = run(capsys, "explain", "--policies", SEED, "--event", str(tmp_path / "no"))
    assert code == 2
    assert "cannot read" in err


def test_replay_reports_decisions_and_rejections(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "replay", "--policies", SEED, STREAM, "--json")
    assert code == 0
    result = json.loads(out)
    assert result["messages"] == 11
    assert [(d["line"], d["policy"]) for d in result["decisions"]] == [
        (6, "resize-on-approved-quota"),
        (8, "rescue-failed-boot"),
        (13, "unrescue-when-repaired"),
    ]
    assert [(r["line"], r["reason"]) for r in result["rejected"]] == [
        (11, "unknown_field"),
        (12, "not_json"),
    ]


def test_replay_against_other_policies_shows_what_changes(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    other = tmp_path / "other.yaml"
    text = Path(SEED).read_text()
    text = text.replace(
        "name: unrescue-when-repaired", "name: unrescue-when-repaired\n    enabled: false"
    )
    text = text.replace("equals: error", "in: [error, stopped]")
    other.write_text(text)
    code, out, _ = run(
        capsys, "replay", "--policies", SEED, STREAM, "--against", str(other), "--json"
    )
    assert code == 0
    result = json.loads(out)
    assert [(c["line"], c["change"], c["policy"]) for c in result["changes"]] == [
        (13, "removed", "unrescue-when-repaired")
    ]
    assert result["base"]["unrescue-when-repaired"] == 1
    assert "unrescue-when-repaired" not in result["other"]
    code, out, _ = run(capsys, "replay", "--policies", SEED, STREAM, "--against", str(other))
    assert "removed  unrescue-when-repaired: unrescue" in out


def test_the_demo_runs_every_flow_prints_the_history_and_exits_0(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, "demo")
    assert code == 0, out
    assert "<- resize confirmed" in out
    assert "<- resize reverted (health gate failed: console: console shows 'Kernel panic')" in out
    assert "<- rescue rescued" in out
    assert "<- unrescue unrescued" in out
    assert "build-1 is ERROR and was never launched; operations on it: 0" in out
    # It ends with the journal's history (as `nova-autopilot history` shows it), then the
    # verdict of each flow.
    progress, _, rest = out.partition("\n== history: what the daemon did")
    history, _, verdict = rest.partition("\n== verdict\n")
    assert "<- unrescue unrescued" in progress
    assert history, out
    assert verdict, out
    # The table of `nova-autopilot history`, oldest first: one row per operation.
    rows = [line.split() for line in history.splitlines() if line[:4].isdigit()]
    assert [(row[3], row[-4], row[-3]) for row in rows] == [
        ("resize", "resize-on-approved-quota", "confirmed"),
        ("resize", "resize-on-approved-quota", "reverted"),
        ("rescue", "rescue-failed-boot", "rescued"),
        ("unrescue", "unrescue-when-repaired", "unrescued"),
    ]
    # Then each operation's chain: its event, policy, steps with Nova calls, gate, outcome.
    chains = history.split("\noperation ")[1:]
    assert len(chains) == 4
    web1, web2, db1, repaired = chains
    assert "  event     request quota.request.approved" in web1
    assert "  policy    resize-on-approved-quota: " in web1
    assert "check ok   console: console does not show 'Kernel panic'" in web1
    assert "POST /v2.1/servers/{id}/action 204  (confirm_resize)" in web1
    assert "  outcome   confirmed\n" in web1
    assert "check FAIL console: console shows 'Kernel panic'" in web2
    assert "POST /v2.1/servers/{id}/action 202  (revert_resize)" in web2
    assert "  outcome   reverted: health gate failed: console: console shows 'Kernel panic'" in web2
    assert "  event     nova instance.update" in db1
    assert "POST /v2.1/servers/{id}/action 200  (rescue)" in db1
    assert "  outcome   rescued\n" in db1
    assert "  event     request server.repair.done" in repaired
    assert "  outcome   unrescued\n" in repaired
    assert "Nova requests, " in repaired
    assert "\033[" not in out  # emphasis only on a terminal
    # The verdict closes the demo.
    assert "build-1          none       left alone   left alone" in verdict
    assert verdict.rstrip().endswith("demo: every flow ended as expected")


def test_the_installed_console_script_runs() -> None:
    script = Path(sys.executable).parent / "nova-autopilot"
    done = subprocess.run(
        [str(script), "check", "--policies", SEED], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "3 policies valid" in done.stdout


def test_the_daemon_refuses_to_start_without_its_signing_keys(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    conf = tmp_path / "nova-autopilot.conf"
    conf.write_text(
        f"[DEFAULT]\nstate_dir = {tmp_path}\n[policies]\npath = {SEED}\n"
        f"[requests]\nsigning_keys_file = {tmp_path / 'missing.yaml'}\n"
    )
    code, _, err = run(capsys, "--config-file", str(conf), "run")
    assert code == 1
    assert "signing keys file" in err
    assert "missing.yaml" in err


# --- approve, reject, pending ---------------------------------------------------------


def test_approve_and_reject_build_a_valid_request_naming_the_operation() -> None:
    import argparse

    from nova_autopilot.cli import decision_body
    from nova_autopilot.events import parse_message

    for verb in ("approve", "reject"):
        args = argparse.Namespace(
            command=verb, operation_id="op-1", by="carol", reason="OPS-7", id=None
        )
        body = decision_body(args)
        event = parse_message(body, expect="request")
        assert event.event_type == f"operation.{verb}"
        assert body["operation_id"] == "op-1"
        assert (body["approved_by"], body["reason"]) == ("carol", "OPS-7")
        assert body["id"].startswith(f"{verb}-")


def test_pending_lists_the_operations_awaiting_approval_from_the_journal(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:

    from nova_autopilot.engine.holds import hold_state
    from nova_autopilot.journal import AWAITING_APPROVAL, QUEUED, Journal, NewOperation

    conf = tmp_path / "nova-autopilot.conf"
    conf.write_text(f"[journal]\nconnection = sqlite:///{tmp_path / 'journal.sqlite'}\n")
    code, out, _ = run(capsys, "--config-file", str(conf), "pending")
    assert (code, out.strip()) == (0, "no operation awaits approval")
    assert not (tmp_path / "journal.sqlite").exists()  # a reader creates nothing

    now = datetime.now(timezone.utc)
    held = hold_state(now)
    with Journal.open(f"sqlite:///{tmp_path / 'journal.sqlite'}") as journal:
        news = [
            NewOperation(
                policy="grow", action="resize", server_id="s-1", params={"flavor": "m1.large"},
                phase=AWAITING_APPROVAL, state=held, why="quota.request.approved matched",
            ),
            NewOperation(policy="grow", action="resize", server_id="s-2", phase=QUEUED, state=held),
            NewOperation(policy="grow", action="resize", server_id="s-3"),
        ]  # fmt: skip
        journal.accept(message_key="request:r-1", operations=news, now=now)
    code, out, _ = run(capsys, "--config-file", str(conf), "pending")
    assert code == 0
    assert f"{news[0].id}  resize s-1  policy grow" in out
    assert '"flavor": "m1.large"' in out
    assert news[1].id not in out
    assert news[2].id not in out
    code, out, _ = run(capsys, "--config-file", str(conf), "pending", "--json")
    (listed,) = json.loads(out)
    assert (listed["operation_id"], listed["approval_until"]) == (news[0].id, now.isoformat())


def test_breaker_list_and_reset_work_on_the_journal_of_the_configuration(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from nova_autopilot.journal import Breaker, Journal

    conf = tmp_path / "nova-autopilot.conf"
    conf.write_text(f"[DEFAULT]\nstate_dir = {tmp_path}\n")
    with Journal.open(f"sqlite:///{tmp_path}/journal.sqlite") as journal:
        code, out, _ = run(capsys, "--config-file", str(conf), "breaker", "list")
        assert (code, out) == (0, "no breaker ever opened: all closed\n")
        for scope in ("global", "policy:grow"):
            journal.save_breaker(
                Breaker(scope=scope, state="open", failures=5, reason="resize failed: boom"),
                expect_version=None,
            )

        code, out, _ = run(capsys, "--config-file", str(conf), "breaker", "list")
        assert code == 0
        assert "global: open\n" in out
        assert "last failure: resize failed: boom" in out
        code, out, _ = run(capsys, "--config-file", str(conf), "breaker", "list", "--json")
        listed = json.loads(out)
        assert [(b["scope"], b["state"]) for b in listed] == [
            ("global", "open"),
            ("policy:grow", "open"),
        ]

        code, out, _ = run(
            capsys, "--config-file", str(conf), "breaker", "reset", "--policy", "grow"
        )
        assert (code, out) == (0, "reset policy:grow: closed\n")
        code, out, _ = run(capsys, "--config-file", str(conf), "breaker", "reset", "--global")
        assert (code, out) == (0, "reset global: closed\n")
        code, out, _ = run(capsys, "--config-file", str(conf), "breaker", "reset", "--all")
        assert (code, out) == (0, "nothing to reset: no breaker is open\n")
        assert {b.state for b in journal.breakers().values()} == {"closed"}


def test_breaker_reset_needs_to_be_told_which(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["breaker", "reset"])
    assert caught.value.code == 2
    assert "one of the arguments --policy --global --all is required" in capsys.readouterr().err


def test_breaker_commands_never_create_nor_migrate_a_journal(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    conf = tmp_path / "nova-autopilot.conf"
    conf.write_text(f"[DEFAULT]\nstate_dir = {tmp_path}\n")
    code, out, _ = run(capsys, "--config-file", str(conf), "breaker", "list")
    assert (code, out) == (0, "no breaker ever opened: all closed\n")
    code, out, _ = run(capsys, "--config-file", str(conf), "breaker", "reset", "--global")
    assert (code, out) == (0, "nothing to reset: global is not open\n")
    assert not (tmp_path / "journal.sqlite").exists()

    (tmp_path / "journal.sqlite").write_bytes(b"")  # a database no daemon migrated yet
    code, _, err = run(capsys, "--config-file", str(conf), "breaker", "list")
    assert code == 1
    assert "migrating is off" in err


def test_refusals_lists_what_the_journal_recorded_newest_first_and_filters(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from nova_autopilot.journal import Journal, NewRefusal

    conf = tmp_path / "nova-autopilot.conf"
    conf.write_text(f"[DEFAULT]\nstate_dir = {tmp_path}\n")
    code, out, _ = run(capsys, "--config-file", str(conf), "refusals")
    assert (code, out) == (0, "no refused request matches\n")
    assert not (tmp_path / "journal.sqlite").exists()  # a reader creates nothing

    now = datetime.now(timezone.utc)
    with Journal.open(f"sqlite:///{tmp_path}/journal.sqlite") as journal:
        for ago_h, reason, key in ((30, "expired", "ops-1"), (1, "bad_signature", "ops-2")):
            journal.record_refusal(
                NewRefusal(
                    at=now - timedelta(hours=ago_h),
                    source="request",
                    queue="nova-autopilot.requests",
                    reason=reason,
                    detail=f"refused as {reason}",
                    body={"id": f"r-{reason}"},
                    request_type="quota.request.approved",
                    request_id=f"r-{reason}",
                    key_id=key,
                )
            )
    code, out, _ = run(capsys, "--config-file", str(conf), "refusals")
    assert code == 0
    assert out.index("bad_signature") < out.index("expired")  # newest first
    assert "key: ops-2  queue: nova-autopilot.requests  source: request" in out
    code, out, _ = run(capsys, "--config-file", str(conf), "refusals", "--since", "2h", "--json")
    assert [(r["reason"], r["key_id"]) for r in json.loads(out)] == [("bad_signature", "ops-2")]
    code, out, _ = run(capsys, "--config-file", str(conf), "refusals", "--key", "ops-1", "--json")
    assert [r["request_id"] for r in json.loads(out)] == ["r-expired"]
    code, _, err = run(capsys, "--config-file", str(conf), "refusals", "--since", "soon")
    assert code == 2
    assert "--since" in err


def test_ctrl_c_in_a_command_exits_130_with_a_line_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from nova_autopilot import cli

    def interrupted(args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setitem(cli._COMMANDS, "check", interrupted)
    assert main(["check", "--policies", "config/policies.yaml"]) == 130
    assert capsys.readouterr().err == "nova-autopilot: interrupted\n"
