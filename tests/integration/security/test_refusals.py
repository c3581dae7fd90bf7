"""Requests that must not act: a request id already accepted is refused as
replayed when its copy is published again (or says something else), while a
copy the bus delivers again gets the first answer; a request its key may not
have done is refused as not_authorized before anything is decided and never
reaches Nova; every request the bus dead-letters is recorded in the journal,
and the requester of one the handler refused is answered why."""

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
from nova_autopilot.bus import Bus
from nova_autopilot.bus.copies import ATTEMPT
from nova_autopilot.engine.flow import Engine
from nova_autopilot.errors import BadMessage, CloudUnavailable, TemporaryError
from nova_autopilot.events import Event
from nova_autopilot.journal import Journal
from nova_autopilot.logs import redact
from nova_autopilot.security.authorization import Authorization
from nova_autopilot.security.refusals import RefusalRecorder
from nova_autopilot.security.signing import Verifier, sign
from tests import memory_bus
from tests.integration.bus_support import Recorder, request_body
from tests.integration.stack import utc_now
from tests.memory_bus import started, wait_for_messages
from tests.unit.fakes import FakeCloud, FakeServer, Results
from tests.unit.policy_helpers import policies, request_event
from tests.waiting import until

conf = memory_bus.conf
broker = memory_bus.broker

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
  - name: fix-by-resizing
    when: {source: request, event: server.fix.requested}
    do: {action: resize, params: {server: "{{ payload.server }}", flavor: "{{ payload.flavor }}"}}
  - name: fix-by-rescuing
    when: {source: request, event: server.fix.requested}
    do: {action: rescue, params: {server: "{{ payload.server }}"}}
"""
TABLE = """
keys:
  team-a:
    types: [quota.request.approved, server.rescue.requested, operation.approve,
            server.fix.requested, quota.request.held]
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
            cloud=self.cloud, store=self.journal, clock=utc_now, on_done=self.on_done, workers=2
        )
        self.engine = Engine(
            policies=lambda: policies(POLICIES),
            journal=self.journal,
            runner=self.runner,
            clock=utc_now,
            reporter=self.results,
            authorizer=Authorization.from_file(table, cloud=self.cloud),
        )

    def on_done(self, done: Any) -> None:
        self.engine.on_done(done)

    def handle(self, event: Event, *, redelivered: bool = False) -> list[str]:
        return self.engine.handle(
            event, correlation_id="c-1", reply_to="answers", redelivered=redelivered
        )

    def decided(self) -> int:
        return len(self.journal.history())


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


def refused(world: World, event: Event, **options: Any) -> BadMessage:
    with pytest.raises(BadMessage) as caught:
        world.handle(event, **options)
    return caught.value


def test_a_request_for_a_server_of_another_project_is_refused_before_anything_is_decided(
    world: World,
) -> None:
    refusal = refused(world, by("team-a", flavor="m1.large", project_id="project-a"))
    assert refusal.reason == "not_authorized"
    assert refusal.detail == f"the request claims project project-a, server {SID} is in project-b"
    assert world.decided() == 0
    assert not world.journal.is_processed("request:r-1")  # a later, allowed copy may still act
    assert world.results.published == []
    assert writes(world.cloud) == 0


def test_an_action_or_a_flavor_the_key_may_not_have_is_refused_with_the_reason(
    world: World,
) -> None:
    world.cloud.servers[SID].project = "project-a"
    assert refused(world, by("team-a", "server.rescue.requested")).detail == (
        "key team-a may not rescue"
    )
    assert refused(world, by("team-a", id="r-2", flavor="m1.small")).detail == (
        "key team-a: flavor m1.small is not among m1.large"
    )
    assert refused(
        world, by("team-a", id="r-3", server={"id": "gone"}, flavor="m1.large")
    ).detail == ("key team-a: server gone not found in Nova, its project cannot be checked")
    assert world.decided() == 0
    assert writes(world.cloud) == 0


def test_a_request_is_refused_whole_when_one_of_its_decisions_is_not_allowed(
    world: World,
) -> None:
    world.cloud.servers[SID].project = "project-a"
    fix = by("team-a", "server.fix.requested", flavor="m1.large")
    refusal = refused(world, fix)
    assert (refusal.reason, refusal.detail) == ("not_authorized", "key team-a may not rescue")
    assert world.decided() == 0  # not even the resize it was allowed
    assert writes(world.cloud) == 0
    assert len(world.handle(dataclasses.replace(fix, key_id="ops"))) == 2


def test_nova_failing_the_lookup_is_retried_not_refused(world: World) -> None:
    world.cloud.servers[SID].project = "project-a"
    world.cloud.fail["server"] = [CloudUnavailable("503 Service Unavailable", status=503)]
    with pytest.raises(CloudUnavailable):  # a TemporaryError: the bus retries it later
        world.handle(by("team-a", "quota.request.held", flavor="m1.large"))
    assert world.decided() == 0
    assert not world.journal.is_processed("request:r-1")
    retried = by("team-a", "quota.request.held", flavor="m1.large")
    (op_id,) = world.handle(retried, redelivered=True)  # its retry, once Nova answers
    assert world.journal.get(op_id).phase == "awaiting_approval"


