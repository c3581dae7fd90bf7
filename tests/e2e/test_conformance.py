"""The sandbox is a faithful Nova: the same scenarios against the real Nova and the sandbox.

Each scenario runs twice with the same client code (openstacksdk over
HTTP): once against the real Nova 34 of tests/novabox, once against
:class:`nova_autopilot.sandbox.Sandbox` publishing to a RabbitMQ vhost of
its own. Both are observed the same way and must agree on

- the status a client polling the server sees each step settle in (what it
  passes through on the way may last a few milliseconds, in Nova too, so
  that is compared through the notifications instead; a failed reboot made
  slow to clear its task is also seen in ERROR with the task still set),
- the whole status sequence, as the ``instance.update`` notifications
  report it (each (vm_state, task_state) turned into a status as Nova does),
- the errors the API answers (status code and message, ids masked),
- the versioned notifications about the server: event types in order
  (``instance.update`` aside) and the (vm_state, task_state) transitions the
  ``instance.update`` notifications report (repeats removed),
- once the server goes to ERROR, both interleaved (a failed reboot reports
  ERROR while its task is still set, clears the task with a second
  ``instance.update``, and sends ``compute.exception`` after it),
- where the server ends: status, vm_state, power_state, flavor, launched or not,
- the instance actions the scenario leaves, read as openstacksdk reads them
  (``server_actions`` then ``get_server_action`` for each, as the daemon
  does): action names newest first, their message, user and project, and
  each action's events in the order Nova lists them with their result, their
  ``details`` (ids, names and the injected failures' wording masked), the
  form of their traceback (what its first and last lines are: Nova keeps the
  frames alone, ending with the ``raise``), whether a host and a hostId are
  shown; the form of request ids and timestamps; and the fields of the raw
  list and detail answers at the microversion openstacksdk asks for.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

import openstack.exceptions
import pytest
from openstack.compute.v2.flavor import Flavor
from openstack.compute.v2.server import Server
from openstack.compute.v2.server_action import ServerAction
from openstack.connection import Connection

from nova_autopilot.sandbox import Sandbox, ServerFaults
from nova_autopilot.sandbox.states import status_from_state
from tests.novabox import faults
from tests.novabox.broker import Broker
from tests.novabox.client import IMAGE_ID, NovaBox, connect
from tests.novabox.notifications import NotificationLog, listening
from tests.novabox.settings import BoxSettings

pytestmark = pytest.mark.e2e

_names = itertools.count(1)
POLL = 0.02


class Target(Protocol):
    """A Nova to run scenarios against."""

    name: str
    conn: Connection
    injected: str
    """How the target's injected failures' messages begin."""

    def notifications(self) -> AbstractContextManager[NotificationLog]: ...

    def break_boot(self, server: Server, *, error_delay: float = 0.0) -> None:
        """From now on, the server's reboots and power-ons fail (its guest crashed);
        Nova clears a failed reboot's task ``error_delay`` seconds after ERROR."""

    def break_resize(self, server: Server) -> None:
        """From now on, moving the server's disk fails (the hypervisor errs)."""

    def resize_without_room(self, server: Server, flavors: dict[str, Flavor]) -> None:
        """Ask for a resize that no host can take (NoValidHost)."""


class RealNova:
    name = "nova"
    injected = "novabox: injected"

    def __init__(self, box: NovaBox) -> None:
        self.box = box
        self.conn = box.conn

    def notifications(self) -> AbstractContextManager[NotificationLog]:
        return self.box.notifications()

    def break_boot(self, server: Server, *, error_delay: float = 0.0) -> None:
        plan = faults.FaultPlan(fail=faults.FAILED_BOOT.fail, error_delay=error_delay)
        self.conn.compute.set_server_metadata(server, **plan.metadata())

    def break_resize(self, server: Server) -> None:
        plan = faults.FaultPlan.failing({"resize"})
        self.conn.compute.set_server_metadata(server, **plan.metadata())

    def resize_without_room(self, server: Server, flavors: dict[str, Flavor]) -> None:
        self.conn.compute.resize_server(server, flavors["huge"].id)


