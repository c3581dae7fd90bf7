"""What the compute API and the flows share: one Nova cell's records, clock, faults and bus."""

from __future__ import annotations

from dataclasses import dataclass, field

from nova_autopilot.sandbox.clock import Clock
from nova_autopilot.sandbox.durations import Durations
from nova_autopilot.sandbox.faults import FaultBook, ServerFaults
from nova_autopilot.sandbox.instance_notifications import Notify
from nova_autopilot.sandbox.model import Server
from nova_autopilot.sandbox.quotas import Quotas
from nova_autopilot.sandbox.scheduler import Scheduler
from nova_autopilot.sandbox.store import Store


@dataclass(frozen=True)
class Settings:
    """The Nova configuration options the sandbox honours."""

    host: str = "sandbox"
    """``[DEFAULT] host`` of the one compute service (publisher ids, ``OS-EXT-SRV-ATTR:host``)."""
    resize_confirm_window: float = 0.0
    """Seconds after which Nova confirms a resize by itself; 0 never does."""
    max_limit: int = 1000
    """``[api] max_limit``: the most items one list returns."""
    enable_instance_password: bool = True
    """``[api] enable_instance_password``: rescue and boot answer with ``adminPass``."""
    quotas: Quotas = field(default_factory=Quotas)
    """Every project's limits (unlimited by default)."""


@dataclass(frozen=True)
class Cell:
    store: Store
    notify: Notify
    faults: FaultBook
    durations: Durations
    clock: Clock
    scheduler: Scheduler
    settings: Settings

    def plan(self, server: Server) -> ServerFaults:
        """The faults in force for ``server`` now."""
        return self.faults.plan(server.id, server.name)

    def delay(self, server: Server, phase: str) -> float:
        """How long ``phase`` takes for ``server``."""
        return self.faults.delay(server.id, server.name, phase, self.durations)
