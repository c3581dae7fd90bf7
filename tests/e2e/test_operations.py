"""The daemon's operations against the real Nova: openstacksdk over HTTP to Nova 34,
the engine, the runner and a journal, woken by Nova's own notifications from
RabbitMQ. The same paths as tests/integration/test_operations.py, with the
real thing on the other side."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from openstack.compute.v2.flavor import Flavor

from nova_autopilot.errors import BadMessage
from nova_autopilot.events import parse_message
from nova_autopilot.journal import Journal, Operation
from nova_autopilot.logs import redact
from nova_autopilot.policies import PolicySet
from nova_autopilot.policies import load_policies as load_policy_file
from tests.integration.stack import BOOT_POLICIES, assemble, load_policies, utc_now
from tests.novabox import faults
from tests.novabox.client import NovaBox
from tests.novabox.notifications import NotificationLog
from tests.waiting import until

pytestmark = pytest.mark.e2e

SHIPPED = Path(__file__).resolve().parents[2] / "config" / "policies.yaml"


class Daemon:
    """The operating stack against the box, fed by a notification listener."""

    def __init__(self, novabox: NovaBox, log: NotificationLog, journal_path: Path) -> None:
        self.journal = Journal.open(f"sqlite:///{journal_path}", redact=redact)
        self.policies: PolicySet = load_policies("3s")
        self.cloud, self.runner, self.engine = assemble(
            novabox.compute_url, self.journal, lambda: self.policies, poll_interval_s=5.0
        )
        self._log = log
        self._stop = threading.Event()
        self._feeder = threading.Thread(target=self._feed, daemon=True)

    def _feed(self) -> None:
        seen = 0
        while not self._stop.wait(0.05):
            items = self._log.all()
            for n in items[seen:]:
                message = {
                    "event_type": n.event_type,
                    "priority": n.priority,
                    "publisher_id": n.publisher_id,
                    "payload": n.payload,
                    "message_id": n.message_id,
                    "timestamp": n.timestamp,
                }
                with contextlib.suppress(BadMessage):  # not ours to judge here
                    self.engine.handle(parse_message(message, expect="nova"))
            seen = len(items)

    def start(self) -> Daemon:
        self.runner.start()
        self._feeder.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._feeder.join(5)
        self.runner.stop(timeout=10)
        self.journal.close()
        self.cloud.close()

    def request(self, kind: str, server_id: str, **fields: str) -> str:
        body = {
            "type": kind,
            "id": f"e2e-{kind}-{server_id}",
            "timestamp": utc_now().isoformat(),
            "server": {"id": server_id},
            **fields,
        }
        (op_id,) = self.engine.handle(parse_message(body, expect="request"))
        return op_id

    def outcome(self, op_id: str, timeout: float = 90.0) -> Operation:
        until(lambda: self.journal.get(op_id).finished, timeout, f"operation {op_id} to end")
        return self.journal.get(op_id)


@pytest.fixture
def daemon(novabox: NovaBox, tmp_path: Path) -> Iterator[Daemon]:
    with novabox.notifications() as log:
        d = Daemon(novabox, log, tmp_path / "journal.sqlite").start()
        try:
            yield d
        finally:
            d.stop()


def test_a_healthy_resize_is_confirmed_on_the_real_nova(
    novabox: NovaBox, daemon: Daemon, flavors: tuple[Flavor, Flavor]
) -> None:
    small, large = flavors
    server = novabox.boot("op-resize-ok", small, metadata={"novabox:console": "ok"})
    try:
        op = daemon.outcome(daemon.request("quota.request.approved", server.id, flavor=large.name))
        assert (op.outcome, op.reason) == ("confirmed", None)
        assert novabox.conn.compute.get_server(server.id).flavor.name == large.name
        assert op.nova_requests <= 7
    finally:
        novabox.delete(server)


def test_a_failing_gate_is_reverted_on_the_real_nova(
    novabox: NovaBox, daemon: Daemon, flavors: tuple[Flavor, Flavor]
) -> None:
    small, large = flavors
    server = novabox.boot("op-resize-panic", small, metadata={"novabox:console": "panic"})
    try:
        op = daemon.outcome(daemon.request("quota.request.approved", server.id, flavor=large.name))
        assert op.outcome == "reverted"
        assert "Kernel panic" in (op.reason or "")
        assert novabox.conn.compute.get_server(server.id).flavor.name == small.name
    finally:
        novabox.delete(server)


def test_a_never_launched_server_is_not_rescuable_on_the_real_nova(
    novabox: NovaBox, daemon: Daemon, flavors: tuple[Flavor, Flavor]
) -> None:
    server = novabox.boot("fail-spawn-op", flavors[0], wait=False)
    novabox.wait_for_status(server, "ERROR")
    try:
        op = daemon.outcome(daemon.request("server.rescue.requested", server.id))
        assert op.outcome == "not_rescuable"
        assert "rescue_requested" not in [s.name for s in daemon.journal.steps(op.id)]
    finally:
        novabox.delete(server)


def test_a_failed_boot_is_rescued_then_unrescued_on_the_real_nova(
    novabox: NovaBox, daemon: Daemon, flavors: tuple[Flavor, Flavor]
) -> None:
    server = novabox.boot("op-rescue", flavors[0])
    try:
        novabox.make_fail_boot(server)
        op = daemon.outcome(daemon.request("server.rescue.requested", server.id))
        assert (op.outcome, op.reason) == ("rescued", None)
        assert novabox.conn.compute.get_server(server.id).status == "RESCUE"
        back = daemon.outcome(daemon.request("server.repair.done", server.id))
        assert back.outcome == "unrescued"
        assert novabox.conn.compute.get_server(server.id).status == "ACTIVE"
    finally:
        novabox.delete(server)


def test_a_guest_that_panics_after_a_power_on_is_rescued_on_the_real_nova(
    novabox: NovaBox, daemon: Daemon, flavors: tuple[Flavor, Flavor]
) -> None:
    from nova_autopilot.policies import load_texts

    daemon.policies = load_texts([("boot.yaml", BOOT_POLICIES)])
    server = novabox.boot("op-boot-panic", flavors[0], metadata={"novabox:console": "panic"})
    try:
        compute = novabox.conn.compute
        compute.stop_server(server)
        novabox.wait_for_status(server, "SHUTOFF")
        compute.start_server(server)  # Nova says ACTIVE; the console says Kernel panic
        rescued = until(
            lambda: [o for o in daemon.journal.history() if o.action == "rescue" and o.finished],
            60,
            "the rescue of the failed boot",
        )
        assert rescued[0].outcome == "rescued"
        verified = [o for o in daemon.journal.history() if o.action == "verify_boot"]
        assert [o.outcome for o in verified] == ["boot_failed"]
        assert compute.get_server(server.id).status == "RESCUE"
    finally:
        novabox.delete(server)


def test_the_shipped_policy_rescues_a_failed_hard_reboot_on_the_real_nova(
    novabox: NovaBox, daemon: Daemon, flavors: tuple[Flavor, Flavor]
) -> None:
    daemon.policies = load_policy_file(SHIPPED)
    server = novabox.boot("op-reboot-fails", flavors[0])
    try:
        compute = novabox.conn.compute
        # Nova records the fault 3 s late: the server stays in ERROR with its
        # reboot task set that long (some 40-70 ms otherwise), so the daemon
        # reads it before Nova clears the task, every time.
        plan = faults.FaultPlan(fail=frozenset({"reboot"}), error_delay=3.0)
        compute.set_server_metadata(server, **plan.metadata())
        compute.reboot_server(server, "HARD")
        (op,) = until(
            lambda: [o for o in daemon.journal.history() if o.action == "rescue" and o.finished],
            90,
            "the rescue of the failed reboot",
        )
        # The policy fired on Nova's first instance.update, sent while the reboot
        # task was still set; the rescue waited for Nova to clear it, then asked.
        assert op.event["payload"]["task_state"] == "reboot_started_hard"
        assert (op.policy, op.outcome, op.reason) == ("rescue-failed-boot", "rescued", None)
        names = [step.name for step in daemon.journal.steps(op.id)]
        assert names[:3] == ["waiting_for_task", "task_ended", "checked"]
        assert names.count("rescue_requested") == 1
        assert op.nova_requests == 4  # GET (busy), GET (task ended), POST rescue, GET
        assert compute.get_server(server.id).status == "RESCUE"
    finally:
        novabox.delete(server)


def test_a_rescue_asked_during_a_resize_waits_and_is_refused_with_novas_state_on_the_real_nova(
    novabox: NovaBox, daemon: Daemon, flavors: tuple[Flavor, Flavor]
) -> None:
    small, large = flavors
    server = novabox.boot("op-busy", small, metadata={faults.RESIZE_DELAY_KEY: "5"})
    try:
        novabox.conn.compute.resize_server(server, large.id)  # someone else's resize
        op = daemon.outcome(daemon.request("server.rescue.requested", server.id))
        assert (op.outcome, op.reason) == (
            "refused",
            "the server is VERIFY_RESIZE (vm_state resized)",
        )
        names = [step.name for step in daemon.journal.steps(op.id)]
        assert names == ["waiting_for_task", "task_ended"]
        assert op.nova_requests <= 2  # a look at the start and one at the end; no write
    finally:
        novabox.delete(server)
