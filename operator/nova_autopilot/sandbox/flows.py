"""What Nova's conductor, scheduler and compute services do once the API has answered.

Each flow follows, step by step, the sequence of state changes and
notifications of Nova 34's ``compute/manager.py`` and ``conductor/manager.py``
as a real Nova with the fake virt driver sends them (the conformance test in
``tests/e2e/test_conformance.py`` compares the two). The API part of each
operation (the checks, the first task state, the instance action) is in
:mod:`nova_autopilot.sandbox.compute`.

Every ``yield`` waits for a phase of :class:`~.durations.Durations` (or a
slower one asked for by a fault); the code in between runs under the state lock.
"""

from __future__ import annotations

from collections.abc import Callable

from nova_autopilot.sandbox import payloads, states
from nova_autopilot.sandbox.cell import Cell
from nova_autopilot.sandbox.instance_notifications import API, CONDUCTOR, SCHEDULER
from nova_autopilot.sandbox.model import Fault, Flavor, InstanceAction, Server
from nova_autopilot.sandbox.scheduler import Flow


def injected_fault(cell: Cell, server: Server, operation: str) -> Fault:
    message = f"sandbox: injected {operation} failure for server {server.name}"
    return Fault(
        code=500,
        message=message,
        created=cell.notify.now(),
        details=(
            "Traceback (most recent call last):\n"
            f'  File "nova_autopilot/sandbox/flows.py", in {operation}\n'
            f"nova_autopilot.sandbox.faults.InjectedFault: {message}\n"
        ),
        stack=f'  File "nova_autopilot/sandbox/flows.py", in {operation}\n'
        "    raise InjectedFault(message)\n",
    )


def no_valid_host(cell: Cell, reason: str = "") -> Fault:
    """The scheduler's NoValidHost; with a ``reason``, the one the conductor raises
    again once it has put the server back (only its message and traceback are
    shown, in the instance action's failed events)."""
    message = f"No valid host was found. {reason}"
    return Fault(
        code=500,
        message=message,
        created=cell.notify.now(),
        exception="NoValidHost_Remote",
        module="oslo_messaging._drivers.amqpdriver",
        function="_send",
        details=f"Traceback (most recent call last):\nnova.exception.NoValidHost: {message}\n",
        stack=(
            '  File "nova/conductor/manager.py", in _cold_migrate\n'
            "    raise exception.NoValidHost(reason=msg)\n"
            if reason
            else '  File "nova/conductor/manager.py", in schedule_and_build_instances\n'
            "    raise exception.NoValidHost(reason=reason)\n"
        ),
    )


def _select_destinations(cell: Cell, server: Server, flavor: Flavor, *, boot: bool) -> None:
    spec = payloads.request_spec_payload(server, flavor, security_groups=boot)
    for phase in ("start", "end"):
        cell.notify.emit(
            f"scheduler.select_destinations.{phase}", spec, service=SCHEDULER, server=server
        )


def _record_fault(
    cell: Cell, server: Server, action: InstanceAction, event: str, fault: Fault
) -> None:
    """What ``wrap_instance_fault`` and ``wrap_instance_event`` do: record the fault
    and the failed event of the instance action."""
    server.fault = fault
    action.finish_event(event, cell.notify.now(), failure=fault)


def _fail(cell: Cell, server: Server, action: InstanceAction, event: str, fault: Fault) -> None:
    """Record the fault, then what ``wrap_exception`` does: tell the bus."""
    _record_fault(cell, server, action, event, fault)
    cell.notify.compute_exception(server)


# -- build ---------------------------------------------------------------------------