class SandboxNova:
    name = "sandbox"
    injected = "sandbox: injected"

    def __init__(self, sandbox: Sandbox, amqp_url: str) -> None:
        self.sandbox = sandbox
        self.amqp_url = amqp_url
        self.conn = connect(sandbox.url)

    def notifications(self) -> AbstractContextManager[NotificationLog]:
        return listening(self.amqp_url)

    def break_boot(self, server: Server, *, error_delay: float = 0.0) -> None:
        self.sandbox.fail(server.id, "reboot", "power_on")
        if error_delay:
            delays = {"reboot_error": error_delay}
            self.sandbox.faults.add_server(server.id, ServerFaults(delays=delays))

    def break_resize(self, server: Server) -> None:
        self.sandbox.fail(server.id, "resize")

    def resize_without_room(self, server: Server, flavors: dict[str, Flavor]) -> None:
        self.sandbox.fail(server.id, "no_valid_host")
        self.conn.compute.resize_server(server, flavors["large"].id)


@dataclass
class Observation:
    """What a client and a notification consumer saw of one scenario."""

    statuses: list[str] = field(default_factory=list)
    errors: list[tuple[int, str]] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    states: list[tuple[str | None, str | None]] = field(default_factory=list)
    trail: list[str] = field(default_factory=list)
    sequence: list[tuple[str, ...]] = field(default_factory=list)
    shapes: list[tuple[Any, ...]] = field(default_factory=list)
    end: dict[str, Any] = field(default_factory=dict)
    actions: list[tuple[Any, ...]] = field(default_factory=list)
    action_forms: dict[str, Any] = field(default_factory=dict)


ACTIONS_VERSION = ServerAction._max_microversion
"""The microversion openstacksdk reads instance actions at."""

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
#: The task states of a resize on its way, which the real Nova goes through at its own
#: pace: a request refused meanwhile names whichever one it met (resize_prep one run,
#: resize_migrating the next), so refusals are compared with the four as one.
_RESIZING = re.compile(r"task_state resize_(?:prep|migrating|migrated|finish)\b")


def _form(value: Any) -> Any:
    """A request id or a timestamp with its variable parts masked."""
    if not isinstance(value, str):
        return value
    return re.sub(r"\d", "9", _UUID.sub("<uuid>", value))


