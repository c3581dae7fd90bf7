"""Resize: check (a task in progress: wait for its end first) -> request ->
wait for VERIFY_RESIZE -> health gate -> confirm (or revert) -> verify the
final state and flavor.

Every phase reads the server first and acts idempotently, so a daemon that
restarts in any phase resumes without asking Nova twice for the same thing.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from nova_autopilot.actions.common import (
    ask_once,
    begin,
    failure_reason,
    nova_recorded,
    raise_quota,
    take_lock,
    wait_while_busy,
)
from nova_autopilot.actions.gate import (
    Target,
    hopeless,
    implicit_checks,
    policy_checks,
    problems_of,
    recorded,
)
from nova_autopilot.actions.machine import (
    Finish,
    Machine,
    Next,
    StepContext,
    Transition,
    Wait,
    describe,
)
from nova_autopilot.cloud import ServerState
from nova_autopilot.errors import Conflict, NotFound, QuotaExceeded, Rejected
from nova_autopilot.journal import StateKey

SETTLED = ("ACTIVE", "SHUTOFF")
#: How often a failing gate is tried again until ``gate_timeout``.
GATE_RETRY_S = 5.0

WAIT_VERIFY = Wait(
    "wait_verify",
    events=(
        "instance.resize_finish.end",
        "instance.resize.error",
        "instance.resize_prep.error",
        "instance.resize_finish.error",
        "compute_task.migrate_server.error",
        "instance.resize_confirm.end",
    ),
    states=("resized", "error", "active", "stopped"),
)
WAIT_FINAL = Wait(
    "verify",
    events=("instance.resize_confirm.end", "instance.resize_revert.end"),
    states=("active", "stopped", "error"),
)


def _settled(server: ServerState) -> bool:
    return server.task_state is None and server.status in SETTLED


def check(ctx: StepContext) -> Transition:
    """Preconditions; on a resumed operation, find out whether we already asked."""
    server = begin(ctx, resume="wait_verify")
    if not isinstance(server, ServerState):
        return server
    state = ctx.state
    if state.get(StateKey.REQUESTING_AT):
        return _after_crash(ctx, server)
    busy = wait_while_busy(ctx, server, phase="check")
    if busy is not None:
        return busy
    try:
        target = ctx.cloud.flavor(str(ctx.params["flavor"]))
    except NotFound as exc:
        return Finish("refused", exc.message)
    if server.status == "VERIFY_RESIZE":
        return Finish("refused", "another resize is waiting for confirmation")
    if server.vm_state not in ("active", "stopped"):
        return Finish("refused", f"the server is {server.status} (vm_state {server.vm_state})")
    if server.flavor_name in (target.name, target.id):
        return Finish("refused", f"the server already has flavor {target.name}")
    state.update(
        old_flavor=server.flavor_name,
        new_flavor=target.name,
        new_flavor_id=target.id,
        final_status=server.status,
        power_state=server.power_state,
        project_id=server.project_id,
    )
    ctx.record("checked", {**describe(server), "target": target.name})
    refused = take_lock(ctx, server)
    if refused:
        return Finish("refused", refused)
    return Next("request")


def _after_crash(ctx: StepContext, server: ServerState) -> Transition:
    """We were about to ask, or had asked, when the daemon stopped."""
    if server.task_state is not None or server.status == "VERIFY_RESIZE":
        ctx.state[StateKey.REQUESTED] = True
        ctx.record("resumed", {**describe(server), "note": "the resize was already requested"})
        return Next("wait_verify")
    if nova_recorded(ctx, server.id, "resize"):
        ctx.state[StateKey.REQUESTED] = True
        ctx.record("resumed", {"note": "Nova recorded our resize request"})
        return Next("wait_verify")
    return Next("request")


def request(ctx: StepContext) -> Transition:
    state = ctx.state
    raise_quota(ctx, state.get("project_id"))
    try:
        ask_once(ctx, lambda: ctx.cloud.resize(ctx.server_id, state["new_flavor_id"]))
    except QuotaExceeded as exc:
        return Finish("failed", f"quota exceeded: {exc.message}")
    except (Conflict, Rejected) as exc:
        return Finish("refused", f"Nova refused the resize: {exc.message}")
    ctx.record("resize_requested", {"flavor": state["new_flavor"]})
    return WAIT_VERIFY


def wait_verify(ctx: StepContext) -> Transition:
    server = ctx.read_server()
    state = ctx.state
    if server.status == "VERIFY_RESIZE":
        ctx.record("verify_resize", describe(server))
        ctx.snapshot = server  # the gate starts from this very read
        return Next("gate")
    if server.status == "ERROR" or server.vm_state == "error":
        return Finish("failed", f"resize failed: {failure_reason(ctx, server)}")
    if _settled(server):
        if server.flavor_name == state["new_flavor"]:
            ctx.record("confirmed_by_nova", describe(server))
            state["expect"] = "new"
            return Next("verify")
        return Finish("failed", f"resize failed: {failure_reason(ctx, server)}")
    if ctx.overdue:
        return Finish("timed_out", f"no VERIFY_RESIZE in time: {server.status}/{server.task_state}")
    return WAIT_VERIFY


def gate(ctx: StepContext) -> Transition:
    state = ctx.state
    now = ctx.now()
    if "gate_started_at" not in state:
        state["gate_started_at"] = now.isoformat()
        server = ctx.read_server()
        if _settled(server) and server.flavor_name == state["new_flavor"]:
            ctx.record("confirmed_by_nova", describe(server))
            state["expect"] = "new"
            return Next("verify")
        implicit = implicit_checks(server, state)
        problems = problems_of(implicit)
        if problems:
            state["revert_reason"] = "; ".join(problems)
            ctx.record(
                "gate_failed", {"problems": problems, "final": True, "checks": recorded(implicit)}
            )
            return Next("revert")
        state["addresses"] = list(server.addresses)
        state["gate_implicit"] = recorded(implicit)
    target = Target(ctx.server_id, tuple(state.get("addresses", ())))
    checks = policy_checks(ctx, target, ctx.confirm.gate)
    ran = [*state.get("gate_implicit", ()), *recorded(checks)]
    problems = problems_of(checks)
    if not problems:
        ctx.record("gate_passed", {"checks": ran})
        return Next("confirm")
    started = datetime.fromisoformat(state["gate_started_at"])
    gate_over = now >= started + timedelta(seconds=ctx.confirm.gate_timeout_s)
    final = gate_over or ctx.overdue or hopeless(checks)
    ctx.record("gate_failed", {"problems": problems, "final": final, "checks": ran})
    if final:
        state["revert_reason"] = "health gate failed: " + "; ".join(problems)
        if ctx.confirm.on_failure == "keep":
            state["gate_note"] = state["revert_reason"] + " (kept: on_failure is keep)"
            return Next("confirm")
        return Next("revert")
    remaining = (started + timedelta(seconds=ctx.confirm.gate_timeout_s) - now).total_seconds()
    retry = min(GATE_RETRY_S, max(remaining, 0.0))
    return Wait("gate", events=("instance.resize_confirm.end",), retry_after_s=retry, poll=False)


def confirm(ctx: StepContext) -> Transition:
    state = ctx.state
    try:
        ctx.cloud.confirm_resize(ctx.server_id)
    except Conflict as exc:
        server = ctx.cloud.server(ctx.server_id)
        if _settled(server) and server.flavor_name == state["new_flavor"]:
            ctx.record("confirmed_by_nova", {**describe(server), "conflict": exc.message})
            state["expect"] = "new"
            return Next("verify")
        return Finish("failed", f"Nova refused to confirm: {exc.message}")
    state["expect"] = "new"
    ctx.record("confirm_requested", {})
    return WAIT_FINAL


def revert(ctx: StepContext) -> Transition:
    state = ctx.state
    try:
        ctx.cloud.revert_resize(ctx.server_id)
    except Conflict as exc:
        server = ctx.cloud.server(ctx.server_id)
        if _settled(server) and server.flavor_name == state["old_flavor"]:
            state["expect"] = "old"
            return Next("verify")
        if _settled(server) and server.flavor_name == state["new_flavor"]:
            return Finish(
                "failed",
                f"Nova confirmed the resize before it could be reverted "
                f"({state.get('revert_reason')})",
            )
        return Finish("failed", f"Nova refused to revert: {exc.message}")
    state["expect"] = "old"
    ctx.record("revert_requested", {"reason": state.get("revert_reason")})
    return WAIT_FINAL


def verify(ctx: StepContext) -> Transition:
    server = ctx.read_server()
    state = ctx.state
    expected = state["new_flavor"] if state.get("expect") == "new" else state["old_flavor"]
    if _settled(server):
        ctx.record("settled", describe(server))
        if expected is None and server.flavor_name == state["new_flavor"]:
            # a revert whose old flavor is unknown (finish_resize): anything but the new one
            return Finish("failed", f"the flavor is still {server.flavor_name} after the revert")
        if expected is not None and server.flavor_name != expected:
            return Finish("failed", f"the flavor is {server.flavor_name}, expected {expected}")
        if server.status != state.get("final_status", server.status):
            return Finish("failed", f"the server is {server.status}, was {state['final_status']}")
        if state.get("expect") == "new":
            return Finish("confirmed", state.get("gate_note"))
        return Finish("reverted", state.get("revert_reason"))
    if server.status == "ERROR" or server.vm_state == "error":
        return Finish("failed", f"the server went to ERROR: {failure_reason(ctx, server)}")
    if ctx.overdue:
        return Finish("timed_out", f"not settled in time: {server.status}/{server.task_state}")
    return WAIT_FINAL


RESIZE = Machine(
    "resize",
    "check",
    {
        "check": check,
        "request": request,
        "wait_verify": wait_verify,
        "gate": gate,
        "confirm": confirm,
        "revert": revert,
        "verify": verify,
    },
)
