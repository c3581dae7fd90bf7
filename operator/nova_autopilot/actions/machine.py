"""What every action's state machine is made of.

An action is a set of named phases. The runner calls one phase at a time
with a :class:`StepContext`; the phase reads Nova's real state, acts
idempotently and returns a transition:

* :class:`Next` - run another phase now;
* :class:`Wait` - park until the server's own notification (or the batched
  poll) shows a change, a retry delay passes, or the deadline comes; then run
  the named phase again;
* :class:`Finish` - the operation ends with exactly one outcome.

Phases keep what they must remember in ``ctx.state`` (persisted by the
runner after every phase), so a restarted daemon resumes any operation from
its current phase by reading the server again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from nova_autopilot.cloud import FlavorInfo, ServerState
from nova_autopilot.events import Event
from nova_autopilot.journal import OUTCOMES, StateKey
from nova_autopilot.policies.model import Confirm


@dataclass(frozen=True, slots=True)
class Next:
    phase: str


@dataclass(frozen=True, slots=True)
class Wait:
    """Park, then run ``phase`` again.

    ``events``: event types of this server that wake it. ``states``: an
    ``instance.update`` wakes it only when its vm_state is one of these and
    no task is in progress (an empty tuple: no ``instance.update`` wakes it).
    ``retry_after_s``: run again after this long even without a change.
    ``poll``: whether the batched poll may wake it (lost notifications).
    """

    phase: str
    events: tuple[str, ...] = ()
    states: tuple[str, ...] = ()
    retry_after_s: float | None = None
    poll: bool = True


@dataclass(frozen=True, slots=True)
class Finish:
    outcome: str
    reason: str | None = None

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {self.outcome!r}")


Transition = Next | Wait | Finish


class CloudAPI(Protocol):
    """The calls actions make (``cloud.Cloud`` implements it)."""

    def server(self, server_id: str) -> ServerState: ...
    def find_server(self, ref: str | Mapping[str, str]) -> ServerState: ...
    def flavor(self, ref: str) -> FlavorInfo: ...
    def console_output(self, server_id: str, *, lines: int | None = None) -> str: ...
    def resize(self, server_id: str, flavor_id: str) -> None: ...
    def confirm_resize(self, server_id: str) -> None: ...
    def revert_resize(self, server_id: str) -> None: ...
    def rescue(self, server_id: str, *, admin_pass: str, image: str | None = None) -> None: ...
    def unrescue(self, server_id: str) -> None: ...
    def actions(self, server_id: str) -> list[dict[str, Any]]: ...
    def lock(self, server_id: str, *, reason: str) -> None: ...
    def unlock(self, server_id: str) -> None: ...
    def compute_quota(self, project_id: str) -> dict[str, int]: ...
    def set_compute_quota(self, project_id: str, *, cores: int, ram: int) -> None: ...


class Probe(Protocol):
    """Network checks of the health gate (injected, so tests control them)."""

    def tcp(self, host: str, port: int, timeout_s: float) -> str | None:
        """``None`` when the port answered, else why not."""
        ...


@dataclass
class StepContext:
    """Everything one phase may use. ``state`` is the machine's memory."""

    operation_id: str
    cloud: CloudAPI
    params: Mapping[str, Any]
    confirm: Confirm
    state: dict[str, Any]
    started_at: datetime
    clock: Callable[[], datetime]
    probe: Probe
    record: Callable[[str, dict[str, Any]], None]
    checkpoint: Callable[[], None]
    rescue_image: str | None = None
    woken_by: Event | None = None
    recent: Callable[[], list[Event]] = list
    """The server's latest notifications, newest last (to find Nova's reasons)."""
    snapshot: ServerState | None = None
    secrets: dict[str, str] = field(default_factory=dict)

    def now(self) -> datetime:
        return self.clock()

    @property
    def deadline(self) -> datetime:
        return self.started_at + timedelta(seconds=self.confirm.timeout_s)

    @property
    def overdue(self) -> bool:
        return self.now() >= self.deadline

    def read_server(self) -> ServerState:
        """The server's real state: the batched poll's fresh snapshot when it
        woke us, else one GET."""
        snapshot, self.snapshot = self.snapshot, None
        if snapshot is not None:
            return snapshot
        return self.cloud.server(self.server_id)

    @property
    def server_id(self) -> str:
        server_id = self.state.get(StateKey.SERVER_ID)
        if not server_id:
            raise KeyError("the server is not resolved yet")
        return str(server_id)


Phase = Callable[[StepContext], Transition]


@dataclass(frozen=True, slots=True)
class Machine:
    """An action: its phases and where it starts."""

    name: str
    first: str
    phases: Mapping[str, Phase]


def describe(server: ServerState) -> dict[str, Any]:
    """The facts of a server worth recording with a step."""
    return {
        "status": server.status,
        "vm_state": server.vm_state,
        "task_state": server.task_state,
        "power_state": server.power_state,
        "flavor": server.flavor_name,
    }
