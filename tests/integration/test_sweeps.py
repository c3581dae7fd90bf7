"""Sweeps over real HTTP: Nova's notifications of a failed reboot and of a finished
resize are lost on purpose, so the policies that wait for them never fire; a sweep
lists the servers through openstacksdk against the sandbox Nova, and the engine
rescues the one and confirms the other, through the guards and the journal. Later
sweeps do not act on the same stuck state again."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from nova_autopilot.cli import main
from nova_autopilot.engine.sweeps import Sweeper
from nova_autopilot.events import Event
from nova_autopilot.journal import Operation
from nova_autopilot.policies import load_texts
from nova_autopilot.sandbox import Sandbox
from tests.integration.stack import Stack, clouds_yaml, utc_now
from tests.waiting import until

POLICIES = """
policies:
  - name: rescue-failed-boot
    when:
      source: nova
      event: instance.update
      match:
        - {field: payload.state_update.state, equals: error}
        - {field: payload.launched_at, exists: true}
    do: {action: rescue, params: {server: {id: "{{ instance_id }}"}}}
    confirm: {timeout: 60s}
  - name: finish-resizes
    when: {source: nova, event: instance.resize_finish.end}
    do: {action: finish_resize, params: {server: {id: "{{ instance_id }}"}}}
    confirm: {timeout: 60s}
  - name: rescue-what-the-events-missed
    when:
      source: sweep
      event: sweep.server.error
      match: {field: payload.launched_at, exists: true}
    do: {action: rescue, params: {server: {id: "{{ instance_id }}"}}}
    confirm: {timeout: 60s}
    limits: {budget: {max: 5, per: 1h}}
  - name: confirm-forgotten-resizes
    when:
      source: sweep
      event: sweep.server.verify_resize
      match: {field: payload.stuck_for_s, longer_than: 2s}
    do: {action: finish_resize, params: {server: {id: "{{ instance_id }}"}}}
    confirm: {timeout: 60s, gate: [{console: {contains: "login:"}}]}
  - name: report-rescued-servers
    mode: dry-run
    when: {source: sweep, event: sweep.server.rescue}
    do: {action: unrescue, params: {server: {id: "{{ instance_id }}"}}}
"""


class Losing:
    """Hands Nova's notifications to the engine, but loses those of the servers in
    ``lose`` (the event-driven policies never hear of them)."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.lose: set[str] = set()
        self.lost: list[Event] = []

    def __call__(self, event: Event) -> object:
        if event.instance_id in self.lose:
            self.lost.append(event)
            return None
        return self.stack.engine.handle(event)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    """The stack of tests/integration/conftest.py, polling every half second, with these
    policies."""
    s = Stack(tmp_path, poll_interval_s=0.5).start().with_flavors()
    s.policies = load_texts([("sweeps.yaml", POLICIES)])
    yield s
    s.stop()


def operations(stack: Stack, server_id: str) -> list[Operation]:
    return stack.journal.history(server_id=server_id)


def settled(stack: Stack, server_id: str, status: str) -> bool:
    server = stack.sandbox.server(server_id)
    return server.status == status and server.task_state is None