class Run:
    """One scenario on one target: acts, polls, records."""

    def __init__(self, target: Target, flavors: dict[str, Flavor]) -> None:
        self.target = target
        self.compute = target.conn.compute
        self.flavors = flavors
        self.seen = Observation()
        self.server_id = ""
        self.server_name = ""

    def boot(self, prefix: str = "conf-", *, until: str = "ACTIVE") -> Server:
        server = self.compute.create_server(
            name=f"{prefix}{self.target.name}-{next(_names)}",
            flavor_id=self.flavors["small"].id,
            image_id=IMAGE_ID,
            networks="none",
        )
        self.server_id, self.server_name = server.id, server.name
        self.poll(until)
        return server

    def step(self, act: Callable[[], object], until: str) -> None:
        act()
        self.poll(until)

    def refused(self, act: Callable[[], object]) -> None:
        try:
            act()
        except openstack.exceptions.HttpException as exc:
            message = str(exc.details or "").replace(self.server_id, "<id>")
            message = _RESIZING.sub("task_state resize_<on its way>", message)
            self.seen.errors.append((int(exc.status_code or 0), message))
        else:
            self.seen.errors.append((0, "accepted"))

    def poll(self, status: str, timeout: float = 60.0) -> None:
        """Poll until the server settles (no task) in ``status``, or in ERROR; record where."""
        seen: list[str] = []
        deadline = time.monotonic() + timeout
        while True:
            body = self.compute.get(f"/servers/{self.server_id}", microversion="2.100").json()
            server = body["server"]
            if not seen or seen[-1] != server["status"]:
                seen.append(server["status"])
            settled = server["OS-EXT-STS:task_state"] is None
            if settled and server["status"] in (status, "ERROR"):
                self.seen.statuses.append(server["status"])
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.target.name}: never {status}, saw {seen}")
            time.sleep(POLL)

    def busy(self, status: str, timeout: float = 60.0) -> None:
        """Poll until the server shows ``status`` while a task is still in
        progress; record both. Fails if the task ended before it was seen."""
        deadline = time.monotonic() + timeout
        while True:
            body = self.compute.get(f"/servers/{self.server_id}", microversion="2.100").json()
            server = body["server"]
            task = server["OS-EXT-STS:task_state"]
            if server["status"] == status:
                if task is None:
                    raise AssertionError(f"{self.target.name}: {status} with no task left")
                self.seen.statuses.append(f"{status}/{task}")
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.target.name}: never {status} with a task")
            time.sleep(POLL)

    def gone(self, act: Callable[[], object]) -> None:
        """Delete the server and poll until a GET says 404."""
        act()
        seen: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            response = self.compute.get(f"/servers/{self.server_id}", microversion="2.100")
            status = "404" if response.status_code == 404 else response.json()["server"]["status"]
            if not seen or seen[-1] != status:
                seen.append(status)
            if status == "404":
                self.seen.statuses.append(seen[-1])
                return
            time.sleep(POLL)
        raise AssertionError(f"{self.target.name}: never deleted, saw {seen}")

    def current(self) -> dict[str, Any]:
        """The server as GET shows it, or as ``changes-since`` lists it once deleted."""
        response = self.compute.get(f"/servers/{self.server_id}", microversion="2.100")
        if response.status_code != 404:
            return dict(response.json()["server"])
        listed = self.compute.get(
            "/servers/detail",
            params={"changes-since": "2000-01-01T00:00:00Z", "all_tenants": "1"},
            microversion="2.100",
        ).json()["servers"]
        return dict(next(s for s in listed if s["id"] == self.server_id))

    def finish(self, log: NotificationLog, last: Last) -> Observation:
        if isinstance(last, str):
            log.wait_for_event(last, self.server_id, timeout=30)
        else:
            log.wait_for(
                lambda n: (
                    n.instance_uuid == self.server_id
                    and (n.event_type, n.state, n.task_state) == last
                ),
                timeout=30,
                what=f"{last} for {self.server_id}",
            )
        data = self.current()
        roles = {f.name: role for role, f in self.flavors.items()}
        self.seen.events = log.event_types(self.server_id)
        self.seen.states = log.states(self.server_id)
        self.seen.trail = _trail(self.seen.states)
        self.seen.sequence = _sequence(log, self.server_id)
        self.seen.shapes = [
            (
                n.event_type,
                n.priority,
                n.publisher_id.split(":")[0],
                n.payload.get("nova_object.name"),
                n.payload.get("nova_object.version"),
                tuple(sorted(n.data)),
            )
            for n in log.for_instance(self.server_id)
            if n.event_type != "instance.update"
        ]
        self.seen.end = {
            "status": data["status"],
            "vm_state": data["OS-EXT-STS:vm_state"],
            "power_state": data["OS-EXT-STS:power_state"],
            "flavor": roles.get(data["flavor"]["original_name"]),
            "launched": data["OS-SRV-USG:launched_at"] is not None,
            "fault": (data.get("fault") or {}).get("code"),
            "locked_reason": data.get("locked_reason"),
            "console": self.console() if data["status"] != "DELETED" else None,
            "fields": sorted(data),
        }
        self.record_actions()
        return self.seen

    def record_actions(self, timeout: float = 10.0) -> None:
        """The server's instance actions as the daemon reads them, once every
        event has finished (Nova finishes an event just after its notification)."""
        deadline = time.monotonic() + timeout
        while True:
            listed = list(self.compute.server_actions(self.server_id))
            details = [self.compute.get_server_action(a.request_id, self.server_id) for a in listed]
            events = [e for d in details for e in d.events or ()]
            if all(e.finish_time for e in events) or time.monotonic() > deadline:
                break
            time.sleep(POLL)
        self.seen.actions = [
            (
                d.action,
                d.message,
                d.user_id,
                d.project_id,
                [
                    (
                        e.event,
                        e.result,
                        self.masked(e.details),
                        _traceback_form(e.traceback),
                        e.host is not None,
                        bool(e.host_id),
                    )
                    for e in d.events or ()
                ],
            )
            for d in details
        ]
        times = [d.start_time for d in details]
        times += [t for e in events for t in (e.start_time, e.finish_time)]
        base = f"/servers/{self.server_id}/os-instance-actions"
        raw = self.compute.get(base, microversion=ACTIONS_VERSION).json()["instanceActions"]
        newest = self.compute.get(
            f"{base}/{listed[0].request_id}", microversion=ACTIONS_VERSION
        ).json()["instanceAction"]
        self.seen.action_forms = {
            "request_ids": sorted({_form(d.request_id) for d in details}),
            "times": sorted({str(_form(t)) for t in times}),
            "listed": sorted({tuple(sorted(item)) for item in raw}),
            "listed_times": sorted({str(_form(item.get("updated_at"))) for item in raw}),
            "detail": sorted(newest),
            "events": sorted({tuple(sorted(e)) for e in newest["events"]}),
        }

    def masked(self, text: str | None) -> str | None:
        """A message with the server's id and name, and the target's own words, masked."""
        if text is None:
            return None
        text = text.replace(self.server_id, "<id>").replace(self.server_name, "<name>")
        return text.replace(self.target.injected, "<injected>")

    def console(self) -> str:
        """What kind of console the server shows: a login prompt, a rescue, a panic."""
        try:
            output = str(self.compute.get_server_console_output(self.server_id)["output"])
        except openstack.exceptions.HttpException as exc:
            return f"HTTP {exc.status_code}"
        if "Kernel panic" in output:
            return "panic"
        if "rescue login:" in output:
            return "rescue"
        return "login" if output.rstrip().endswith("login:") else "other"


