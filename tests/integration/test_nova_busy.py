"""An action that finds Nova busy with the server waits for the task to end,
then decides: over real HTTP against the sandbox Nova, which reports a failed
reboot as the real Nova does (ERROR while the reboot task is still set, and
again once it is cleared)."""

from __future__ import annotations

from pathlib import Path

from nova_autopilot.journal import Operation
from nova_autopilot.policies import PolicySet, load_policies, load_texts
from nova_autopilot.sandbox.faults import ServerFaults
from tests.integration.stack import Stack
from tests.waiting import until

ROOT = Path(__file__).resolve().parents[2]
#: How long the sandbox keeps a failed reboot's server in ERROR with its task set:
#: long enough for the daemon to read the server in between, every time.
TASK_CLEARED_AFTER_S = 2.0


def shipped_policies(*, task_timeout: str) -> PolicySet:
    """config/policies.yaml, with another ``task_timeout`` for the rescue."""
    text = (ROOT / "config" / "policies.yaml").read_text()
    assert "task_timeout: 2m " in text
    return load_texts(
        [("policies.yaml", text.replace("task_timeout: 2m ", f"task_timeout: {task_timeout} "))]
    )


def fail_reboot(stack: Stack, server_id: str, *, cleared_after_s: float) -> None:
    stack.sandbox.faults.add_server(
        server_id,
        ServerFaults(fail=frozenset({"reboot"}), delays={"reboot_error": cleared_after_s}),
    )
    stack.cloud.connection.compute.reboot_server(server_id, "HARD")


def rescues(stack: Stack) -> list[Operation]:
    return [op for op in stack.journal.history() if op.action == "rescue" and op.finished]


def steps(stack: Stack, op: Operation) -> list[str]:
    return [step.name for step in stack.journal.steps(op.id)]


def test_the_shipped_policy_rescues_a_failed_reboot_once_nova_clears_the_task(
    stack: Stack,
) -> None:
    stack.policies = load_policies(ROOT / "config" / "policies.yaml")
    server = stack.sandbox.add_server("web-1", "m1.small")
    fail_reboot(stack, server.id, cleared_after_s=TASK_CLEARED_AFTER_S)

    (op,) = until(lambda: rescues(stack), 30, "the rescue of the failed reboot")

    assert (op.policy, op.outcome, op.reason) == ("rescue-failed-boot", "rescued", None)
    assert op.event["payload"]["task_state"] == "reboot_started_hard"  # fired on the first
    assert steps(stack, op)[:3] == ["waiting_for_task", "task_ended", "checked"]
    assert stack.sandbox.server(server.id).vm_state == "rescued"
    assert stack.nova_calls("rescue") == 1  # never asked while the task was set
    assert op.nova_requests == 4  # GET (busy), GET (task ended), POST rescue, GET (rescued)


def test_a_task_that_ends_in_verify_resize_makes_the_rescue_refused_with_novas_state(
    stack: Stack,
) -> None:
    server = stack.sandbox.add_server("web-2", "m1.small")
    stack.sandbox.faults.add_server(server.id, ServerFaults(delays={"resize_migrate": 2.0}))
    large = stack.cloud.flavor("m1.large").id
    stack.cloud.connection.compute.resize_server(server.id, large)  # by someone else

    op = stack.outcome(stack.request("server.rescue.requested", server.id))

    assert (op.outcome, op.reason) == ("refused", "the server is VERIFY_RESIZE (vm_state resized)")
    assert steps(stack, op) == ["waiting_for_task", "task_ended"]
    assert stack.nova_calls("rescue") == 0


def test_a_task_that_outlasts_task_timeout_makes_the_rescue_refused_saying_so(
    stack: Stack,
) -> None:
    stack.policies = shipped_policies(task_timeout="1s")
    server = stack.sandbox.add_server("web-3", "m1.small")
    fail_reboot(stack, server.id, cleared_after_s=30.0)

    (op,) = until(lambda: rescues(stack), 30, "the end of the rescue")

    assert (op.outcome, op.reason) == (
        "refused",
        "task reboot_started_hard is still in progress after 1s",
    )
    assert steps(stack, op) == ["waiting_for_task", "task_still_running"]
    assert stack.nova_calls("rescue") == 0
    assert op.nova_requests == 2  # the first look, and one at the bound
