"""The compute API's side of each server action: Nova's checks, its 409s, the first state change.

Each method does what ``nova/compute/api.py`` does before it casts to the
conductor or a compute service: check the lock, the vm_state, the
task_state and whether the server ever launched (in that order, so the
same request gets the same error as from Nova), set the first task state,
record the instance action, and start the flow (:mod:`.flows`) that does
the rest in the background.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Callable, Collection

from nova_autopilot.sandbox import console, errors, flows, states
from nova_autopilot.sandbox.cell import Cell
from nova_autopilot.sandbox.context import RequestContext
from nova_autopilot.sandbox.instance_notifications import API
from nova_autopilot.sandbox.model import InstanceAction, Migration, Server
from nova_autopilot.sandbox.quotas import check_resize
from nova_autopilot.sandbox.scheduler import Flow

_ANY = None
_PASSWORD_CHARS = string.ascii_letters + string.digits


def generate_password(length: int = 12) -> str:
    return "".join(secrets.choice(_PASSWORD_CHARS) for _ in range(length))


def record_action(cell: Cell, server: Server, ctx: RequestContext, name: str) -> InstanceAction:
    """Start an instance action; the server's next notifications carry its request."""
    now = cell.notify.now()
    action = InstanceAction(
        action=name,
        request_id=ctx.request_id,
        user_id=ctx.user_id,
        project_id=ctx.project_id,
        start_time=now,
        updated_at=now,
    )
    server.actions.append(action)
    server.request_id = ctx.request_id
    server.initiator = (ctx.user_id, ctx.project_id)
    return action


def check(
    server: Server,
    ctx: RequestContext,
    action: str,
    *,
    vm_states: Collection[str] | None,
    task_states: Collection[str | None] | None = (None,),
    must_have_launched: bool = True,
) -> None:
    """Nova's ``check_instance_lock`` then ``check_instance_state``."""
    if server.locked and not ctx.is_admin:
        raise errors.locked(server.id)
    if vm_states is not None and server.vm_state not in vm_states:
        raise errors.invalid_state(action, server.id, "vm_state", server.vm_state)
    if task_states is not None and server.task_state not in task_states:
        raise errors.invalid_state(action, server.id, "task_state", server.task_state)
    if must_have_launched and server.launched_at is None:
        raise errors.invalid_state(action, server.id, "launched_at", None)