def _traceback_form(traceback: str | None) -> tuple[str, ...] | None:
    """What the first and the last line of a traceback are: a ``Traceback`` header,
    a frame (``File ...``), an exception (``module.Class: message``) or source code."""
    lines = [line for line in (traceback or "").splitlines() if line.strip()]
    if not lines:
        return None

    def kind(line: str) -> str:
        if line.startswith("Traceback"):
            return "header"
        if line.lstrip().startswith("File "):
            return "frame"
        return "exception" if re.match(r"[\w.]+: ", line) else "source"

    return kind(lines[0]), kind(lines[-1])


def _trail(transitions: list[tuple[str | None, str | None]]) -> list[str]:
    """The statuses that (vm_state, task_state) transitions show, repeats removed."""
    trail: list[str] = []
    for vm_state, task_state in transitions:
        status = status_from_state(vm_state or "", task_state)
        if not trail or trail[-1] != status:
            trail.append(status)
    return trail


def _sequence(log: NotificationLog, server_id: str) -> list[tuple[str, ...]]:
    """Every notification about the server from the first ``instance.update`` to
    ERROR on: event types, and (vm_state, task_state) for ``instance.update``
    (repeats removed). Empty when the server never went to ERROR."""
    sequence: list[tuple[str, ...]] = []
    for n in log.for_instance(server_id):
        item: tuple[str, ...] = (n.event_type,)
        if n.event_type == "instance.update":
            item = (n.event_type, str(n.state), str(n.task_state))
        if not sequence and item[1:2] != ("error",):
            continue
        if not sequence or sequence[-1] != item:
            sequence.append(item)
    return sequence


Last = str | tuple[str, str | None, str | None]
"""The notification that ends a scenario: an event type, or (event type, vm_state, task_state)."""
ERRORED: Last = ("instance.update", "error", None)


# -- the scenarios -------------------------------------------------------------------------


def boot(run: Run) -> Last:
    run.boot()
    return "instance.create.end"


def resize_and_confirm(run: Run) -> Last:
    server = run.boot()
    run.step(lambda: run.compute.resize_server(server, run.flavors["large"].id), "VERIFY_RESIZE")
    run.step(lambda: run.compute.confirm_server_resize(server), "ACTIVE")
    return "instance.resize_confirm.end"


def resize_and_revert(run: Run) -> Last:
    server = run.boot()
    run.step(lambda: run.compute.resize_server(server, run.flavors["large"].id), "VERIFY_RESIZE")
    run.step(lambda: run.compute.revert_server_resize(server), "ACTIVE")
    return "instance.resize_revert.end"