def build(cell: Cell, server: Server, action: InstanceAction) -> Flow:
    notify = cell.notify
    yield cell.delay(server, "schedule")
    if cell.plan(server).fails("no_valid_host"):
        server.fault = no_valid_host(cell)
        action.start_event("conductor_schedule_and_build_instances", notify.now(), notify.host)
        notify.save(server, vm_state=states.ERROR, task_state=None)
        action.finish_event(
            "conductor_schedule_and_build_instances", notify.now(), failure=server.fault
        )
        notify.emit(
            "compute_task.build_instances.error",
            payloads.compute_task_payload(server, server.flavor, server.fault),
            service=CONDUCTOR,
            error=True,
            server=server,
        )
        return
    _select_destinations(cell, server, server.flavor, boot=True)
    server.availability_zone = "nova"
    notify.save(server, service=CONDUCTOR)
    action.start_event("compute__do_build_and_run_instance", notify.now(), notify.host)
    notify.save(server, task_state=None)
    notify.action(server, "create", "start", payload=payloads.create_payload(server))
    notify.save(server)
    yield cell.delay(server, "networking")
    server.on_host = True
    notify.save(server, task_state=states.NETWORKING)
    notify.save(server, task_state=states.BLOCK_DEVICE_MAPPING)
    notify.save(server, task_state=states.SPAWNING)
    yield cell.delay(server, "spawn")
    if cell.plan(server).fails("spawn"):
        fault = injected_fault(cell, server, "spawn")
        notify.action(server, "shutdown", "start")
        notify.action(server, "shutdown", "end")
        notify.save(server)
        server.on_host = False
        notify.action(
            server, "create", "error", payload=payloads.create_payload(server, fault=fault)
        )
        notify.save(server)
        server.fault = fault
        notify.save(server, vm_state=states.ERROR, task_state=None)
        # _do_build_and_run_instance handles the failure itself: its event succeeds.
        action.finish_event("compute__do_build_and_run_instance", notify.now())
        return
    server.launched_at = notify.now()
    notify.save(server, vm_state=states.ACTIVE, task_state=None, power_state=states.RUNNING)
    notify.action(server, "create", "end", payload=payloads.create_payload(server))
    action.finish_event("compute__do_build_and_run_instance", notify.now())


# -- resize, confirm, revert ---------------------------------------------------------


def resize(
    cell: Cell,
    server: Server,
    action: InstanceAction,
    *,
    on_finished: Callable[[Server], None] | None = None,
) -> Flow:
    notify = cell.notify
    migration = server.migration
    assert migration is not None
    new_flavor = migration.new_flavor
    yield cell.delay(server, "schedule")
    action.start_event("conductor_migrate_server", notify.now(), notify.host)
    action.start_event("cold_migrate", notify.now(), notify.host)
    if cell.plan(server).fails("no_valid_host"):
        fault = no_valid_host(cell)
        server.fault = fault
        migration.status = "error"
        server.migration = None
        notify.save(server, task_state=None)
        again = no_valid_host(cell, "No valid host found for resize")
        for event in ("cold_migrate", "conductor_migrate_server"):
            action.finish_event(event, notify.now(), failure=again)
        notify.emit(
            "compute_task.migrate_server.error",
            payloads.compute_task_payload(server, new_flavor, fault),
            service=CONDUCTOR,
            error=True,
            server=server,
        )
        notify.save(server)
        return
    _select_destinations(cell, server, new_flavor, boot=False)
    for event in ("cold_migrate", "conductor_migrate_server"):
        action.finish_event(event, notify.now())
    action.start_event("compute_prep_resize", notify.now(), notify.host)
    yield cell.delay(server, "resize_prep")
    notify.exists(server)
    notify.action(
        server, "resize_prep", "start", payload=payloads.resize_prep_payload(server, new_flavor)
    )
    notify.save(server)
    notify.action(
        server, "resize_prep", "end", payload=payloads.resize_prep_payload(server, new_flavor)
    )
    action.finish_event("compute_prep_resize", notify.now())
    action.start_event("compute_resize_instance", notify.now(), notify.host)
    migration.status = "migrating"
    notify.save(server, task_state=states.RESIZE_MIGRATING)
    notify.action(server, "resize", "start")
    yield cell.delay(server, "resize_migrate")
    if cell.plan(server).fails("resize"):
        migration.status = "error"
        server.migration = None
        notify.save(server, vm_state=states.ERROR)
        notify.save(server, task_state=None)
        _fail(
            cell, server, action, "compute_resize_instance", injected_fault(cell, server, "resize")
        )
        return
    migration.status = "post-migrating"
    notify.save(server, task_state=states.RESIZE_MIGRATED)
    notify.action(server, "resize", "end")
    action.finish_event("compute_resize_instance", notify.now())
    yield cell.delay(server, "resize_finish")
    action.start_event("compute_finish_resize", notify.now(), notify.host)
    notify.save(server, task_state=states.RESIZE_FINISH)
    notify.action(server, "resize_finish", "start")
    server.flavor = new_flavor
    yield cell.delay(server, "resize_finish")
    migration.status = "finished"
    migration.finished_at = cell.clock.monotonic()
    server.launched_at = notify.now()
    notify.save(server, vm_state=states.RESIZED, task_state=None)
    notify.action(server, "resize_finish", "end")
    action.finish_event("compute_finish_resize", notify.now())
    if on_finished is not None:
        on_finished(server)


