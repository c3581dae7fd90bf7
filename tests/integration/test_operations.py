"""Confirmed operations over real HTTP: openstacksdk against the sandbox Nova,
through the engine, the runner and the journal, on every path the daemon
must get right."""

from __future__ import annotations

from pathlib import Path

import pytest

from nova_autopilot.sandbox import Durations, Settings
from nova_autopilot.sandbox.faults import ServerFaults
from tests.integration.stack import BOOT_POLICIES, Stack
from tests.waiting import until


def test_a_healthy_resize_is_confirmed_on_the_new_flavor(stack: Stack) -> None:
    server = stack.sandbox.add_server("web-1", "m1.small")
    op = stack.outcome(stack.request("quota.request.approved", server.id, flavor="m1.large"))
    assert (op.outcome, op.reason) == ("confirmed", None)
    after = stack.sandbox.server(server.id)
    assert after.flavor.name == "m1.large"
    assert stack.nova_calls("confirmResize") == 1
    # GET, POST resize, GET, POST console (the gate), POST confirm, GET; and the
    # first operation of the daemon lists the flavors (cached afterwards).
    assert op.nova_requests == 7
    steps = [s.name for s in stack.journal.steps(op.id)]
    assert steps[-3:] == ["gate_passed", "confirm_requested", "settled"]


def test_a_failing_gate_reverts_to_the_old_flavor(stack: Stack) -> None:
    server = stack.sandbox.add_server("web-2", "m1.small")
    stack.sandbox.faults.add_server(server.id, ServerFaults(console="panic"))
    op = stack.outcome(stack.request("quota.request.approved", server.id, flavor="m1.large"))
    assert op.outcome == "reverted"
    assert "Kernel panic" in (op.reason or "")
    assert stack.sandbox.server(server.id).flavor.name == "m1.small"
    assert stack.nova_calls("confirmResize") == 0


def test_a_gate_that_never_passes_in_time_reverts(stack: Stack) -> None:
    server = stack.sandbox.add_server("web-3", "m1.small")
    stack.sandbox.faults.add_server(server.id, ServerFaults(console="emergency"))
    op = stack.outcome(stack.request("quota.request.approved", server.id, flavor="m1.large"))
    assert op.outcome == "reverted"
    assert "does not show 'login:'" in (op.reason or "")
    gate_checks = [s for s in stack.journal.steps(op.id) if s.name == "gate_failed"]
    assert len(gate_checks) >= 1
    assert gate_checks[-1].detail["final"] is True


