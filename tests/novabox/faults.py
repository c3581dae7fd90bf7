"""Which faults the box's virt driver injects into a server, and how to ask for them.

A server asks for faults through its metadata (set at boot or later) or,
for the common cases, through a prefix of its name. Metadata wins over the
name. This module is pure and imports nothing from Nova: the driver (inside
nova-compute) and the tests (through :mod:`tests.novabox.client`) share it.

Metadata keys:

``novabox:fail``
    Comma-separated operations that fail: ``spawn``, ``reboot``, ``power_on``,
    ``rescue``, ``unrescue``, ``resize``. An empty value means none, whatever
    the name says.
``novabox:console``
    What the console shows: ``ok`` (a good boot), ``panic`` (a kernel panic) or
    ``emergency`` (systemd's emergency shell), also on an ACTIVE server (a
    guest that Nova thinks is fine but nobody can log in to). Without it the
    console shows a kernel panic after a failed reboot or power-on, and a good
    boot otherwise. A rescued server always shows its rescue boot.
``novabox:resize_delay``
    Seconds the resize spends moving the disk (a slow resize).
``novabox:error_delay``
    Seconds Nova takes, after an injected failure, to record the fault: a
    failed reboot's server then stays that long in ERROR with its reboot task
    still set, before Nova clears the task.

Name prefixes: ``fail-spawn-`` (the boot never launches), ``fail-boot-`` (the
server launches, but every later reboot and power-on fails: the rescuable
failed boot), ``slow-resize-`` (resizes take :data:`SLOW_RESIZE_SECONDS`).
"""

import contextlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

FAIL_KEY = "novabox:fail"
CONSOLE_KEY = "novabox:console"
RESIZE_DELAY_KEY = "novabox:resize_delay"
ERROR_DELAY_KEY = "novabox:error_delay"

OPERATIONS = frozenset({"spawn", "reboot", "power_on", "rescue", "unrescue", "resize"})
CONSOLES = ("ok", "panic", "emergency")
SLOW_RESIZE_SECONDS = 5.0


@dataclass(frozen=True)
class FaultPlan:
    """The faults of one server."""

    fail: frozenset[str] = frozenset()
    console: str | None = None
    resize_delay: float = 0.0
    error_delay: float = 0.0

    def fails(self, operation: str) -> bool:
        return operation in self.fail

    def metadata(self) -> dict[str, str]:
        """Server metadata that asks for this plan."""
        items: dict[str, str] = {}
        if self.fail:
            items[FAIL_KEY] = ",".join(sorted(self.fail))
        if self.console is not None:
            items[CONSOLE_KEY] = self.console
        if self.resize_delay:
            items[RESIZE_DELAY_KEY] = f"{self.resize_delay:g}"
        if self.error_delay:
            items[ERROR_DELAY_KEY] = f"{self.error_delay:g}"
        return items

    @classmethod
    def failing(cls, operations: Iterable[str], *, console: str | None = None) -> "FaultPlan":
        wanted = frozenset(operations)
        unknown = wanted - OPERATIONS
        if unknown:
            raise ValueError(f"unknown operations {sorted(unknown)}; known: {sorted(OPERATIONS)}")
        if console is not None and console not in CONSOLES:
            raise ValueError(f"unknown console {console!r}; known: {CONSOLES}")
        return cls(fail=wanted, console=console)

    @classmethod
    def for_server(cls, name: str, metadata: Mapping[str, str]) -> "FaultPlan":
        """The plan of a server, from its name and metadata."""
        plan = _from_name(name)
        fail = plan.fail
        console = plan.console
        resize_delay = plan.resize_delay
        if FAIL_KEY in metadata:
            fail = frozenset(
                part.strip() for part in metadata[FAIL_KEY].split(",") if part.strip() in OPERATIONS
            )
        if metadata.get(CONSOLE_KEY) in CONSOLES:
            console = metadata[CONSOLE_KEY]
        if RESIZE_DELAY_KEY in metadata:
            with contextlib.suppress(ValueError):
                resize_delay = max(0.0, float(metadata[RESIZE_DELAY_KEY]))
        error_delay = plan.error_delay
        if ERROR_DELAY_KEY in metadata:
            with contextlib.suppress(ValueError):
                error_delay = max(0.0, float(metadata[ERROR_DELAY_KEY]))
        return cls(fail=fail, console=console, resize_delay=resize_delay, error_delay=error_delay)


FAILED_SPAWN = FaultPlan.failing({"spawn"})
FAILED_BOOT = FaultPlan.failing({"reboot", "power_on"})

NAME_PREFIXES: dict[str, FaultPlan] = {
    "fail-spawn-": FAILED_SPAWN,
    "fail-boot-": FAILED_BOOT,
    "slow-resize-": FaultPlan(resize_delay=SLOW_RESIZE_SECONDS),
}


def _from_name(name: str) -> FaultPlan:
    for prefix, plan in NAME_PREFIXES.items():
        if name.startswith(prefix):
            return plan
    return FaultPlan()


def console_log(kind: str, hostname: str) -> str:
    """A console log of ``kind``: ok, panic, emergency or rescue."""
    header = (
        "[    0.000000] Linux version 6.1.0-novabox (novabox@build) (gcc 12.2.0) #1 SMP\n"
        "[    0.000000] Command line: BOOT_IMAGE=/vmlinuz root=LABEL=cloudimg-rootfs ro\n"
        "[    0.512345] Run /init as init process\n"
    )
    if kind == "panic":
        return header + (
            '[    1.203040] VFS: Cannot open root device "LABEL=cloudimg-rootfs" or '
            "unknown-block(0,0): error -6\n"
            '[    1.203511] Please append a correct "root=" boot option\n'
            "[    1.204020] Kernel panic - not syncing: VFS: Unable to mount root fs on "
            "unknown-block(0,0)\n"
            "[    1.204530] ---[ end Kernel panic - not syncing: VFS: Unable to mount root fs "
            "on unknown-block(0,0) ]---\n"
        )
    if kind == "emergency":
        return header + (
            "[    2.310000] systemd[1]: Mounting /srv...\n"
            "[    2.420000] mount[311]: mount: /srv: wrong fs type, bad option, bad superblock "
            "on /dev/vdb1.\n"
            "[  OK  ] Reached target Emergency Mode.\n"
            'You are in emergency mode. After logging in, type "journalctl -xb" to view\n'
            'system logs, "systemctl reboot" to reboot, "systemctl default" or "exit"\n'
            "to boot into default mode.\n"
            "Give root password for maintenance\n"
            "(or press Control-D to continue):\n"
        )
    if kind == "rescue":
        return header + (
            "[    2.100000] systemd[1]: Booting the rescue image\n"
            "[  OK  ] Reached target Multi-User System.\n"
            f"{hostname}-rescue login:\n"
        )
    return header + (
        "[    2.100000] EXT4-fs (vda1): mounted filesystem with ordered data mode.\n"
        "[  OK  ] Reached target Multi-User System.\n"
        "[  OK  ] Finished cloud-init final stage.\n"
        f"{hostname} login:\n"
    )
