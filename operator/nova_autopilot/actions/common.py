"""Steps every action shares: finding the server, and saying why Nova failed."""

from __future__ import annotations

from typing import Any

from nova_autopilot.actions.machine import StepContext
from nova_autopilot.cloud import ServerState
from nova_autopilot.errors import CloudError

#: Notifications that carry Nova's reason for a failed operation.
ERROR_EVENTS = (
    "instance.resize.error",
    "instance.resize_prep.error",
    "instance.resize_finish.error",
    "compute_task.migrate_server.error",
    "instance.rescue.error",
    "instance.unrescue.error",
)


def current_server(ctx: StepContext) -> ServerState:
    """Resolve the ``server`` parameter once (id or name), then read it again
    on every later call. Nova's 404 propagates as ``NotFound``."""
    if "server_id" not in ctx.state:
        server = ctx.cloud.find_server(ctx.params["server"])
        ctx.state["server_id"] = server.id
        ctx.state["server_name"] = server.name
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
    event = ctx.woken_by
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
    for action in actions:
        message = action.get("message")
        if message:
            return f"{action.get('action', 'action')}: {message}"
        for event_ in action.get("events") or ():
            if str(event_.get("result", "")).lower() == "error":
                return f"{action.get('action', 'action')}: {event_.get('event')} failed"
    return f"Nova left the server {server.status} (task {server.task_state or 'none'})"