def test_novas_auto_confirm_racing_our_confirm_is_success(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = Stack(tmp_path, settings=Settings(resize_confirm_window=0.3)).start().with_flavors()
    try:
        server = stack.sandbox.add_server("web-4", "m1.small")
        console = stack.cloud.console_output

        def slow_guest(server_id: str, *, lines: int | None = None) -> str:
            # The guest takes its time: Nova's resize_confirm_window runs out meanwhile.
            until(lambda: stack.sandbox.server(server_id).vm_state == "active", what="auto-confirm")
            return console(server_id, lines=lines)

        monkeypatch.setattr(stack.cloud, "console_output", slow_guest)
        op = stack.outcome(stack.request("quota.request.approved", server.id, flavor="m1.large"))
        assert (op.outcome, op.reason) == ("confirmed", None)
        assert "confirmed_by_nova" in [s.name for s in stack.journal.steps(op.id)]
        assert stack.sandbox.server(server.id).flavor.name == "m1.large"
    finally:
        stack.stop()


def test_a_resize_nova_cannot_place_fails_with_novas_reason(stack: Stack) -> None:
    server = stack.sandbox.add_server("web-5", "m1.small")
    stack.sandbox.fail(server.id, "no_valid_host")
    op = stack.outcome(stack.request("quota.request.approved", server.id, flavor="m1.large"))
    assert op.outcome == "failed"
    assert "No valid host" in (op.reason or "")


def test_a_resize_refused_for_quota_ends_with_that_reason(stack: Stack) -> None:
    server = stack.sandbox.add_server("web-6", "m1.small")
    stack.sandbox.faults.add_server(server.id, ServerFaults(quota_exceeded=True))
    op = stack.outcome(stack.request("quota.request.approved", server.id, flavor="m1.large"))
    assert op.outcome == "failed"
    assert (op.reason or "").startswith("quota exceeded: Quota exceeded")


def test_nova_answering_500_twice_is_retried_then_the_resize_succeeds(stack: Stack) -> None:
    server = stack.sandbox.add_server("web-7", "m1.small")
    stack.sandbox.http_fault(500, times=2, method="POST", action="resize")
    op = stack.outcome(stack.request("quota.request.approved", server.id, flavor="m1.large"))
    assert op.outcome == "confirmed"
    retries = [s.name for s in stack.journal.steps(op.id) if s.name.endswith(".retry")]
    assert retries == ["request.retry", "request.retry"]
    assert stack.nova_calls("resize") == 3


def test_a_never_launched_server_is_not_rescuable_and_rescue_is_never_called(
    stack: Stack,
) -> None:
    server = stack.sandbox.add_server("fail-boot", "m1.small", state="ERROR", launched=False)
    op = stack.outcome(stack.request("server.rescue.requested", server.id))
    assert op.outcome == "not_rescuable"
    assert stack.nova_calls("rescue") == 0


def test_a_launched_server_in_error_is_rescued_then_unrescued(stack: Stack) -> None:
    server = stack.sandbox.add_server("db-1", "m1.small", state="ERROR")
    op = stack.outcome(stack.request("server.rescue.requested", server.id))
    assert (op.outcome, op.reason) == ("rescued", None)
    assert stack.sandbox.server(server.id).vm_state == "rescued"
    # The answer is published just after the outcome is written: wait for it.
    answer = until(
        lambda: next(
            (r for r in stack.results if r["operation_id"] == op.id and r["_reply_to"]), None
        ),
        20,
        "the answer to the requester",
    )
    assert len(answer["secrets"]["admin_password"]) >= 20
    assert "secrets" not in next(r for r in stack.results if r["operation_id"] == op.id)
    back = stack.outcome(stack.request("server.repair.done", server.id))
    assert back.outcome == "unrescued"
    assert stack.sandbox.server(server.id).vm_state == "active"


def test_without_notifications_the_batched_poll_finishes_the_resize(tmp_path: Path) -> None:
    stack = Stack(tmp_path, notifications=False, poll_interval_s=0.2).start()
    try:
        stack.sandbox.add_flavor("m1.small")
        stack.sandbox.add_flavor("m1.large", vcpus=2)
        server = stack.sandbox.add_server("web-8", "m1.small")
        op = stack.outcome(stack.request("quota.request.approved", server.id, flavor="m1.large"))
        assert op.outcome == "confirmed"
        assert stack.cloud.requests.by_call["GET /v2.1/servers/detail"] >= 1
    finally:
        stack.stop()


def test_a_slow_nova_costs_no_more_requests_when_notifications_arrive(tmp_path: Path) -> None:
    stack = Stack(tmp_path, durations=Durations().scaled(10)).start()
    try:
        stack.sandbox.add_flavor("m1.small")
        stack.sandbox.add_flavor("m1.large", vcpus=2)
        server = stack.sandbox.add_server("web-9", "m1.small")
        op = stack.outcome(stack.request("quota.request.approved", server.id, flavor="m1.large"))
        assert op.outcome == "confirmed"
        assert op.nova_requests == 7  # the same as when Nova is quick
    finally:
        stack.stop()


def test_a_guest_that_panics_after_nova_says_active_is_seen_and_rescued(stack: Stack) -> None:
    from nova_autopilot.policies import load_texts

    stack.policies = load_texts([("boot.yaml", BOOT_POLICIES)])
    server = stack.sandbox.add_server("app-1", "m1.small", state="SHUTOFF")
    stack.sandbox.faults.add_server(server.id, ServerFaults(console="panic"))
    stack.cloud.connection.compute.start_server(server.id)  # Nova: ACTIVE; the guest: panic
    rescued = until(
        lambda: [op for op in stack.journal.history() if op.action == "rescue" and op.finished],
        30,
        "the rescue of the failed boot",
    )
    verified = [op for op in stack.journal.history() if op.action == "verify_boot"]
    assert [(op.outcome, op.reason) for op in verified] == [
        ("boot_failed", "the console shows 'Kernel panic'")
    ]
    assert rescued[0].outcome == "rescued"
    assert rescued[0].event["event_type"] == "autopilot.boot.failed"
    assert stack.sandbox.server(server.id).vm_state == "rescued"
