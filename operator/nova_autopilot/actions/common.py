"""Steps every action shares: finding the server, asking Nova once for a write
(crash-safe), waiting while Nova is busy with the server, and saying why Nova
failed."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from nova_autopilot.actions.machine import Finish, Next, StepContext, Transition, Wait, describe
from nova_autopilot.cloud import ServerState
from nova_autopilot.errors import CloudError, NotFound
from nova_autopilot.journal import StateKey

#: Notifications that carry Nova's reason for a failed operation.
ERROR_EVENTS = (
    "instance.resize.error",
    "instance.resize_prep.error",
    "instance.resize_finish.error",
    "compute_task.migrate_server.error",
    "instance.rescue.error",
    "instance.unrescue.error",
)


def begin(
    ctx: StepContext,
    *,
    resume: str,
    task: str | None = None,
    done: str | None = None,
    action: str | None = None,
) -> ServerState | Transition:
    """The start of every action: find the server (a missing one fails the
    operation). On an operation whose request may have reached Nova (it recorded
    so; or it was about to ask, or asking, when it stopped or lost Nova's answer)
    find out whether it did: the server shows ``task`` in progress or ``done``
    vm_state, or Nova lists our ``action`` among the server's instance actions (a
    request Nova took and that already failed leaves no task behind). If so, go
    straight to the ``resume`` phase."""
    try:
        server = current_server(ctx)
    except NotFound:
        return Finish("failed", "the server does not exist")
    if ctx.state.get(StateKey.REQUESTED):
        return Next(resume)
    if task is None or not ctx.state.get(StateKey.REQUESTING_AT):
        return server
    reached = server.task_state == task or server.vm_state == done
    if reached or (action is not None and nova_recorded(ctx, server.id, action)):
        ctx.state[StateKey.REQUESTED] = True
        ctx.record("resumed", {**describe(server), "note": "the request had reached Nova"})
        return Next(resume)
    return server


def nova_recorded(ctx: StepContext, server_id: str, action: str) -> bool:
    """Whether Nova lists an instance action ``action`` of the server that began when
    this operation set out to ask for it, or after (5 s of leeway between Nova's
    clock and ours): the request reached Nova, whatever became of it."""
    since = datetime.fromisoformat(ctx.state[StateKey.REQUESTING_AT]) - timedelta(seconds=5)
    for found in ctx.cloud.actions(server_id):
        started = str(found.get("start_time") or "")
        if found.get("action") == action and started and _at_or_after(started, since):
            return True
    return False


def _at_or_after(stamp: str, since: datetime) -> bool:
    """Whether Nova's time ``stamp`` (ISO 8601, UTC when it says no zone) is at or
    after ``since``."""
    moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=since.tzinfo)
    return moment >= since


def ask_once(ctx: StepContext, call: Callable[[], object]) -> None:
    """Ask Nova for a write so that a crash can never send it twice unseen: the
    moment we are about to ask is recorded and checkpointed to the journal first,
    then ``call`` asks, then the request is marked taken. A daemon that stops in
    between leaves ``requesting_at`` without ``requested``
    (:attr:`Operation.asking <nova_autopilot.journal.Operation.asking>`): on
    resume the action's first phase finds out from Nova whether the request
    arrived (:func:`begin`) before it asks again. Nova's refusal (an exception of
    ``call``) propagates, with nothing marked taken; so does a temporary failure
    (Nova out of reach, its answer lost), after which the runner retries from the
    first phase too (:func:`asking`)."""
    ctx.state[StateKey.REQUESTING_AT] = ctx.now().isoformat()
    ctx.checkpoint()
    call()
    ctx.state[StateKey.REQUESTED] = True


def asking(state: dict[str, Any]) -> bool:
    """Whether the operation set out to ask Nova for its write (:func:`ask_once`) and
    has no answer saying Nova took it: the request may or may not have arrived."""
    return bool(state.get(StateKey.REQUESTING_AT)) and not state.get(StateKey.REQUESTED)


#: Every vm_state Nova knows: once the task ends, any of them is news.
VM_STATES = (
    "active",
    "building",
    "paused",
    "suspended",
    "stopped",
    "rescued",
    "resized",
    "soft-delete",
    "deleted",
    "error",
    "shelved",
    "shelved_offloaded",
)


def wait_while_busy(ctx: StepContext, server: ServerState, *, phase: str) -> Transition | None:
    """Nova refuses an operation while a task is in progress on the server (a
    failed reboot, say, reports ERROR before it clears its task). Then wait,
    without any Nova call, for the task to end: the server's ``instance.update``
    without a task, or the batched poll, wakes ``phase`` again, which reads the
    server and decides afresh. ``confirm.task_timeout`` bounds the wait (and
    the operation's deadline does); past it, the operation is refused.
    ``None``: no task is in progress, go on."""
    busy = ctx.state.get("task_wait")
    if server.task_state is None:
        if busy is not None and not busy.get("ended"):
            busy["ended"] = True
            ctx.record("task_ended", describe(server))
        return None
    now = ctx.now()
    if busy is None:
        until = min(now + timedelta(seconds=ctx.confirm.task_timeout_s), ctx.deadline)
        busy = {"task": server.task_state, "since": now.isoformat(), "until": until.isoformat()}
        ctx.state["task_wait"] = busy
        ctx.record(
            "waiting_for_task",
            {**describe(server), "wait_s": round((until - now).total_seconds(), 3)},
        )
    until = datetime.fromisoformat(busy["until"])
    if now >= until:
        waited = (now - datetime.fromisoformat(busy["since"])).total_seconds()
        ctx.record("task_still_running", describe(server))
        return Finish(
            "refused", f"task {server.task_state} is still in progress after {waited:.0f}s"
        )
    return Wait(
        phase,
        events=("instance.delete.end",),
        states=VM_STATES,
        retry_after_s=(until - now).total_seconds(),
    )


def current_server(ctx: StepContext) -> ServerState:
    """Resolve the ``server`` parameter once (id or name), then read it again
    on every later call. Nova's 404 propagates as ``NotFound``."""
    if StateKey.SERVER_ID not in ctx.state:
        server = ctx.cloud.find_server(ctx.params["server"])
        ctx.state[StateKey.SERVER_ID] = server.id
        ctx.state[StateKey.SERVER_NAME] = server.name
        # Where it runs, for the guards' budgets per host and zone (docs/guards.md).
        ctx.state["host"] = server.host
        ctx.state["availability_zone"] = server.availability_zone
        return server
    return ctx.read_server()


def _event_reason(payload: dict[str, Any]) -> str | None:
    for key in ("fault", "reason"):
        fault = payload.get(key)
        if isinstance(fault, dict):
            message = fault.get("exception_message") or fault.get("exception")
            if message:
                return str(message)
    return None


def failure_reason(ctx: StepContext, server: ServerState) -> str:
    """Nova's own reason: from the error notification that woke us, the
    server's fault, or (one extra request, only on failure) its instance actions."""
    candidates = [ctx.woken_by, *reversed(ctx.recent())]
    for event in candidates:
        if event is not None and event.event_type in ERROR_EVENTS:
            reason = _event_reason(dict(event.payload))
            if reason:
                return reason
    if server.fault:
        return server.fault
    try:
        actions = ctx.cloud.actions(server.id)
    except CloudError:
        actions = []
    for action in actions[:1]:  # the newest: the one that failed
        for event_ in action.get("events") or ():
            if str(event_.get("result", "")).lower() == "error":
                detail = (
                    _text(event_.get("details"))  # the fault's message (microversion 2.84)
                    or _last_line(event_.get("traceback"))
                    or f"{event_.get('event')} failed"
                )
                return f"{action.get('action', 'action')}: {detail}"
        if action.get("message"):
            return f"{action.get('action', 'action')}: {action['message']}"
    return f"Nova left the server {server.status} (task {server.task_state or 'none'})"


def _text(value: Any) -> str | None:
    return (value.strip() or None) if isinstance(value, str) else None


def _last_line(traceback: Any) -> str | None:
    """The last line of a traceback Nova recorded (older microversions have no
    ``details``; Nova's tracebacks hold frames only, so it is the raising line)."""
    if not isinstance(traceback, str):
        return None
    lines = [line.strip() for line in traceback.strip().splitlines() if line.strip()]
    return lines[-1] if lines else None


def _wanted(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() in ("true", "yes", "1"))


def take_lock(ctx: StepContext, server: ServerState) -> str | None:
    """Hold Nova's server lock for the whole operation when the policy asks
    (``lock: true``), so nobody changes the server halfway. Returns why the
    operation cannot go on, or None."""
    if not _wanted(ctx.params.get("lock")) or ctx.state.get("locked"):
        return None
    if server.locked:
        return "the server is locked by someone else"
    ctx.state["locked"] = True
    ctx.checkpoint()  # a lock taken is always released, even after a crash
    ctx.cloud.lock(server.id, reason=f"nova-autopilot operation {ctx.operation_id}")
    ctx.record("locked", {})
    return None


def release_lock(ctx: StepContext) -> None:
    """Give the lock back at the end, whatever the outcome."""
    if not ctx.state.get("locked"):
        return
    try:
        ctx.cloud.unlock(ctx.server_id)
    except CloudError as exc:
        ctx.record("unlock_failed", {"error": exc.message})
        return
    ctx.state["locked"] = False
    ctx.record("unlocked", {})


def raise_quota(ctx: StepContext, project_id: str | None) -> None:
    """Raise the project's cores and RAM quota by what the new flavor needs
    beyond the old one (``raise_quota: true``), once: after a crash the raise
    is never repeated."""
    if not _wanted(ctx.params.get("raise_quota")) or "quota_raised" in ctx.state:
        return
    if project_id is None:
        ctx.state["quota_raised"] = {}
        ctx.record("quota_unchanged", {"why": "the server's project is unknown"})
        return
    old = ctx.cloud.flavor(str(ctx.state["old_flavor"]))
    new = ctx.cloud.flavor(str(ctx.state["new_flavor"]))
    cores = max(0, (new.vcpus or 0) - (old.vcpus or 0))
    ram = max(0, (new.ram or 0) - (old.ram or 0))
    quota = ctx.cloud.compute_quota(project_id)
    change = {
        "cores": quota["cores"] if quota["cores"] < 0 else quota["cores"] + cores,
        "ram": quota["ram"] if quota["ram"] < 0 else quota["ram"] + ram,
    }
    ctx.state["quota_raised"] = {"project_id": project_id, "before": quota, "after": change}
    ctx.checkpoint()
    if change != quota:
        ctx.cloud.set_compute_quota(project_id, cores=change["cores"], ram=change["ram"])
    ctx.record("quota_raised", ctx.state["quota_raised"])
