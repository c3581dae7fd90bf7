"""An in-memory Nova for fast unit tests of the action machines, and other stand-ins.

It follows Nova's state machine closely enough for the machines' logic; the
same paths run against the sandbox and the real Nova over HTTP elsewhere.
Transitions that Nova makes on its own (a resize reaching VERIFY_RESIZE, a
rescue finishing) happen only when the test says so. ``MemoryStore`` is the
runner's journal in memory, ``Results`` the engine's reporter that keeps what
it was given.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from nova_autopilot.actions.machine import Finish, Next, StepContext, Transition, Wait
from nova_autopilot.actions.registry import MACHINES
from nova_autopilot.cloud import FlavorInfo, Listing, RequestCounter, ServerState
from nova_autopilot.errors import CloudError, Conflict, NotFound
from nova_autopilot.policies.model import Confirm

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
#: Nova's API status for (vm_state, task_state); the task's absence means "default".
STATUS = {
    "active": {None: "ACTIVE", "resize_prep": "RESIZE", "rebooting_hard": "HARD_REBOOT"},
    "stopped": {None: "SHUTOFF", "resize_prep": "RESIZE"},
    "resized": {None: "VERIFY_RESIZE", "resize_reverting": "REVERT_RESIZE"},
    "rescued": {None: "RESCUE"},
    "error": {None: "ERROR"},
}


@dataclass
class FakeServer:
    id: str
    name: str
    flavor: str
    vm_state: str = "active"
    task_state: str | None = None
    launched: bool = True
    old_flavor: str | None = None
    addresses: tuple[str, ...] = ("192.0.2.10",)
    fault: str | None = None
    console: str = "login: "
    power: str | None = None
    locked: str | None = None
    project: str = "project-1"
    updated: str | None = None

    def state(self) -> ServerState:
        by_task = STATUS[self.vm_state]
        status = by_task.get(self.task_state, by_task[None])
        return ServerState(
            id=self.id,
            name=self.name,
            status=status,
            vm_state=self.vm_state,
            task_state=self.task_state,
            power_state=self.power or ("shutdown" if self.vm_state == "stopped" else "running"),
            launched_at="2026-11-25T09:00:00Z" if self.launched else None,
            flavor_name=self.flavor,
            addresses=self.addresses,
            fault=self.fault,
            project_id=self.project,
            locked=self.locked is not None,
            host="compute-1",
            availability_zone="az-1",
            updated=self.updated,
        )


@dataclass
class FakeCloud:
    servers: dict[str, FakeServer] = field(default_factory=dict)
    flavors: tuple[str, ...] = ("m1.small", "m1.large")
    calls: Counter[str] = field(default_factory=Counter)
    requests: RequestCounter = field(default_factory=RequestCounter)
    fail: dict[str, list[CloudError]] = field(default_factory=dict)
    on_call: Callable[[str], None] | None = None
    actions_log: list[dict[str, Any]] = field(default_factory=list)
    quota: dict[str, int] = field(default_factory=lambda: {"cores": 20, "ram": 51200})
    max_limit: int = 1000

    def add(self, server: FakeServer) -> FakeServer:
        self.servers[server.id] = server
        return server

    def _hit(self, call: str, server_id: str | None = None) -> FakeServer | None:
        self.calls[call] += 1
        self.requests.record("GET" if call in ("server", "console") else "POST", f"/{call}", 200)
        if self.on_call:
            self.on_call(call)
        pending = self.fail.get(call)
        if pending:
            raise pending.pop(0)
        if server_id is None:
            return None
        if server_id not in self.servers:
            raise NotFound(f"server {server_id} not found", status=404, call=call)
        return self.servers[server_id]

    def server(self, server_id: str) -> ServerState:
        found = self._hit("server", server_id)
        assert found is not None
        return found.state()

    def find_server(self, ref: str | Mapping[str, str]) -> ServerState:
        key = ref.get("id") or ref.get("name") if isinstance(ref, Mapping) else ref
        for server in self.servers.values():
            if key in (server.id, server.name):
                return self.server(server.id)
        raise NotFound(f"no server {key}", status=404, call="find_server")

    def flavor(self, ref: str) -> FlavorInfo:
        self.calls["flavor"] += 1
        if ref not in self.flavors:
            raise NotFound(f"flavor {ref!r} does not exist", status=404, call="flavor")
        size = self.flavors.index(ref) + 1
        return FlavorInfo(f"id-{ref}", ref, vcpus=size, ram=1024 * size)

    def console_output(self, server_id: str, *, lines: int | None = None) -> str:
        found = self._hit("console", server_id)
        assert found is not None
        return found.console

    def actions(self, server_id: str) -> list[dict[str, Any]]:
        self._hit("actions")
        return list(self.actions_log)

    def resize(self, server_id: str, flavor_id: str) -> None:
        s = self._hit("resize", server_id)
        assert s is not None
        if s.vm_state not in ("active", "stopped") or s.task_state:
            raise Conflict("Cannot 'resize' instance while it is in vm_state " + s.vm_state)
        s.old_flavor, s.task_state = s.flavor, "resize_prep"
        s.flavor = flavor_id.removeprefix("id-")
        self.actions_log.insert(0, {"action": "resize", "start_time": "2026-11-25T12:00:00Z"})

    def confirm_resize(self, server_id: str) -> None:
        s = self._hit("confirm", server_id)
        assert s is not None
        if s.vm_state != "resized":
            raise Conflict("Cannot 'confirmResize' instance while it is in vm_state " + s.vm_state)
        s.task_state = "resize_confirming"

    def revert_resize(self, server_id: str) -> None:
        s = self._hit("revert", server_id)
        assert s is not None
        if s.vm_state != "resized":
            raise Conflict("Cannot 'revertResize' instance while it is in vm_state " + s.vm_state)
        s.task_state = "resize_reverting"

    def rescue(self, server_id: str, *, admin_pass: str, image: str | None = None) -> None:
        s = self._hit("rescue", server_id)
        assert s is not None
        if not s.launched:
            raise Conflict("Cannot 'rescue' instance: it was never launched")
        if s.vm_state not in ("active", "stopped", "error") or s.task_state:
            raise Conflict("Cannot 'rescue' instance while it is in vm_state " + s.vm_state)
        s.task_state = "rescuing"
        self._nova_records("rescue")

    def unrescue(self, server_id: str) -> None:
        s = self._hit("unrescue", server_id)
        assert s is not None
        if s.vm_state != "rescued":
            raise Conflict("Cannot 'unrescue' instance while it is in vm_state " + s.vm_state)
        s.task_state = "unrescuing"
        self._nova_records("unrescue")

    def _nova_records(self, action: str) -> None:
        """Nova's instance action for a request it took, begun now by its clock."""
        started = datetime.now(timezone.utc).isoformat()
        self.actions_log.insert(0, {"action": action, "start_time": started})

    def lock(self, server_id: str, *, reason: str) -> None:
        s = self._hit("lock", server_id)
        assert s is not None
        s.locked = reason

    def unlock(self, server_id: str) -> None:
        s = self._hit("unlock", server_id)
        assert s is not None
        s.locked = None

    def compute_quota(self, project_id: str) -> dict[str, int]:
        self._hit("quota")
        return dict(self.quota)

    def set_compute_quota(self, project_id: str, *, cores: int, ram: int) -> None:
        self._hit("set_quota")
        self.quota = {"cores": cores, "ram": ram}

    def changed_since(self, since: datetime) -> list[ServerState]:
        self._hit("list")
        return [s.state() for s in self.servers.values()]

    def servers_in(self, statuses: tuple[str, ...]) -> Listing:
        """As Nova lists them: one call per status, pages of ``max_limit`` servers (a
        full page links to one more)."""
        found, requests = [], 0
        for status in statuses:
            self._hit("list")
            listed = [s.state() for s in self.servers.values() if s.state().status == status]
            requests += len(listed) // self.max_limit + 1
            found.extend(listed)
        return Listing(tuple(found), requests)

    # -- what Nova does on its own ------------------------------------------

    def nova_finishes(self, server_id: str, *, fail: str | None = None) -> None:
        """Complete whatever task the server is in, as Nova would."""
        s = self.servers[server_id]
        task = s.task_state
        s.task_state = None
        if fail:
            s.fault = fail
            if task == "resize_prep":
                s.flavor = s.old_flavor or s.flavor
                return
            s.vm_state = "error"
        elif task == "resize_prep":
            s.vm_state = "resized"
        elif task == "resize_confirming":
            s.vm_state = "active"
        elif task == "resize_reverting":
            s.vm_state, s.flavor = "active", s.old_flavor or s.flavor
        elif task == "rescuing":
            s.vm_state = "rescued"
        elif task == "unrescuing":
            s.vm_state = "active"


