"""Nova's notifications about its servers: saving one and telling the bus, as Nova's services do.

:meth:`Notify.save` is Nova's ``instance.save()`` with
``notify_on_state_change = vm_and_task_state``: it applies the changes,
stamps ``updated_at`` and emits ``instance.update`` with the old and new
states (Nova emits it on every save, even when the states did not change).
:meth:`Notify.action` emits ``instance.<action>.<phase>``. The publisher id
names the service that sends (``nova-compute:<host>``, ``nova-api:<host>``...).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from nova_autopilot.sandbox import payloads
from nova_autopilot.sandbox.clock import Clock
from nova_autopilot.sandbox.model import Server
from nova_autopilot.sandbox.outbox import Notification, Outbox, stamp

COMPUTE = "nova-compute"
API = "nova-api"
CONDUCTOR = "nova-conductor"
SCHEDULER = "nova-scheduler"

_UNSET: Any = object()


def now_in_seconds(clock: Clock) -> datetime:
    """The clock's time, cut to whole seconds as Nova's database stores it."""
    return clock.now().replace(microsecond=0)


class Notify:
    """Emits Nova's versioned notifications for the sandbox's servers."""

    def __init__(self, *, outbox: Outbox, clock: Clock, host: str) -> None:
        self._outbox = outbox
        self._clock = clock
        self.host = host

    def now(self) -> datetime:
        return now_in_seconds(self._clock)

    def emit(
        self,
        event_type: str,
        payload: dict[str, Any],
        *,
        service: str = COMPUTE,
        error: bool = False,
        server: Server | None = None,
    ) -> None:
        message_id, timestamp = stamp()
        user, project = server.initiator if server is not None else (None, None)
        context = {
            "request_id": server.request_id if server is not None else None,
            "user_id": user,
            "project_id": project,
            "is_admin": True,
            "read_only": False,
            "show_deleted": False,
        }
        self._outbox.emit(
            Notification(
                event_type=event_type,
                priority="ERROR" if error else "INFO",
                publisher_id=f"{service}:{self.host}",
                payload=payload,
                context=context,
                timestamp=timestamp,
                message_id=message_id,
            )
        )

    def save(
        self,
        server: Server,
        *,
        vm_state: str = _UNSET,
        task_state: str | None = _UNSET,
        power_state: int = _UNSET,
        service: str = COMPUTE,
        old_task_state: str | None = _UNSET,
    ) -> None:
        """Change and save ``server``, then emit ``instance.update``.

        ``old_task_state`` overrides what the update reports as the task
        state before the save (Nova sometimes changes it in memory first).
        """
        old_state = server.vm_state
        old_task = server.task_state if old_task_state is _UNSET else old_task_state
        if vm_state is not _UNSET:
            server.vm_state = vm_state
        if task_state is not _UNSET:
            server.task_state = task_state
        if power_state is not _UNSET:
            server.power_state = power_state
        now = self.now()
        server.updated_at = now
        payload = payloads.update_payload(server, now, old_state=old_state, old_task_state=old_task)
        self.emit("instance.update", payload, service=service, server=server)

    def action(
        self,
        server: Server,
        action: str,
        phase: str,
        *,
        payload: dict[str, Any] | None = None,
        service: str = COMPUTE,
        bdms: bool = True,
    ) -> None:
        """``instance.<action>.<phase>`` (``phase`` may be empty: ``instance.lock``)."""
        event_type = f"instance.{action}.{phase}" if phase else f"instance.{action}"
        body = payload if payload is not None else payloads.action_payload(server, bdms=bdms)
        self.emit(event_type, body, service=service, error=phase == "error", server=server)

    def exists(self, server: Server) -> None:
        self.emit("instance.exists", payloads.exists_payload(server, self.now()), server=server)

    def compute_exception(self, server: Server) -> None:
        """``compute.exception``: what Nova's ``wrap_exception`` sends when an operation fails."""
        if server.fault is None:
            return
        self.emit(
            "compute.exception",
            payloads.exception_payload(server.fault),
            error=True,
            server=server,
        )