def test_a_request_id_already_accepted_is_refused_as_replayed_unless_the_bus_redelivers_it(
    world: World,
) -> None:
    first = by("ops", "quota.request.held", flavor="m1.large")
    (op_id,) = world.handle(first)
    assert world.journal.get(op_id).phase == "awaiting_approval"
    answers = len(world.results.to("answers"))

    # The broker's redelivery, or the bus's own retry: answered with the first outcome.
    assert world.handle(first, redelivered=True) == []
    answer = world.results.to("answers")[-1]
    assert (answer["operation_id"], answer["duplicate"]) == (op_id, True)
    assert world.engine.tally.snapshot().duplicates == {"request": 1}

    # The same request published again: refused, with when and what the first led to.
    refusal = refused(world, first)
    assert refusal.reason == "replayed"
    assert refusal.detail.startswith("request id r-1 was accepted at ")
    assert f"(operation {op_id} resize: in progress (awaiting_approval))" in refusal.detail
    # The id reused for another body, or the same body signed by another key.
    for other in (
        by("ops", "quota.request.held", flavor="m1.small"),
        by("team-a", "quota.request.held", flavor="m1.large"),
    ):
        for redelivered in (False, True):
            refusal = refused(world, other, redelivered=redelivered)
            assert refusal.reason == "replayed"
            assert "request id r-1 was used at" in refusal.detail
    assert len(world.results.to("answers")) == answers + 1
    assert world.decided() == 1
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


def test_the_requester_hears_why_the_handler_refused_and_a_forger_hears_nothing(
    conf: cfg.ConfigOpts, broker: Connection, tmp_path: Path
) -> None:
    journal = Journal.open(f"sqlite:///{tmp_path}/journal.sqlite", redact=redact)
    keys = {"team-a": "k" * 32}

    def refuse(event: Event, delivery: Any) -> None:
        raise BadMessage("replayed", f"request id {event.request_id} was accepted at ...")

    handler = Recorder(refuse)
    bus = started(
        Bus(
            conf=conf,
            request_handler=handler,
            verify=Verifier(keys, max_age_s=10**9),
            on_refused=RefusalRecorder(journal),
        )
    )
    good = request_body("req-again")
    forged = request_body("req-forged")
    with bus.client() as client:
        reply_to = client.reply_queue()
        client.publish_request(forged, headers=sign(good, "team-a", keys["team-a"]),
                               correlation_id="forged", reply_to=reply_to)  # fmt: skip
        client.publish_request(good, headers=sign(good, "team-a", keys["team-a"]),
                               correlation_id="again", reply_to=reply_to)  # fmt: skip
        answer = client.wait_for_reply("again", timeout=10).body
        wait_for_messages(broker, f"{conf.requests.queue}.dead", 2)
        until(lambda: len(journal.refusals()) == 2)
        with pytest.raises(TimeoutError):  # it would have come first: published first
            client.wait_for_reply("forged", timeout=0)
    bus.stop(5)
    assert answer == {
        "request_id": "req-again",
        "type": "quota.request.approved",
        "action": None,
        "outcome": "refused",
        "reason": "replayed: request id req-again was accepted at ...",
        "refused": "replayed",
    }
    assert {(r.request_id, r.reason) for r in journal.refusals()} == {
        ("req-again", "replayed"),
        ("req-forged", "bad_signature"),
    }
    journal.close()


def test_the_bus_says_which_copies_it_delivers_again(
    conf: cfg.ConfigOpts, broker: Connection
) -> None:
    """A new publish is not repeated, the bus's own delayed retry is, and so is
    a broker redelivery; an attempt header written by a sender proves nothing."""
    keys = {"team-a": "k" * 32}

    def fail_once(event: Event, delivery: Any) -> None:
        if event.request_id == "req-retried" and delivery.attempt == 1:
            raise TemporaryError("Nova is away")

    handler = Recorder(fail_once)
    bus = started(
        Bus(
            conf=conf,
            request_handler=handler,
            verify=Verifier(keys, max_age_s=10**9),
            retry_delays=[0.05],
        )
    )
    retried = request_body("req-retried")
    forged_attempt = request_body("req-attempt")
    with bus.client() as client:
        client.publish_request(retried, headers=sign(retried, "team-a", keys["team-a"]))
        client.publish_request(
            forged_attempt,
            headers={**sign(forged_attempt, "team-a", keys["team-a"]), ATTEMPT: 2},
        )
        calls = handler.wait_for(3)
    bus.stop(5)
    seen = [(e.request_id, d.attempt, d.repeated) for e, d in calls]
    assert sorted(seen) == [
        ("req-attempt", 2, False),
        ("req-retried", 1, False),
        ("req-retried", 2, True),
    ]
    assert dataclasses.replace(calls[0][1], redelivered=True, attempt=1).repeated