def confirm(cell: Cell, server: Server, action: InstanceAction) -> Flow:
    notify = cell.notify
    migration = server.migration
    assert migration is not None
    yield cell.delay(server, "confirm")
    action.start_event("compute_confirm_resize", notify.now(), notify.host)
    notify.action(server, "resize_confirm", "start")
    migration.status = "confirmed"
    server.migration = None
    notify.save(server, vm_state=migration.old_vm_state, task_state=None)
    notify.action(server, "resize_confirm", "end")
    notify.save(server)
    action.finish_event("compute_confirm_resize", notify.now())


def revert(cell: Cell, server: Server, action: InstanceAction) -> Flow:
    notify = cell.notify
    migration = server.migration
    assert migration is not None
    yield cell.delay(server, "revert") / 2
    action.start_event("compute_revert_resize", notify.now(), notify.host)
    notify.exists(server)
    notify.action(server, "resize_revert", "start")
    notify.save(server)
    action.finish_event("compute_revert_resize", notify.now())
    yield cell.delay(server, "revert") / 2
    action.start_event("compute_finish_revert_resize", notify.now(), notify.host)
    server.flavor = migration.old_flavor
    server.launched_at = notify.now()
    migration.status = "reverted"
    server.migration = None
    notify.save(server)
    if migration.old_vm_state == states.STOPPED:
        # Nova powers the old guest off again through its stop_instance (an event of its own).
        notify.save(server, task_state=states.POWERING_OFF)
        action.start_event("compute_stop_instance", notify.now(), notify.host)
        notify.action(server, "power_off", "start", bdms=False)
        yield cell.delay(server, "power_off")
        notify.save(server, vm_state=states.STOPPED, task_state=None, power_state=states.SHUTDOWN)
        notify.action(server, "power_off", "end", bdms=False)
        action.finish_event("compute_stop_instance", notify.now())
    else:
        notify.save(server, vm_state=states.ACTIVE, task_state=None)
    notify.action(server, "resize_revert", "end")
    notify.save(server)
    action.finish_event("compute_finish_revert_resize", notify.now())


# -- rescue, unrescue ----------------------------------------------------------------


def rescue(cell: Cell, server: Server, action: InstanceAction) -> Flow:
    notify = cell.notify
    yield cell.delay(server, "rescue") / 2
    action.start_event("compute_rescue_instance", notify.now(), notify.host)
    notify.action(server, "rescue", "start", payload=payloads.rescue_payload(server))
    yield cell.delay(server, "rescue") / 2
    if cell.plan(server).fails("rescue"):
        notify.save(server, vm_state=states.ERROR)
        notify.save(server, task_state=None)
        _fail(
            cell, server, action, "compute_rescue_instance", injected_fault(cell, server, "rescue")
        )
        return
    notify.exists(server)
    server.launched_at = notify.now()
    notify.save(server, vm_state=states.RESCUED, task_state=None, power_state=states.RUNNING)
    notify.action(server, "rescue", "end", payload=payloads.rescue_payload(server))
    action.finish_event("compute_rescue_instance", notify.now())


def unrescue(cell: Cell, server: Server, action: InstanceAction) -> Flow:
    notify = cell.notify
    yield cell.delay(server, "unrescue")
    action.start_event("compute_unrescue_instance", notify.now(), notify.host)
    notify.action(server, "unrescue", "start", bdms=False)
    if cell.plan(server).fails("unrescue"):
        notify.save(server, task_state=None)
        fault = injected_fault(cell, server, "unrescue")
        _fail(cell, server, action, "compute_unrescue_instance", fault)
        return
    server.guest_failed = False
    server.rescue_image_ref = None
    notify.save(server, vm_state=states.ACTIVE, task_state=None, power_state=states.RUNNING)
    notify.action(server, "unrescue", "end", bdms=False)
    action.finish_event("compute_unrescue_instance", notify.now())


# -- power -----------------------------------------------------------------------------


