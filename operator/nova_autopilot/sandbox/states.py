"""Nova's states: vm_state, task_state, power_state, and the status the API derives from them.

The values and the status table are Nova's (``nova/compute/vm_states.py``,
``task_states.py``, ``power_state.py`` and ``api/openstack/common.py``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

# vm_state
ACTIVE: Final = "active"
BUILDING: Final = "building"
STOPPED: Final = "stopped"
RESIZED: Final = "resized"
RESCUED: Final = "rescued"
ERROR: Final = "error"
DELETED: Final = "deleted"

# task_state
SCHEDULING: Final = "scheduling"
NETWORKING: Final = "networking"
BLOCK_DEVICE_MAPPING: Final = "block_device_mapping"
SPAWNING: Final = "spawning"
RESIZE_PREP: Final = "resize_prep"
RESIZE_MIGRATING: Final = "resize_migrating"
RESIZE_MIGRATED: Final = "resize_migrated"
RESIZE_FINISH: Final = "resize_finish"
RESIZE_REVERTING: Final = "resize_reverting"
RESCUING: Final = "rescuing"
UNRESCUING: Final = "unrescuing"
POWERING_OFF: Final = "powering-off"
POWERING_ON: Final = "powering-on"
REBOOTING: Final = "rebooting"
REBOOT_PENDING: Final = "reboot_pending"
REBOOT_STARTED: Final = "reboot_started"
REBOOTING_HARD: Final = "rebooting_hard"
REBOOT_PENDING_HARD: Final = "reboot_pending_hard"
REBOOT_STARTED_HARD: Final = "reboot_started_hard"
DELETING: Final = "deleting"

# power_state (integers in the API, names in notification payloads)
NOSTATE: Final = 0
RUNNING: Final = 1
PAUSED: Final = 3
SHUTDOWN: Final = 4
CRASHED: Final = 6
SUSPENDED: Final = 7

POWER_STATE_NAMES: Final[dict[int, str]] = {
    NOSTATE: "pending",
    RUNNING: "running",
    PAUSED: "paused",
    SHUTDOWN: "shutdown",
    CRASHED: "crashed",
    SUSPENDED: "suspended",
}

# Where Nova allows a soft or a hard reboot, and which task states a hard reboot may interrupt.
ALLOW_SOFT_REBOOT: Final = frozenset({ACTIVE})
ALLOW_HARD_REBOOT: Final = frozenset({ACTIVE, STOPPED, "paused", "suspended", ERROR})
ALLOW_REBOOT_TASKS: Final = frozenset(
    {
        None,
        REBOOTING,
        REBOOT_PENDING,
        REBOOT_STARTED,
        "resuming",
        REBOOTING_HARD,
        "unpausing",
        "pausing",
        "suspending",
    }
)

_DEFAULT = "default"
_RESIZE_TASKS = {
    RESIZE_PREP: "RESIZE",
    RESIZE_MIGRATING: "RESIZE",
    RESIZE_MIGRATED: "RESIZE",
    RESIZE_FINISH: "RESIZE",
}
_REBUILD_TASKS = {
    "rebuilding": "REBUILD",
    "rebuild_block_device_mapping": "REBUILD",
    "rebuild_spawning": "REBUILD",
}

#: vm_state -> {task_state or "default" -> status}, as in nova/api/openstack/common.py.
STATUS_MAP: Final[dict[str, dict[str, str]]] = {
    ACTIVE: {
        _DEFAULT: "ACTIVE",
        REBOOTING: "REBOOT",
        REBOOT_PENDING: "REBOOT",
        REBOOT_STARTED: "REBOOT",
        REBOOTING_HARD: "HARD_REBOOT",
        REBOOT_PENDING_HARD: "HARD_REBOOT",
        REBOOT_STARTED_HARD: "HARD_REBOOT",
        "updating_password": "PASSWORD",
        "migrating": "MIGRATING",
        **_REBUILD_TASKS,
        **_RESIZE_TASKS,
    },
    BUILDING: {_DEFAULT: "BUILD"},
    STOPPED: {_DEFAULT: "SHUTOFF", **_RESIZE_TASKS, **_REBUILD_TASKS},
    RESIZED: {_DEFAULT: "VERIFY_RESIZE", RESIZE_REVERTING: "REVERT_RESIZE"},
    "paused": {_DEFAULT: "PAUSED", "migrating": "MIGRATING"},
    "suspended": {_DEFAULT: "SUSPENDED"},
    RESCUED: {_DEFAULT: "RESCUE"},
    ERROR: {_DEFAULT: "ERROR", **_REBUILD_TASKS},
    DELETED: {_DEFAULT: "DELETED"},
    "soft-delete": {_DEFAULT: "SOFT_DELETED"},
    "shelved": {_DEFAULT: "SHELVED"},
    "shelved_offloaded": {_DEFAULT: "SHELVED_OFFLOADED"},
}


def status_from_state(vm_state: str, task_state: str | None) -> str:
    """The API's ``status`` for a vm_state and task_state (``UNKNOWN`` if Nova has none)."""
    task_map = STATUS_MAP.get(vm_state)
    if task_map is None:
        return "UNKNOWN"
    return task_map.get(task_state or _DEFAULT, task_map[_DEFAULT])


def states_for_statuses(statuses: Iterable[str]) -> tuple[set[str], set[str | None]]:
    """The vm_states and task_states behind the given statuses (case-insensitive).

    The task set holds ``None`` for "any task state" (Nova's ``default``): a
    filter by status then filters on vm_state alone.
    """
    wanted = {status.lower() for status in statuses}
    vm_states: set[str] = set()
    task_states: set[str | None] = set()
    for vm_state, task_map in STATUS_MAP.items():
        for task_state, status in task_map.items():
            if status.lower() in wanted:
                vm_states.add(vm_state)
                task_states.add(None if task_state == _DEFAULT else task_state)
    return vm_states, task_states