class ComputeAPI:
    """Nova's compute API for servers that exist (see :mod:`.provision` for creating them)."""

    def __init__(self, *, cell: Cell) -> None:
        self.cell = cell
        self._lock = cell.store.lock

    def server(self, ctx: RequestContext, server_id: str) -> Server:
        server = self.cell.store.server(server_id)
        if not ctx.may_see(server.project_id):
            raise errors.server_not_found(server_id)
        return server

    def _run(self, server: Server, flow: Flow) -> None:
        self.cell.scheduler.spawn(server.id, flow)

    # -- resize ------------------------------------------------------------------------

    def resize(self, ctx: RequestContext, server_id: str, flavor_ref: str) -> None:
        with self._lock:
            server = self.server(ctx, server_id)
            check(server, ctx, "resize", vm_states=(states.ACTIVE, states.STOPPED))
            try:
                new = self.cell.store.flavor(flavor_ref)
            except errors.ApiError as exc:
                raise errors.bad_request(exc.message) from None
            if new.id == server.flavor.id:
                raise errors.bad_request("When resizing, instances must change flavor!")
            if new.disabled:
                raise errors.bad_request(f"Flavor {flavor_ref} could not be found.")
            if new.disk == 0 and server.flavor.disk != 0:
                raise errors.bad_request(
                    "Server disk was unable to be resized because: "
                    "Resize to zero disk flavor is not allowed."
                )
            check_resize(
                server,
                new,
                store=self.cell.store,
                quotas=self.cell.settings.quotas,
                forced=self.cell.plan(server).quota_exceeded,
            )
            server.migration = Migration(
                id=self.cell.store.next_migration_id(),
                old_flavor=server.flavor,
                new_flavor=new,
                old_vm_state=server.vm_state,
            )
            self.cell.notify.save(server, task_state=states.RESIZE_PREP)
            action = record_action(self.cell, server, ctx, "resize")
            self._run(
                server,
                flows.resize(self.cell, server, action, on_finished=self.schedule_auto_confirm),
            )

    def schedule_auto_confirm(self, server: Server) -> None:
        window = self.cell.settings.resize_confirm_window
        if window > 0 and server.migration is not None:
            flow = self._auto_confirm(server, server.migration)
            self.cell.scheduler.spawn(server.id, flow, window)

    def _auto_confirm(self, server: Server, migration: Migration) -> Flow:
        """Nova's ``_poll_unconfirmed_resizes``: confirm a resize nobody confirmed in time."""
        yield 0.0
        if (
            server.migration is not migration
            or migration.status != "finished"
            or server.vm_state != states.RESIZED
            or server.task_state is not None
        ):
            return
        action = self._start_confirm(RequestContext.periodic(), server, migration)
        yield from flows.confirm(self.cell, server, action)

    def confirm_resize(self, ctx: RequestContext, server_id: str) -> None:
        with self._lock:
            server = self.server(ctx, server_id)
            check(server, ctx, "confirmResize", vm_states=(states.RESIZED,))
            migration = server.migration
            if migration is None or migration.status != "finished":
                raise errors.not_resized()
            action = self._start_confirm(ctx, server, migration)
            self._run(server, flows.confirm(self.cell, server, action))

    def _start_confirm(
        self, ctx: RequestContext, server: Server, migration: Migration
    ) -> InstanceAction:
        migration.status = "confirming"
        return record_action(self.cell, server, ctx, "confirmResize")

    def revert_resize(self, ctx: RequestContext, server_id: str) -> None:
        with self._lock:
            server = self.server(ctx, server_id)
            check(server, ctx, "revertResize", vm_states=(states.RESIZED,))
            migration = server.migration
            if migration is None or migration.status != "finished":
                raise errors.not_resized()
            self.cell.notify.save(server, task_state=states.RESIZE_REVERTING)
            migration.status = "reverting"
            action = record_action(self.cell, server, ctx, "revertResize")
            self._run(server, flows.revert(self.cell, server, action))

    # -- rescue ------------------------------------------------------------------------

    def rescue(
        self,
        ctx: RequestContext,
        server_id: str,
        *,
        admin_pass: str | None = None,
        rescue_image_ref: str | None = None,
    ) -> str:
        """Start a rescue; returns the rescue password."""
        with self._lock:
            server = self.server(ctx, server_id)
            check(server, ctx, "rescue", vm_states=(states.ACTIVE, states.STOPPED, states.ERROR))
            if rescue_image_ref is not None and self.cell.store.image(rescue_image_ref) is None:
                raise errors.bad_request(
                    f"Requested rescue image '{rescue_image_ref}' is not supported"
                )
            password = admin_pass if admin_pass is not None else generate_password()
            server.rescue_image_ref = rescue_image_ref
            self.cell.notify.save(server, task_state=states.RESCUING)
            action = record_action(self.cell, server, ctx, "rescue")
            self._run(server, flows.rescue(self.cell, server, action))
            return password

    def unrescue(self, ctx: RequestContext, server_id: str) -> None:
        self._simple(
            ctx, server_id, "unrescue", (states.RESCUED,), states.UNRESCUING, flows.unrescue
        )

    # -- power -------------------------------------------------------------------------

    def stop(self, ctx: RequestContext, server_id: str) -> None:
        self._simple(
            ctx, server_id, "stop", (states.ACTIVE, states.ERROR), states.POWERING_OFF, flows.stop
        )

    def start(self, ctx: RequestContext, server_id: str) -> None:
        self._simple(ctx, server_id, "start", (states.STOPPED,), states.POWERING_ON, flows.start)

    def _simple(
        self,
        ctx: RequestContext,
        server_id: str,
        name: str,
        vm_states: Collection[str],
        task_state: str,
        flow: Callable[[Cell, Server, InstanceAction], Flow],
    ) -> None:
        with self._lock:
            server = self.server(ctx, server_id)
            check(server, ctx, name, vm_states=vm_states)
            self.cell.notify.save(server, task_state=task_state)
            action = record_action(self.cell, server, ctx, name)
            self._run(server, flow(self.cell, server, action))

    def reboot(self, ctx: RequestContext, server_id: str, reboot_type: str) -> None:
        hard = reboot_type.upper() == "HARD"
        with self._lock:
            server = self.server(ctx, server_id)
            if hard:
                check(
                    server,
                    ctx,
                    "reboot",
                    vm_states=states.ALLOW_HARD_REBOOT,
                    task_states=states.ALLOW_REBOOT_TASKS,
                )
            else:
                check(server, ctx, "reboot", vm_states=states.ALLOW_SOFT_REBOOT)
            self.cell.scheduler.cancel(server.id)
            task = states.REBOOTING_HARD if hard else states.REBOOTING
            self.cell.notify.save(server, task_state=task)
            action = record_action(self.cell, server, ctx, "reboot")
            self._run(server, flows.reboot(self.cell, server, action, hard=hard))

    # -- lock, delete, console -----------------------------------------------------------

    def lock(self, ctx: RequestContext, server_id: str, reason: str | None = None) -> None:
        with self._lock:
            server = self.server(ctx, server_id)
            is_owner = server.project_id == ctx.project_id
            if server.locked and is_owner:
                return
            action = record_action(self.cell, server, ctx, "lock")
            action.start_event("api_lock", self.cell.notify.now(), self.cell.notify.host)
            server.locked_by = "owner" if is_owner else "admin"
            if reason:
                server.locked_reason = reason
            self.cell.notify.save(server)
            action.finish_event("api_lock", self.cell.notify.now())
            self.cell.notify.action(server, "lock", "", service=API, bdms=False)

    def unlock(self, ctx: RequestContext, server_id: str) -> None:
        with self._lock:
            server = self.server(ctx, server_id)
            action = record_action(self.cell, server, ctx, "unlock")
            action.start_event("api_unlock", self.cell.notify.now(), self.cell.notify.host)
            server.locked_by = None
            server.locked_reason = None
            self.cell.notify.save(server)
            action.finish_event("api_unlock", self.cell.notify.now())
            self.cell.notify.action(server, "unlock", "", service=API, bdms=False)

    def delete(self, ctx: RequestContext, server_id: str) -> None:
        with self._lock:
            server = self.server(ctx, server_id)
            check(server, ctx, "delete", vm_states=_ANY, task_states=_ANY, must_have_launched=False)
            self.cell.scheduler.cancel(server.id)
            self.cell.notify.save(server, task_state=states.DELETING)
            if not server.on_host:
                server.request_id, server.initiator = ctx.request_id, (ctx.user_id, ctx.project_id)
                flows.local_delete(self.cell, server)
                # Nova records the action once the API has deleted it, with no events.
                record_action(self.cell, server, ctx, "delete")
                return
            action = record_action(self.cell, server, ctx, "delete")
            self._run(server, flows.delete(self.cell, server, action))

    def console_output(self, ctx: RequestContext, server_id: str, length: int | None) -> str:
        with self._lock:
            server = self.server(ctx, server_id)
            if not server.on_host:
                raise errors.conflict(f"Instance {server.id} is not ready")
            return console.tail(console_text(self.cell, server), length)


def console_text(cell: Cell, server: Server) -> str:
    """What the guest's console shows now."""
    host = server.name
    if server.vm_state == states.RESCUED:
        return console.render("rescue", host)
    wanted = cell.plan(server).console
    if wanted is not None:
        return console.render(wanted, host)
    return console.render("panic" if server.guest_failed else "ok", host)