def stopped_resize_and_confirm(run: Run) -> Last:
    server = run.boot()
    run.step(lambda: run.compute.stop_server(server), "SHUTOFF")
    run.step(lambda: run.compute.resize_server(server, run.flavors["large"].id), "VERIFY_RESIZE")
    run.step(lambda: run.compute.confirm_server_resize(server), "SHUTOFF")
    return "instance.resize_confirm.end"


def stopped_resize_and_revert(run: Run) -> Last:
    server = run.boot()
    run.step(lambda: run.compute.stop_server(server), "SHUTOFF")
    run.step(lambda: run.compute.resize_server(server, run.flavors["large"].id), "VERIFY_RESIZE")
    run.step(lambda: run.compute.revert_server_resize(server), "SHUTOFF")
    return "instance.resize_revert.end"


def busy_server_refuses(run: Run) -> Last:
    server = run.boot()
    large = run.flavors["large"].id
    run.compute.resize_server(server, large)
    run.refused(lambda: run.compute.rescue_server(server))
    run.refused(lambda: run.compute.resize_server(server, large))
    run.refused(lambda: run.compute.confirm_server_resize(server))
    run.poll("VERIFY_RESIZE")
    run.refused(lambda: run.compute.rescue_server(server))
    run.refused(lambda: run.compute.resize_server(server, run.flavors["small"].id))
    run.step(lambda: run.compute.confirm_server_resize(server), "ACTIVE")
    run.refused(lambda: run.compute.confirm_server_resize(server))
    return "instance.resize_confirm.end"


def resize_without_room(run: Run) -> Last:
    server = run.boot()
    run.step(lambda: run.target.resize_without_room(server, run.flavors), "ACTIVE")
    return "compute_task.migrate_server.error"


def resize_fails(run: Run) -> Last:
    server = run.boot()
    run.target.break_resize(server)
    run.step(lambda: run.compute.resize_server(server, run.flavors["large"].id), "ERROR")
    return ERRORED


def rescue_and_unrescue(run: Run) -> Last:
    server = run.boot()
    run.step(lambda: run.compute.rescue_server(server), "RESCUE")
    run.refused(lambda: run.compute.rescue_server(server))
    run.refused(lambda: run.compute.resize_server(server, run.flavors["large"].id))
    run.step(lambda: run.compute.unrescue_server(server), "ACTIVE")
    return "instance.unrescue.end"


def rescue_never_launched(run: Run) -> Last:
    server = run.boot("fail-spawn-conf-", until="ERROR")
    run.refused(lambda: run.compute.rescue_server(server))
    run.refused(lambda: run.compute.resize_server(server, run.flavors["large"].id))
    return "instance.create.error"


def confirm_not_resized(run: Run) -> Last:
    server = run.boot()
    run.refused(lambda: run.compute.confirm_server_resize(server))
    run.refused(lambda: run.compute.revert_server_resize(server))
    run.refused(lambda: run.compute.unrescue_server(server))
    run.refused(lambda: run.compute.resize_server(server, run.flavors["small"].id))
    run.refused(lambda: run.compute.start_server(server))
    return "instance.create.end"


def failed_reboot_then_rescue(run: Run) -> Last:
    server = run.boot()
    run.target.break_boot(server)
    run.step(lambda: run.compute.reboot_server(server, "SOFT"), "ERROR")
    run.refused(lambda: run.compute.reboot_server(server, "SOFT"))
    run.step(lambda: run.compute.rescue_server(server), "RESCUE")
    run.step(lambda: run.compute.unrescue_server(server), "ACTIVE")
    return "instance.unrescue.end"


def failed_reboot_seen_before_its_task_ends(run: Run) -> Last:
    server = run.boot()
    run.target.break_boot(server, error_delay=2.0)
    run.compute.reboot_server(server, "HARD")
    run.busy("ERROR")
    run.refused(lambda: run.compute.rescue_server(server))
    run.poll("ERROR")
    run.step(lambda: run.compute.rescue_server(server), "RESCUE")
    return "instance.rescue.end"


def failed_start_then_rescue(run: Run) -> Last:
    server = run.boot()
    run.step(lambda: run.compute.stop_server(server), "SHUTOFF")
    run.target.break_boot(server)
    run.step(lambda: run.compute.start_server(server), "SHUTOFF")
    run.step(lambda: run.compute.rescue_server(server), "RESCUE")
    run.step(lambda: run.compute.unrescue_server(server), "ACTIVE")
    return "instance.unrescue.end"


