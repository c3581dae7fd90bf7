"""Every action the runner can carry out, by the name policies use."""

from __future__ import annotations

from nova_autopilot.actions.boot import VERIFY_BOOT
from nova_autopilot.actions.finish import FINISH_RESIZE
from nova_autopilot.actions.machine import Machine
from nova_autopilot.actions.rescue import RESCUE, UNRESCUE
from nova_autopilot.actions.resize import RESIZE

MACHINES: dict[str, Machine] = {
    m.name: m for m in (RESIZE, FINISH_RESIZE, RESCUE, UNRESCUE, VERIFY_BOOT)
}
