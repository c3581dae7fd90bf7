"""Requests that must not act: a request id reused for another request is
refused as replayed while a redelivered copy gets the first answer; a request
its key may not have done becomes a refused operation that never reaches
Nova; every request the bus dead-letters is recorded in the journal."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kombu import Connection
from oslo_config import cfg

from nova_autopilot.actions.runner import Runner
from nova_autopilot.authorization import Authorization
from nova_autopilot.bus import Bus
from nova_autopilot.engine import Engine
from nova_autopilot.errors import BadMessage
from nova_autopilot.events import Event
from nova_autopilot.journal import Journal
from nova_autopilot.logs import redact
from nova_autopilot.refusals import RefusalRecorder
from nova_autopilot.signing import Verifier, sign
from tests.integration.bus_support import Recorder
from tests.unit.fakes import FakeCloud, FakeServer
from tests.unit.policy_helpers import policies, request_event
from tests.unit.test_bus_memory import broker, conf, request_body, started, wait_for_messages
from tests.unit.test_engine import Results, now
from tests.unit.test_runner import until

__all__ = ["broker", "conf"]  # fixtures shared with the memory-bus tests

SID = "11111111-2222-4333-8444-555555555555"
POLICIES = """
policies:
  - name: resize-approved
    when: {source: request, event: quota.request.approved}
    do: {action: resize, params: {server: "{{ payload.server }}", flavor: "{{ payload.flavor }}"}}
  - name: rescue-requested
    when: {source: request, event: server.rescue.requested}
    do: {action: rescue, params: {server: "{{ payload.server }}"}}
  - name: resize-after-approval
    mode: approve
    when: {source: request, event: quota.request.held}
    do: {action: resize, params: {server: "{{ payload.server }}", flavor: "{{ payload.flavor }}"}}
"""
TABLE = """
keys:
  team-a:
    types: [quota.request.approved, server.rescue.requested, operation.approve]
    projects: [project-a]
    actions: [resize]
    flavors: {names: [m1.large]}
  ops: {types: "*", projects: "*", actions: "*", flavors: "*"}
