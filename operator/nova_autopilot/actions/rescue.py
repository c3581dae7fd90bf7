"""Rescue and unrescue.

Rescue: check (launched once? a task in progress: wait for its end; then a
state Nova accepts?) -> ask Nova with the rescue image and a fresh admin
password -> wait until vm_state is ``rescued`` with no task. While rescuing,
the status can stay ERROR, so the wait looks at ``task_state`` and
``vm_state``, never at the status alone.

Unrescue: check (a task in progress: wait for its end; then in RESCUE?) ->
ask -> wait for ACTIVE with no task.

The admin password travels only in ``ctx.secrets``: to the requester's
result, never to the journal or the logs.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

from nova_autopilot.actions.common import (
    ask_once,
    begin,
    failure_reason,
    take_lock,
    wait_while_busy,
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
from nova_autopilot.errors import Conflict, Rejected

RESCUABLE_STATES = ("active", "stopped", "error")
NEVER_LAUNCHED = "the server was never launched (launched_at is empty): Nova refuses to rescue it"


WAIT_RESCUED = Wait(
    "wait", events=("instance.rescue.end", "instance.rescue.error"), states=("rescued", "error")
)
WAIT_UNRESCUED = Wait("wait", events=("instance.unrescue.end",), states=("active", "error"))


def rescue_check(ctx: StepContext) -> Transition:
    server = begin(ctx, resume="wait", task="rescuing", done="rescued", action="rescue")
    if not isinstance(server, ServerState):
        return server
    if not server.launched:
        return Finish("not_rescuable", NEVER_LAUNCHED)
    busy = wait_while_busy(ctx, server, phase="check")
    if busy is not None:
        return busy
    if server.vm_state == "rescued":
        return Finish("refused", "the server is already in RESCUE")
    if server.vm_state not in RESCUABLE_STATES:
        return Finish("refused", f"the server is {server.status} (vm_state {server.vm_state})")
    ctx.record("checked", describe(server))
    refused = take_lock(ctx, server)
    return Finish("refused", refused) if refused else Next("request")


def rescue_request(ctx: StepContext) -> Transition:
    password = secrets.token_urlsafe(18)
    image = ctx.params.get("image") or ctx.rescue_image
    try:
        ask_once(ctx, lambda: ctx.cloud.rescue(ctx.server_id, admin_pass=password, image=image))
    except Conflict as exc:
        outcome = "not_rescuable" if "launch" in exc.message.lower() else "refused"
        return Finish(outcome, f"Nova refused the rescue: {exc.message}")
    except Rejected as exc:
        return Finish("refused", f"Nova refused the rescue: {exc.message}")
    ctx.secrets["admin_password"] = password
    ctx.record("rescue_requested", {"image": image})
    return WAIT_RESCUED


def _settle(
    ctx: StepContext,
    *,
    what: str,
    reached: Callable[[ServerState], bool],
    outcome: str,
    wait: Wait,
) -> Transition:
    """Wait until Nova's task is over; then it either reached the goal or failed.
    (Nova sets the task as it accepts the request, so no task means it ended.)"""
    server = ctx.read_server()
    if server.task_state is None:
        if reached(server):
            ctx.record(outcome, describe(server))
            return Finish(outcome, None)
        return Finish(
            "failed", f"{wait.events[0].split('.')[1]} failed: {failure_reason(ctx, server)}"
        )
    if ctx.overdue:
        return Finish("timed_out", f"still {server.status}/{server.task_state} at the deadline")
    return wait


def rescue_wait(ctx: StepContext) -> Transition:
    return _settle(
        ctx,
        what="rescue",
        reached=lambda s: s.vm_state == "rescued",
        outcome="rescued",
        wait=WAIT_RESCUED,
    )


def unrescue_check(ctx: StepContext) -> Transition:
    server = begin(ctx, resume="wait", task="unrescuing", done="active", action="unrescue")
    if not isinstance(server, ServerState):
        return server
    busy = wait_while_busy(ctx, server, phase="check")
    if busy is not None:
        return busy
    if server.vm_state != "rescued":
        return Finish("refused", f"the server is not in RESCUE (status {server.status})")
    ctx.record("checked", describe(server))
    refused = take_lock(ctx, server)
    return Finish("refused", refused) if refused else Next("request")


def unrescue_request(ctx: StepContext) -> Transition:
    try:
        ask_once(ctx, lambda: ctx.cloud.unrescue(ctx.server_id))
    except (Conflict, Rejected) as exc:
        return Finish("refused", f"Nova refused the unrescue: {exc.message}")
    ctx.record("unrescue_requested", {})
    return WAIT_UNRESCUED


def unrescue_wait(ctx: StepContext) -> Transition:
    return _settle(
        ctx,
        what="unrescue",
        reached=lambda s: s.status == "ACTIVE",
        outcome="unrescued",
        wait=WAIT_UNRESCUED,
    )


RESCUE = Machine(
    "rescue", "check", {"check": rescue_check, "request": rescue_request, "wait": rescue_wait}
)
UNRESCUE = Machine(
    "unrescue",
    "check",
    {"check": unrescue_check, "request": unrescue_request, "wait": unrescue_wait},
)