def test_a_sweep_acts_on_what_lost_notifications_hid_and_only_once(stack: Stack) -> None:
    losing = Losing(stack)
    stack.publisher.handler = losing
    sweeper = Sweeper(
        cloud=stack.cloud,
        policies=lambda: stack.policies,
        decide=stack.engine.handle_events,
        clock=utc_now,
        interval_s=300,
    )
    # Given a launched server whose reboot fails, and someone else's resize left
    # waiting for confirmation, with every notification about them lost
    broken = stack.sandbox.add_server("fail-boot-db", "m1.small")
    resized = stack.sandbox.add_server("web", "m1.small")
    losing.lose |= {broken.id, resized.id}
    stack.cloud.reboot(broken.id)
    stack.cloud.resize(resized.id, stack.sandbox.flavor("m1.large").id)
    until(lambda: settled(stack, broken.id, "ERROR"), 30, "the failed reboot")
    until(lambda: settled(stack, resized.id, "VERIFY_RESIZE"), 30, "the resize")
    # (Nova notifies after it saves the state: wait for the notifications, too)
    until(
        lambda: (
            {"instance.update", "instance.resize_finish.end"} <= {e.event_type for e in losing.lost}
        ),
        30,
        "the lost notifications",
    )
    assert stack.journal.history() == []  # the event-driven policies never fired
    # (they stay lost: the operations follow their servers with the batched poll)

    # When a sweep runs: the broken server is rescued, as a sweep decision
    first = sweeper.sweep()
    assert first.statuses == ("VERIFY_RESIZE", "RESCUE", "ERROR")
    assert first.requests == 3  # one list call per status, every server on one page
    (rescue,) = operations(stack, broken.id)
    rescue = stack.outcome(rescue.id)
    assert (rescue.policy, rescue.action, rescue.outcome) == (
        "rescue-what-the-events-missed",
        "rescue",
        "rescued",
    )
    assert stack.sandbox.server(broken.id).vm_state == "rescued"

    # And once the resize has waited more than 2 s, a sweep has it confirmed
    until(lambda: sweeper.sweep() and operations(stack, resized.id), 30, "the resize decision")
    (finish,) = operations(stack, resized.id)
    finish = stack.outcome(finish.id)
    assert (finish.policy, finish.action, finish.outcome) == (
        "confirm-forgotten-resizes",
        "finish_resize",
        "confirmed",
    )
    assert finish.event["payload"]["stuck_for_s"] > 2
    assert stack.sandbox.server(resized.id).flavor.name == "m1.large"
    for operation in (rescue, finish):
        assert operation.event["source"] == "sweep"
        assert operation.host == "sandbox"
    assert rescue.event["event_type"] == "sweep.server.error"

    # And later sweeps see the rescued server once (a dry-run report), then never again
    until(lambda: sweeper.sweep() and len(operations(stack, broken.id)) == 2, 30, "the report")
    sweeper.sweep()
    sweeper.sweep()
    sweeper.sweep()
    assert len(operations(stack, resized.id)) == 1
    kinds = sorted((op.policy, op.outcome) for op in operations(stack, broken.id))
    assert kinds == [
        ("report-rescued-servers", "dry_run"),
        ("rescue-what-the-events-missed", "rescued"),
    ]


def test_sweep_dry_run_shows_what_a_sweep_would_emit_and_decide(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with Sandbox() as sandbox:
        sandbox.add_flavor("m1.small")
        broken = sandbox.add_server("db", "m1.small", state="ERROR")
        sandbox.add_server("never-booted", "m1.small", state="ERROR", launched=False)
        sandbox.add_server("fine", "m1.small")
        clouds = clouds_yaml(tmp_path / "clouds.yaml", sandbox.url)
        (tmp_path / "policies.yaml").write_text(POLICIES)
        conf = tmp_path / "nova-autopilot.conf"
        conf.write_text(
            f"[policies]\npath = {tmp_path / 'policies.yaml'}\n[cloud]\ncloud = sandbox\n"
        )
        monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(clouds))
        before = sum(sandbox.request_counts().values())

        assert main(["--config-file", str(conf), "sweep", "--dry-run", "--json"]) == 0
        result = json.loads(capsys.readouterr().out)
        assert result["sweep"]["statuses"] == ["VERIFY_RESIZE", "RESCUE", "ERROR"]
        assert (result["sweep"]["servers"], result["sweep"]["events"]) == (2, 1)
        (explained,) = result["events"]
        assert explained["event"]["instance_id"] == broken.id
        assert [a["policy"] for a in explained["actions"]] == ["rescue-what-the-events-missed"]
        counts = sandbox.request_counts()
        assert not [call for call in counts if "/action" in call]  # nothing was done
        assert sum(sandbox.request_counts().values()) - before >= 3

        assert main(["--config-file", str(conf), "sweep", "--dry-run"]) == 0
        text = capsys.readouterr().out
        assert text.startswith("sweep of VERIFY_RESIZE, RESCUE, ERROR: 2 servers, 1 events")
        assert "MATCH  rescue-what-the-events-missed" in text