def stop(cell: Cell, server: Server, action: InstanceAction) -> Flow:
    notify = cell.notify
    yield cell.delay(server, "power_off")
    action.start_event("compute_stop_instance", notify.now(), notify.host)
    notify.action(server, "power_off", "start", bdms=False)
    notify.save(server, vm_state=states.STOPPED, task_state=None, power_state=states.SHUTDOWN)
    notify.action(server, "power_off", "end", bdms=False)
    action.finish_event("compute_stop_instance", notify.now())


def start(cell: Cell, server: Server, action: InstanceAction) -> Flow:
    notify = cell.notify
    yield cell.delay(server, "power_on")
    action.start_event("compute_start_instance", notify.now(), notify.host)
    notify.action(server, "power_on", "start", bdms=False)
    if cell.plan(server).fails("power_on"):
        # reverts_task_state: the server stays SHUTOFF, with a fault.
        server.guest_failed = True
        notify.save(server, task_state=None)
        fault = injected_fault(cell, server, "power_on")
        _fail(cell, server, action, "compute_start_instance", fault)
        return
    server.guest_failed = False
    notify.save(server, vm_state=states.ACTIVE, task_state=None, power_state=states.RUNNING)
    notify.action(server, "power_on", "end", bdms=False)
    action.finish_event("compute_start_instance", notify.now())


def reboot(cell: Cell, server: Server, action: InstanceAction, *, hard: bool) -> Flow:
    notify = cell.notify
    yield cell.delay(server, "reboot") / 2
    action.start_event("compute_reboot_instance", notify.now(), notify.host)
    requested = server.task_state
    server.task_state = states.REBOOT_PENDING_HARD if hard else states.REBOOT_PENDING
    notify.action(server, "reboot", "start", bdms=False)
    notify.save(server, old_task_state=requested)
    notify.save(server, task_state=states.REBOOT_STARTED_HARD if hard else states.REBOOT_STARTED)
    yield cell.delay(server, "reboot") / 2
    if cell.plan(server).fails("reboot"):
        # The guest crashed: Nova puts the server in ERROR; it had launched, so it is
        # rescuable. The reboot task is still set: Nova's decorators record the fault
        # and the failed event first, and only then clear it (reverts_task_state),
        # with a second instance.update; wrap_exception tells the bus last.
        server.guest_failed = True
        notify.save(server, vm_state=states.ERROR)
        yield cell.delay(server, "reboot_error")
        fault = injected_fault(cell, server, "reboot")
        _record_fault(cell, server, action, "compute_reboot_instance", fault)
        notify.save(server, task_state=None)
        notify.compute_exception(server)
        return
    server.guest_failed = False
    vm_state = states.RESCUED if server.vm_state == states.RESCUED else states.ACTIVE
    notify.save(server, vm_state=vm_state, task_state=None, power_state=states.RUNNING)
    notify.action(server, "reboot", "end", bdms=False)
    action.finish_event("compute_reboot_instance", notify.now())


# -- delete ----------------------------------------------------------------------------


def delete(cell: Cell, server: Server, action: InstanceAction) -> Flow:
    notify = cell.notify
    yield cell.delay(server, "delete") / 2
    action.start_event("compute_terminate_instance", notify.now(), notify.host)
    notify.action(server, "delete", "start", bdms=False)
    notify.action(server, "shutdown", "start", bdms=False)
    notify.action(server, "shutdown", "end", bdms=False)
    mark_deleted(cell, server)
    action.finish_event("compute_terminate_instance", notify.now())
    yield cell.delay(server, "delete") / 2
    destroy(server)
    notify.action(server, "delete", "end", bdms=False)


def mark_deleted(cell: Cell, server: Server) -> None:
    now = cell.notify.now()
    server.terminated_at = now
    server.deleted_at = now
    server.migration = None
    cell.notify.save(server, vm_state=states.DELETED, task_state=None, power_state=states.NOSTATE)


def destroy(server: Server) -> None:
    """Soft-delete the server's row; its faults go with it."""
    server.destroyed = True
    server.fault = None


def local_delete(cell: Cell, server: Server) -> None:
    """A server that never reached a host is deleted by the API itself."""
    server.availability_zone = None
    cell.notify.action(server, "delete", "start", service=API, bdms=False)
    mark_deleted(cell, server)
    destroy(server)
    cell.notify.action(server, "delete", "end", service=API, bdms=False)
