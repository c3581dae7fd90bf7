"""How long each phase of each operation takes in the sandbox.

The defaults are short (tenths of a second), like Nova's fake virt driver
with a message bus in between; :meth:`Durations.scaled` slows everything
down, :meth:`Durations.instant` makes every phase take no time at all.
A phase can also be slowed down for one server (see :mod:`.faults`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace


@dataclass(frozen=True)
class Durations:
    """Seconds per phase. The names are the phases of :mod:`nova_autopilot.sandbox.flows`."""

    schedule: float = 0.05
    """Conductor and scheduler: from the API request to a host (boot and resize)."""
    networking: float = 0.05
    """Build: allocating networks and block devices."""
    spawn: float = 0.1
    """Build: the hypervisor starts the guest."""
    resize_prep: float = 0.05
    resize_migrate: float = 0.1
    """Powering off and moving the disk."""
    resize_finish: float = 0.05
    confirm: float = 0.05
    revert: float = 0.1
    rescue: float = 0.1
    unrescue: float = 0.1
    power_off: float = 0.05
    power_on: float = 0.05
    reboot: float = 0.1
    reboot_error: float = 0.05
    """A failed reboot: from ERROR with the reboot task still set to Nova clearing the task."""
    delete: float = 0.05

    def scaled(self, factor: float) -> Durations:
        """Every phase ``factor`` times as long."""
        if factor < 0:
            raise ValueError("durations cannot be negative")
        return replace(self, **{f.name: getattr(self, f.name) * factor for f in fields(self)})

    @classmethod
    def instant(cls) -> Durations:
        """Every phase takes no time (transient states are then hardly ever seen)."""
        return cls().scaled(0.0)

    @classmethod
    def phases(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    def of(self, phase: str) -> float:
        if phase not in self.phases():
            raise KeyError(f"unknown phase {phase!r}; known: {', '.join(self.phases())}")
        return float(getattr(self, phase))