@dataclass
class Drive:
    """Runs one operation's phases by hand, as the runner would, without threads."""

    cloud: FakeCloud
    action: str
    params: dict[str, Any]
    confirm: Confirm = field(default_factory=Confirm)
    now: datetime = T0
    probe_result: str | None = None
    state: dict[str, Any] = field(default_factory=dict)
    phase: str = ""
    steps: list[str] = field(default_factory=list)
    details: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    checkpoints: int = 0
    secrets: dict[str, str] = field(default_factory=dict)
    started_at: datetime = T0

    def __post_init__(self) -> None:
        self.phase = self.phase or MACHINES[self.action].first

    def tcp(self, host: str, port: int, timeout_s: float) -> str | None:
        return self.probe_result

    def context(self) -> StepContext:
        return StepContext(
            operation_id="op-1",
            cloud=self.cloud,
            params=self.params,
            confirm=self.confirm,
            state=self.state,
            started_at=self.started_at,
            clock=lambda: self.now,
            probe=self,
            record=self._record,
            checkpoint=self._checkpoint,
            secrets=self.secrets,
        )

    def _record(self, name: str, detail: dict[str, Any]) -> None:
        self.steps.append(name)
        self.details.append((name, detail))

    def _checkpoint(self) -> None:
        self.checkpoints += 1

    def run(self) -> Transition:
        """Run phases until the machine waits or finishes."""
        machine = MACHINES[self.action]
        ctx = self.context()
        while True:
            transition = machine.phases[self.phase](ctx)
            if isinstance(transition, Next):
                self.phase = transition.phase
                continue
            if isinstance(transition, Wait):
                self.phase = transition.phase
            return transition

    def later(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def restarted(self) -> Drive:
        """The same operation, as a restarted daemon finds it in the journal."""
        return dataclasses.replace(self, state=dict(self.state), steps=[], details=[])


def finished(transition: Transition) -> tuple[str, str | None]:
    assert isinstance(transition, Finish), transition
    return transition.outcome, transition.reason


@dataclass
class MemoryStore:
    """The runner's view of the journal, in memory, thread-safe enough for tests."""

    phases: dict[str, list[str]] = field(default_factory=dict)
    states: dict[str, dict[str, Any]] = field(default_factory=dict)
    steps: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    details: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    outcomes: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)
    placements: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)
    finish_calls: int = 0

    def advance(
        self, op_id: str, *, phase: str, state: dict[str, Any], expect_version: int, now: datetime
    ) -> Any:
        assert self.versions.get(op_id, 0) == expect_version, "stale version"
        self.versions[op_id] = expect_version + 1
        self.phases.setdefault(op_id, []).append(phase)
        self.states[op_id] = dict(state)
        return dataclasses.make_dataclass("Op", ["version"])(self.versions[op_id])

    def record_step(
        self, op_id: str, *, name: str, detail: dict[str, Any], nova_requests: int, now: datetime
    ) -> None:
        self.steps.setdefault(op_id, []).append((name, nova_requests))
        self.details.setdefault(op_id, []).append(detail)

    def place(
        self, op_id: str, *, host: str | None, availability_zone: str | None, now: datetime
    ) -> None:
        self.placements[op_id] = (host, availability_zone)

    def finish(
        self,
        op_id: str,
        *,
        outcome: str,
        reason: str | None,
        now: datetime,
        expect_version: int | None = None,
    ) -> Any:
        if expect_version is not None:
            assert self.versions.get(op_id, 0) == expect_version, "stale version"
        self.finish_calls += 1
        assert op_id not in self.outcomes, "finished twice"
        self.outcomes[op_id] = (outcome, reason)
        return None


class Results:
    """The engine's reporter: every result published, with where it was to go."""

    def __init__(self) -> None:
        self.published: list[tuple[dict[str, Any], str | None, str | None]] = []
        self.progressed: list[tuple[dict[str, Any], str | None, str | None]] = []
        self.lock = threading.Lock()

    def progress(
        self, update: Mapping[str, Any], *, correlation_id: str | None, reply_to: str | None
    ) -> None:
        with self.lock:
            self.progressed.append((dict(update), correlation_id, reply_to))

    def publish(
        self, result: Mapping[str, Any], *, correlation_id: str | None, reply_to: str | None
    ) -> None:
        with self.lock:
            self.published.append((dict(result), correlation_id, reply_to))

    def to(self, reply_to: str) -> list[dict[str, Any]]:
        """The results sent to the reply queue ``reply_to``."""
        with self.lock:
            return [r for r, _, q in self.published if q == reply_to]

    def of(self, action: str) -> list[dict[str, Any]]:
        """The results about ``action`` (``breaker`` for a breaker's changes)."""
        with self.lock:
            return [r for r, _, _ in self.published if r["action"] == action]