"""


class World:
    def __init__(self, tmp_path: Path) -> None:
        self.cloud = FakeCloud()
        self.cloud.add(FakeServer(id=SID, name="web-1", flavor="m1.small", project="project-b"))
        self.journal = Journal.open(f"sqlite:///{tmp_path}/journal.sqlite", redact=redact)
        table = tmp_path / "authorization.yaml"
        table.write_text(TABLE)
        table.chmod(0o600)
        self.results = Results()
        self.runner = Runner(
            cloud=self.cloud, store=self.journal, clock=now, on_done=self.on_done, workers=2
        )
        self.engine = Engine(
            policies=lambda: policies(POLICIES),
            journal=self.journal,
            runner=self.runner,
            clock=now,
            reporter=self.results,
            authorizer=Authorization.from_file(table, cloud=self.cloud),
        )

    def on_done(self, done: Any) -> None:
        self.engine.on_done(done)

    def handle(self, event: Event) -> list[str]:
        return self.engine.handle(event, correlation_id="c-1", reply_to="answers")


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    w.runner.start()
    yield w
    w.runner.stop(timeout=5)
    w.journal.close()


def by(key_id: str, event_type: str = "quota.request.approved", **fields: Any) -> Event:
    return dataclasses.replace(request_event(event_type, **fields), key_id=key_id)


def writes(cloud: FakeCloud) -> int:
    return sum(n for call, n in cloud.calls.items() if call not in ("server", "flavor"))


def test_a_request_for_a_server_of_another_project_is_refused_before_nova_is_asked(
    world: World,
) -> None:
    (op_id,) = world.handle(by("team-a", flavor="m1.large", project_id="project-a"))
    operation = world.journal.get(op_id)
    assert operation.outcome == "refused"
    assert operation.reason == (
        f"not_authorized: the request claims project project-a, server {SID} is in project-b"
    )
    assert operation.event["key_id"] == "team-a"
    assert world.results.to("answers")[0]["outcome"] == "refused"
    assert writes(world.cloud) == 0


def test_an_action_the_key_may_not_have_done_is_refused_with_the_reason(world: World) -> None:
    world.cloud.servers[SID].project = "project-a"
    (op_id,) = world.handle(by("team-a", "server.rescue.requested"))
    assert world.journal.get(op_id).reason == "not_authorized: key team-a may not rescue"
    (op_id,) = world.handle(by("team-a", id="r-2", flavor="m1.small"))
    assert world.journal.get(op_id).reason == (
        "not_authorized: key team-a: flavor m1.small is not among m1.large"
    )
    assert world.engine.tally.snapshot().refusals == {"not_authorized": 2}
    assert writes(world.cloud) == 0


def test_a_request_id_reused_for_another_request_is_refused_as_replayed(world: World) -> None:
    world.cloud.servers[SID].project = "project-a"
    first = by("team-a", flavor="m9.none")
    (op_id,) = world.handle(first)
    assert world.journal.get(op_id).outcome == "refused"

    assert world.handle(first) == []  # the same request again: answered, not refused
    assert world.results.to("answers")[-1]["duplicate"] is True
    with pytest.raises(BadMessage) as caught:
        world.handle(by("team-a", flavor="m1.large"))
    assert caught.value.reason == "replayed"
    assert "request id r-1 was used at" in caught.value.detail
    with pytest.raises(BadMessage) as caught:
        world.handle(by("ops", flavor="m9.none"))  # same body, another key
    assert caught.value.reason == "replayed"
    assert writes(world.cloud) == 0


def test_a_key_may_approve_only_what_it_could_have_asked_for(world: World) -> None:
    (op_id,) = world.handle(by("ops", "quota.request.held", id="held-1", flavor="m1.large"))
    assert world.journal.get(op_id).phase == "awaiting_approval"
    with pytest.raises(BadMessage) as caught:
        world.handle(by("team-a", "operation.approve", id="ok-1", operation_id=op_id))
    assert caught.value.reason == "not_authorized"
    assert caught.value.detail == f"key team-a may not act on project project-b (server {SID})"
    assert world.journal.get(op_id).phase == "awaiting_approval"
    assert writes(world.cloud) == 0


def test_requests_refused_by_the_bus_are_recorded_with_reason_key_and_redacted_body(
    conf: cfg.ConfigOpts, broker: Connection, tmp_path: Path
) -> None:
    journal = Journal.open(f"sqlite:///{tmp_path}/journal.sqlite", redact=redact)
    keys = {"team-a": "k" * 32}
    verifier = Verifier(keys, max_age_s=10**9)
    handler = Recorder()
    bus = started(
        Bus(
            conf=conf,
            request_handler=handler,
            verify=verifier,
            on_refused=RefusalRecorder(journal),
        )
    )
    good = request_body("req-good")
    forged = request_body("req-forged", parameters={"password": "hunter2-is-secret"})
    with bus.client() as client:
        client.publish_request(forged, headers=sign(good, "team-a", keys["team-a"]))
        client.publish_request(good, headers=sign(good, "team-a", keys["team-a"]))
    handler.wait_for(1)
    wait_for_messages(broker, f"{conf.requests.queue}.dead", 1)
    until(lambda: journal.refusals())
    bus.stop(5)

    (refusal,) = journal.refusals()
    assert (refusal.reason, refusal.request_id, refusal.key_id) == (
        "bad_signature",
        "req-forged",
        "team-a",
    )
    assert refusal.request_type == "quota.request.approved"
    assert refusal.body["parameters"]["password"] == "***"
    assert "hunter2" not in json.dumps(refusal.body)
    assert [event.key_id for event, _ in handler.calls] == ["team-a"]
    assert journal.refusals(reason="expired") == []
    journal.close()
