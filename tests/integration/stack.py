"""The daemon's operating stack over real HTTP: openstacksdk against the sandbox Nova,
the runner, the engine and a journal on SQLite.

The sandbox's notifications are handed to the engine in-process (the bus's
own tests cover RabbitMQ), so these tests are about the operations: every
Nova request goes over HTTP through openstacksdk, as in production.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from nova_autopilot.actions.runner import Runner
from nova_autopilot.cloud import Cloud, WriteLimiter
from nova_autopilot.engine.flow import Engine
from nova_autopilot.errors import BadMessage
from nova_autopilot.events import Event, parse_message
from nova_autopilot.guards import GuardSettings
from nova_autopilot.journal import Journal, Operation
from nova_autopilot.logs import redact
from nova_autopilot.policies import PolicySet, load_texts
from nova_autopilot.sandbox import Durations, Sandbox, Settings
from nova_autopilot.sandbox.outbox import Notification
from tests.waiting import until

POLICIES = """
policies:
  - name: resize
    when: {source: request, event: quota.request.approved}
    do:
      action: resize
      params: {server: "{{ payload.server }}", flavor: "{{ payload.flavor }}"}
    confirm:
      timeout: 60s
      gate: [{console: {contains: "login:", not_contains: "Kernel panic"}}]
      gate_timeout: "{gate_timeout}"
  - name: rescue
    when: {source: request, event: server.rescue.requested}
    do: {action: rescue, params: {server: "{{ payload.server }}"}}
    confirm: {timeout: 60s}
  - name: unrescue
    when: {source: request, event: server.repair.done}
    do: {action: unrescue, params: {server: "{{ payload.server }}"}}
    confirm: {timeout: 60s}
"""

#: A boot that Nova reports as done is verified on the console; a failed one is rescued.
BOOT_POLICIES = """
policies:
  - name: verify-boot
    when: {source: nova, event: [instance.power_on.end, instance.reboot.end]}
    do: {action: verify_boot, params: {server: {id: "{{ instance_id }}"}, interval: 0.2}}
    confirm: {timeout: 20s}
  - name: rescue-on-failed-boot
    when: {source: autopilot, event: autopilot.boot.failed}
    do: {action: rescue, params: {server: "{{ payload.server }}"}}
    confirm: {timeout: 30s}
"""


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def clouds_yaml(path: Path, url: str, *, token: str = "admin:admin", name: str = "sandbox") -> Path:
    """Write a clouds.yaml whose cloud ``name`` is the compute endpoint ``url`` with a
    static token (neither the sandbox Nova nor the box has a Keystone); returns ``path``."""
    entry = {
        "auth_type": "admin_token",
        "auth": {"endpoint": url, "token": token},
        "compute_endpoint_override": url,
    }
    path.write_text(yaml.safe_dump({"clouds": {name: entry}}))
    return path


class InProcess:
    """A sandbox publisher that hands each notification to a handler."""

    def __init__(self) -> None:
        self.handler: Callable[[Event], object] | None = None
        self.events: list[Event] = []

    def publish(self, notification: Notification) -> None:
        try:
            event = parse_message(notification.as_message(), expect="nova")
        except BadMessage:
            return
        self.events.append(event)
        if self.handler is not None:
            self.handler(event)

    def close(self) -> None:
        return None


def assemble(
    url: str,
    journal: Journal,
    policies: Callable[[], PolicySet],
    *,
    reporter: Any = None,
    poll_interval_s: float = 30.0,
    writes: WriteLimiter | None = None,
    guard_settings: GuardSettings | None = None,
) -> tuple[Cloud, Runner, Engine]:
    """The daemon's parts, wired as the daemon wires them (not started)."""
    cloud = Cloud.from_endpoint(url, writes=writes)
    cloud.check()  # what the daemon does at start: discovery is not an operation's cost
    engine: Engine
    runner = Runner(
        cloud=cloud,
        store=journal,
        clock=utc_now,
        on_done=lambda done: engine.on_done(done),
        workers=4,
        poll_interval_s=poll_interval_s,
        retry_base_s=0.05,
    )
    engine = Engine(
        policies=policies,
        journal=journal,
        runner=runner,
        clock=utc_now,
        reporter=reporter,
        guard_settings=guard_settings,
    )
    return cloud, runner, engine


