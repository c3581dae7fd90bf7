"""Creating servers: booted through the API (the whole build flow), or placed directly by a test.

:func:`boot` is ``POST /servers``: Nova's checks, then the build flow with
its notifications. :func:`place` puts a server straight into a state
(ACTIVE, SHUTOFF, ERROR, RESCUE or VERIFY_RESIZE), launched or not, without
a flow and without notifications: a fixture for tests and the demo.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from nova_autopilot.sandbox import errors, flows, states
from nova_autopilot.sandbox.cell import Cell
from nova_autopilot.sandbox.compute import generate_password, record_action
from nova_autopilot.sandbox.context import RequestContext
from nova_autopilot.sandbox.model import IMAGE_ID, Flavor, Migration, Server, new_uuid
from nova_autopilot.sandbox.quotas import check_boot

_PLACEABLE = {
    "ACTIVE": states.ACTIVE,
    "SHUTOFF": states.STOPPED,
    "ERROR": states.ERROR,
    "RESCUE": states.RESCUED,
    "VERIFY_RESIZE": states.RESIZED,
}


@dataclass(frozen=True)
class BootRequest:
    """What ``POST /servers`` asks for (the part the sandbox understands)."""

    name: str
    flavor_ref: str
    image_ref: str = IMAGE_ID
    metadata: Mapping[str, str] = field(default_factory=dict)
    admin_pass: str | None = None
    description: str | None = None
    key_name: str | None = None


def _new_server(
    cell: Cell, ctx: RequestContext, name: str, flavor: Flavor, image_ref: str
) -> Server:
    image = cell.store.image(image_ref)
    if image is None:
        raise errors.bad_request("Can not find requested image")
    now = cell.notify.now()
    project = ctx.project_id or "admin"
    return Server(
        id=new_uuid(),
        internal_id=cell.store.next_server_id(),
        name=name,
        project_id=project,
        user_id=ctx.user_id or "admin",
        flavor=flavor,
        image=image,
        created_at=now,
        updated_at=now,
        host=cell.settings.host,
        reservation_id="r-" + generate_password(8).lower(),
        request_id=ctx.request_id,
        initiator=(ctx.user_id, ctx.project_id),
    )


def boot(cell: Cell, ctx: RequestContext, request: BootRequest) -> tuple[Server, str]:
    """Create a server and start building it; returns it and its admin password."""
    with cell.store.lock:
        try:
            flavor = cell.store.flavor(request.flavor_ref)
        except errors.ApiError as exc:
            raise errors.bad_request(exc.message) from None
        server = _new_server(cell, ctx, request.name, flavor, request.image_ref)
        check_boot(server.project_id, flavor, store=cell.store, quotas=cell.settings.quotas)
        server.metadata = dict(request.metadata)
        server.description = request.description
        server.key_name = request.key_name
        cell.store.add_server(server)
        action = record_action(cell, server, ctx, "create")
        cell.scheduler.spawn(server.id, flows.build(cell, server, action))
        return server, request.admin_pass or generate_password()


def place(
    cell: Cell,
    *,
    name: str,
    flavor: Flavor,
    state: str = "ACTIVE",
    launched: bool = True,
    old_flavor: Flavor | None = None,
    project_id: str = "admin",
    user_id: str = "admin",
    image_ref: str = IMAGE_ID,
    metadata: Mapping[str, str] | None = None,
) -> Server:
    """A server put straight into ``state`` (a status or a vm_state).

    ``launched=False`` is only meaningful with ERROR: a boot that failed,
    which Nova then refuses to rescue. An ERROR server that did launch is a
    guest that failed to boot afterwards (its console shows a kernel panic).
    VERIFY_RESIZE needs ``old_flavor``, the flavor a revert goes back to.
    """
    vm_state = _PLACEABLE.get(state.upper()) or (state if state in _PLACEABLE.values() else None)
    if vm_state is None:
        raise ValueError(f"cannot place a server in {state!r}; use one of {sorted(_PLACEABLE)}")
    if not launched and vm_state != states.ERROR:
        raise ValueError("only an ERROR server can have never launched")
    if vm_state == states.RESIZED and old_flavor is None:
        raise ValueError("a server in VERIFY_RESIZE needs the old_flavor a revert goes back to")
    ctx = RequestContext(user_id, project_id, user_id == "admin", "")
    with cell.store.lock:
        server = _new_server(cell, ctx, name, flavor, image_ref)
        server.metadata = dict(metadata or {})
        server.vm_state, server.task_state = vm_state, None
        server.availability_zone = "nova"
        server.on_host = launched
        now = cell.notify.now()
        if launched:
            server.launched_at = now
            server.power_state = states.SHUTDOWN if vm_state == states.STOPPED else states.RUNNING
        if vm_state == states.ERROR:
            operation = "reboot" if launched else "spawn"
            server.guest_failed = launched
            server.fault = flows.injected_fault(cell, server, operation)
        if vm_state == states.RESIZED and old_flavor is not None:
            server.migration = Migration(
                id=cell.store.next_migration_id(),
                old_flavor=old_flavor,
                new_flavor=flavor,
                old_vm_state=states.ACTIVE,
                status="finished",
                finished_at=cell.clock.monotonic(),
            )
        action = record_action(cell, server, RequestContext.admin(project_id), "create")
        action.start_event("compute__do_build_and_run_instance", now, cell.notify.host)
        action.finish_event("compute__do_build_and_run_instance", now)
        return cell.store.add_server(server)
