"""One identity per server: a request that names its server by name is decided about
Nova's id for it, so it meets the same guards, locks and history as one by id."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from nova_autopilot.actions.runner import Work
from nova_autopilot.engine.flow import Engine
from nova_autopilot.errors import Ambiguous, BadMessage, CloudUnavailable
from nova_autopilot.events import Event
from nova_autopilot.journal import AmbiguousServer, Journal, Operation
from nova_autopilot.logs import redact
from tests.unit.fakes import FakeCloud, FakeServer
from tests.unit.policy_helpers import policies, request_event

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
WEB = "5e1f7a52-0000-4000-8000-0000000000a1"
TWIN = "5e1f7a52-0000-4000-8000-0000000000b2"
POLICIES = """
policies:
  - name: grow
    when: {source: request, event: quota.request.approved}
    do: {action: resize, params: {server: "{{ payload.server }}", flavor: m1.large}}
    limits: {cooldown: 1h}
"""


class Runner:
    def __init__(self) -> None:
        self.submitted: list[Work] = []

    def notify(self, event: Event) -> int:
        return 0

    def submit(self, work: Work) -> None:
        self.submitted.append(work)


class World:
    def __init__(self, tmp_path: Path) -> None:
        self.now = T0
        self.journal = Journal.open(
            f"sqlite:///{tmp_path}/journal.sqlite", redact=redact, clock=lambda: self.now
        )
        self.cloud = FakeCloud()
        self.cloud.add(FakeServer(id=WEB, name="web-1", flavor="m1.small"))
        self.runner = Runner()
        policy_set = policies(POLICIES)
        self.engine = Engine(
            policies=lambda: policy_set,
            journal=self.journal,
            runner=self.runner,  # type: ignore[arg-type]
            clock=lambda: self.now,
            servers=self.cloud,
        )
        self.serial = 0

    def request(self, server: Any) -> Operation:
        self.serial += 1
        self.now += timedelta(seconds=7)
        (op_id,) = self.engine.handle(request_event(id=f"r-{self.serial}", server=server))
        return self.journal.get(op_id)

    def finish(self, op: Operation, outcome: str = "confirmed") -> None:
        self.journal.finish(op.id, outcome=outcome, now=self.now)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    made = World(tmp_path)
    yield made
    made.journal.close()


def test_a_request_by_name_is_decided_and_recorded_about_novas_id(world: World) -> None:
    op = world.request({"name": "web-1"})

    assert (op.server_id, op.server_name) == (WEB, "web-1")
    assert op.params["server"] == {"id": WEB, "name": "web-1"}
    assert op.outcome is None  # it runs
    (work,) = world.runner.submitted
    assert work.params["server"] == {"id": WEB, "name": "web-1"}


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ({"name": "web-1"}, {"id": WEB}),
        ({"id": WEB}, {"name": "web-1"}),
        ({"name": "web-1"}, "web-1"),
    ],
)
def test_by_name_and_by_id_meet_the_same_cooldown(world: World, first: Any, second: Any) -> None:
    resized = world.request(first)
    world.finish(resized)

    again = world.request(second)

    assert again.outcome == "refused"
    assert (again.reason or "").startswith("cooldown: ")
    assert again.server_id == WEB
    assert len(world.runner.submitted) == 1


def test_by_name_and_by_id_meet_the_same_busy_server(world: World) -> None:
    world.request({"id": WEB})  # still running

    busy = world.request({"name": "web-1"})

    assert busy.outcome == "refused"
    assert (busy.reason or "").startswith("busy: ")


def test_a_name_nova_does_not_know_is_refused_before_anything_is_recorded(
    world: World,
) -> None:
    with pytest.raises(BadMessage) as refused:
        world.request({"name": "web-9"})

    assert refused.value.reason == "unknown_server"
    assert "web-9" in refused.value.detail
    assert world.journal.history() == []


def test_a_name_several_servers_share_is_refused_as_ambiguous(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    def two_servers_are_named_so(ref: Any) -> Any:
        raise Ambiguous("More than one Server exists with the name 'web-1'.", call="find_server")

    monkeypatch.setattr(world.cloud, "find_server", two_servers_are_named_so)

    with pytest.raises(BadMessage) as refused:
        world.request({"name": "web-1"})

    assert refused.value.reason == "ambiguous_server"
    assert world.journal.history() == []
    assert world.runner.submitted == []


def test_nova_away_while_a_name_is_looked_up_is_tried_again_later(world: World) -> None:
    world.cloud.fail["server"] = [CloudUnavailable("Nova is away", status=503)]

    with pytest.raises(CloudUnavailable):
        world.request({"name": "web-1"})

    assert world.journal.history() == []
    assert world.request({"name": "web-1"}).server_id == WEB  # the retry decides it


def test_history_finds_a_server_by_id_by_the_start_of_its_id_and_by_name(
    world: World,
) -> None:
    by_name = world.request({"name": "web-1"})
    world.finish(by_name)
    by_id = world.request({"id": WEB})
    expected = [by_id.id, by_name.id]

    for ref in (WEB, WEB[:12], "web-1"):
        assert [op.id for op in world.journal.history(server=ref)] == expected, ref
    assert world.journal.history(server="web-2") == []


def test_history_refuses_the_start_of_several_ids(world: World) -> None:
    world.cloud.add(FakeServer(id=TWIN, name="web-2", flavor="m1.small"))
    world.request({"id": WEB})
    world.request({"id": TWIN})

    with pytest.raises(AmbiguousServer, match="start of 2 server ids"):
        world.journal.history(server="5e1f7a52")