def add_flavors(sandbox: Sandbox) -> Sandbox:
    """Adds m1.small, and m1.large (2 vCPUs, 256 MiB): what most tests resize between."""
    sandbox.add_flavor("m1.small")
    sandbox.add_flavor("m1.large", vcpus=2, ram=256)
    return sandbox


def load_policies(gate_timeout: str = "2s") -> PolicySet:
    return load_texts([("stack.yaml", POLICIES.replace("{gate_timeout}", gate_timeout))])


class Stack:
    def __init__(
        self,
        tmp_path: Path,
        *,
        notifications: bool = True,
        settings: Settings | None = None,
        durations: Durations | None = None,
        gate_timeout: str = "2s",
        poll_interval_s: float = 30.0,
        journal_path: Path | None = None,
        sandbox: Sandbox | None = None,
        writes: WriteLimiter | None = None,
        guard_settings: GuardSettings | None = None,
    ) -> None:
        self.publisher = InProcess()
        self.sandbox = sandbox or Sandbox(
            publisher=self.publisher if notifications else None,
            settings=settings,
            durations=durations,
        )
        self.owns_sandbox = sandbox is None
        self.policies: PolicySet = load_policies(gate_timeout)
        self.journal = Journal.open(
            f"sqlite:///{journal_path or tmp_path / 'journal.sqlite'}", redact=redact
        )
        self.results: list[dict[str, Any]] = []
        self.done = threading.Condition()
        self.cloud: Cloud
        self.runner: Runner
        self.engine: Engine
        self._poll_interval_s = poll_interval_s
        self._writes = writes
        self._guard_settings = guard_settings

    def start(self) -> Stack:
        if self.owns_sandbox:
            self.sandbox.start()
        self.cloud, self.runner, self.engine = assemble(
            self.sandbox.url,
            self.journal,
            lambda: self.policies,
            reporter=self,
            poll_interval_s=self._poll_interval_s,
            writes=self._writes,
            guard_settings=self._guard_settings,
        )
        self.publisher.handler = self.engine.handle
        self.runner.start()
        return self

    def with_flavors(self) -> Stack:
        """The sandbox with the flavors of :func:`add_flavors`."""
        add_flavors(self.sandbox)
        return self

    def stop(self) -> None:
        self.publisher.handler = None
        self.runner.stop(timeout=10)
        self.journal.close()
        self.cloud.close()
        if self.owns_sandbox:
            self.sandbox.stop()

    # The engine's reporter.
    def progress(
        self, update: Mapping[str, Any], *, correlation_id: str | None, reply_to: str | None
    ) -> None:
        return None  # the stack's tests look at results

    def publish(
        self, result: Mapping[str, Any], *, correlation_id: str | None, reply_to: str | None
    ) -> None:
        with self.done:
            self.results.append({**result, "_reply_to": reply_to})
            self.done.notify_all()

    def request(self, kind: str, server_id: str, **fields: Any) -> str:
        """Send an operator request into the engine; the operation's id."""
        body = {
            "type": kind,
            "id": f"req-{time.monotonic_ns()}",
            "timestamp": utc_now().isoformat(),
            "server": {"id": server_id},
            **fields,
        }
        (op_id,) = self.engine.handle(parse_message(body, expect="request"), reply_to="answers")
        return op_id

    def outcome(self, op_id: str, timeout: float = 30.0) -> Operation:
        until(lambda: self.journal.get(op_id).finished, timeout, f"operation {op_id} to end")
        return self.journal.get(op_id)

    def nova_calls(self, action: str) -> int:
        """How many times the sandbox was asked for a server action."""
        counts = self.sandbox.request_counts().items()
        return sum(n for call, n in counts if call.endswith(f"/action {action}"))
