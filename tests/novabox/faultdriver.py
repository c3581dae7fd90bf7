"""The box's virt driver: Nova's fake driver, with faults injected per server.

Runs inside nova-compute (see :mod:`tests.novabox.bootstrap`, which
registers this module as ``nova.virt.novabox_fault``). What fails for a
server is decided by :class:`tests.novabox.faults.FaultPlan`, read from the
server's name and metadata at the moment of the operation, so a test can
turn a fault on or off on a running server by changing its metadata.

- A failed spawn raises before the guest exists: the server goes to ERROR
  and was never launched (``launched_at`` stays null).
- A failed reboot or power-on marks the guest crashed and raises, so Nova
  puts the server in ERROR; it had launched before, so it can be rescued.
- The console shows a kernel panic after such a failure (or whatever the
  metadata asks for), a rescue boot while rescued, a good boot otherwise.
- A slow resize waits while "moving the disk".
- An error delay slows down Nova's recording of the fault: it asks for the
  fault's message (``format_message``) after putting the server in ERROR and
  before clearing its task, so the server stays in ERROR with its task set.
"""

import threading
import time
from typing import Any

from nova import exception
from nova.compute import power_state
from nova.virt import fake
from oslo_log import log as logging

from tests.novabox import faults

LOG = logging.getLogger(__name__)


class InjectedFault(exception.NovaException):
    msg_fmt = "novabox: injected %(operation)s failure for server %(name)s"

    def __init__(self, *, error_delay: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._error_delay = error_delay

    def format_message(self) -> str:
        delay, self._error_delay = self._error_delay, 0.0
        if delay:
            LOG.info("novabox: recording the fault %.1fs late", delay)
            # A simulated duration, not a wait for something.
            time.sleep(delay)
        return str(super().format_message())


class FaultInjectingDriver(fake.FakeDriver):
    """A fake hypervisor whose guests fail when their server asks for it."""

    def __init__(self, virtapi: Any, read_only: bool = False) -> None:
        super().__init__(virtapi, read_only)
        self._lock = threading.Lock()
        self._failed_boots: set[str] = set()

    def spawn(self, context: Any, instance: Any, *args: Any, **kwargs: Any) -> None:
        self._raise_if_planned("spawn", instance)
        super().spawn(context, instance, *args, **kwargs)

    def reboot(self, context: Any, instance: Any, *args: Any, **kwargs: Any) -> None:
        self._fail_boot_if_planned("reboot", instance)
        super().reboot(context, instance, *args, **kwargs)
        self._forget_failed_boot(instance)

    def power_on(self, context: Any, instance: Any, *args: Any, **kwargs: Any) -> None:
        self._fail_boot_if_planned("power_on", instance)
        super().power_on(context, instance, *args, **kwargs)
        self._forget_failed_boot(instance)

    def rescue(self, context: Any, instance: Any, *args: Any, **kwargs: Any) -> None:
        self._raise_if_planned("rescue", instance)
        super().rescue(context, instance, *args, **kwargs)
        guest = self.instances.get(instance.uuid)
        if guest is not None:
            # The rescue image boots, whatever state the guest was in.
            guest.state = power_state.RUNNING

    def unrescue(self, context: Any, instance: Any) -> None:
        self._raise_if_planned("unrescue", instance)
        super().unrescue(context, instance)
        self._forget_failed_boot(instance)

    def migrate_disk_and_power_off(
        self, context: Any, instance: Any, *args: Any, **kwargs: Any
    ) -> Any:
        plan = self._plan(instance)
        self._raise_if_planned("resize", instance, plan)
        if plan.resize_delay:
            LOG.info("novabox: slow resize, moving the disk for %.1fs", plan.resize_delay)
            # A simulated duration, not a wait for something.
            time.sleep(plan.resize_delay)
        return super().migrate_disk_and_power_off(context, instance, *args, **kwargs)

    def get_console_output(self, context: Any, instance: Any) -> str:
        plan = self._plan(instance)
        hostname = instance.hostname or instance.display_name or "server"
        if instance.vm_state == "rescued":
            kind = "rescue"
        elif self._has_failed_boot(instance):
            kind = plan.console or "panic"
        else:
            kind = plan.console or "ok"
        return faults.console_log(kind, hostname)

    def _plan(self, instance: Any) -> faults.FaultPlan:
        metadata = dict(instance.metadata or {})
        return faults.FaultPlan.for_server(instance.display_name or "", metadata)

    def _raise_if_planned(
        self, operation: str, instance: Any, plan: faults.FaultPlan | None = None
    ) -> None:
        plan = plan or self._plan(instance)
        if plan.fails(operation):
            LOG.warning("novabox: injecting a %s failure", operation, instance=instance)
            raise InjectedFault(
                operation=operation, name=instance.display_name, error_delay=plan.error_delay
            )

    def _fail_boot_if_planned(self, operation: str, instance: Any) -> None:
        if not self._plan(instance).fails(operation):
            return
        guest = self.instances.get(instance.uuid)
        if guest is not None:
            # A guest that is still running after a failed reboot keeps Nova's
            # vm_state; a crashed one sends the server to ERROR.
            guest.state = power_state.CRASHED
        with self._lock:
            self._failed_boots.add(instance.uuid)
        self._raise_if_planned(operation, instance)

    def _forget_failed_boot(self, instance: Any) -> None:
        with self._lock:
            self._failed_boots.discard(instance.uuid)

    def _has_failed_boot(self, instance: Any) -> bool:
        with self._lock:
            return instance.uuid in self._failed_boots