def stop_start_reboot_lock(run: Run) -> Last:
    server = run.boot()
    run.step(lambda: run.compute.stop_server(server), "SHUTOFF")
    run.refused(lambda: run.compute.stop_server(server))
    run.step(lambda: run.compute.start_server(server), "ACTIVE")
    run.step(lambda: run.compute.reboot_server(server, "HARD"), "ACTIVE")
    run.compute.lock_server(server, locked_reason="maintenance")
    return "instance.lock"


def delete_launched(run: Run) -> Last:
    server = run.boot()
    run.gone(lambda: run.compute.delete_server(server))
    return "instance.delete.end"


def delete_never_launched(run: Run) -> Last:
    server = run.boot("fail-spawn-conf-", until="ERROR")
    run.gone(lambda: run.compute.delete_server(server))
    return "instance.delete.end"


SCENARIOS = [
    boot,
    resize_and_confirm,
    resize_and_revert,
    stopped_resize_and_confirm,
    stopped_resize_and_revert,
    busy_server_refuses,
    resize_without_room,
    resize_fails,
    rescue_and_unrescue,
    rescue_never_launched,
    confirm_not_resized,
    failed_reboot_then_rescue,
    failed_reboot_seen_before_its_task_ends,
    failed_start_then_rescue,
    stop_start_reboot_lock,
    delete_launched,
    delete_never_launched,
]


def observe(
    target: Target, flavors: dict[str, Flavor], scenario: Callable[[Run], Last]
) -> Observation:
    run = Run(target, flavors)
    try:
        with target.notifications() as log:
            last = scenario(run)
            return run.finish(log, last)
    finally:
        if run.server_id:
            with contextlib.suppress(openstack.exceptions.NotFoundException):
                target.conn.compute.unlock_server(run.server_id)
            target.conn.compute.delete_server(run.server_id, ignore_missing=True)


# -- fixtures and the test ---------------------------------------------------------------


def _flavors(conn: Connection, tag: str) -> dict[str, Flavor]:
    suffix = f"{tag}-{os.getpid()}-{time.monotonic_ns()}"
    create = conn.compute.create_flavor
    return {
        "small": create(name=f"conf-small-{suffix}", vcpus=1, ram=128, disk=1),
        "large": create(name=f"conf-large-{suffix}", vcpus=2, ram=256, disk=1),
        "huge": create(name=f"conf-huge-{suffix}", vcpus=1, ram=128, disk=10_000_000),
    }


@pytest.fixture(scope="module")
def real(novabox: NovaBox) -> tuple[Target, dict[str, Flavor]]:
    target = RealNova(novabox)
    return target, _flavors(target.conn, "nova")


@pytest.fixture(scope="module")
def sandboxed(box_settings: BoxSettings) -> Iterator[tuple[Target, dict[str, Flavor]]]:
    broker = Broker.from_settings(box_settings)
    vhost = f"sandbox-conformance-{os.getpid()}"
    broker.create_vhost(vhost)
    try:
        with Sandbox(transport_url=broker.transport_url(vhost)) as sandbox:
            target = SandboxNova(sandbox, broker.amqp_url(vhost))
            yield target, _flavors(target.conn, "sandbox")
            assert sandbox.flow_errors == []
    finally:
        broker.delete_vhost(vhost)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.__name__ for s in SCENARIOS])
def test_the_sandbox_behaves_as_nova(
    real: tuple[Target, dict[str, Flavor]],
    sandboxed: tuple[Target, dict[str, Flavor]],
    scenario: Callable[[Run], Last],
) -> None:
    nova = observe(*real, scenario)
    sandbox = observe(*sandboxed, scenario)

    assert sandbox.statuses == nova.statuses
    assert sandbox.errors == nova.errors
    assert sandbox.events == nova.events
    assert sandbox.states == nova.states
    assert sandbox.trail == nova.trail
    assert sandbox.sequence == nova.sequence
    assert sandbox.shapes == nova.shapes
    assert sandbox.end == nova.end
    assert sandbox.actions == nova.actions
    assert sandbox.action_forms == nova.action_forms
