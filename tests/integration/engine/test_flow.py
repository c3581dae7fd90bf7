"""The engine on a real journal (SQLite) and the runner, with an in-memory Nova:
decisions are recorded before the message is acknowledged, duplicates are
answered with the first outcome, guards refuse with their reason."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from nova_autopilot.actions.registry import MACHINES
from nova_autopilot.errors import BadMessage
from nova_autopilot.events import Event
from tests.integration.engine.support import SID, World
from tests.unit.policy_helpers import nova_event, policies, request_event
from tests.waiting import until

POLICIES = """
policies:
  - name: resize-approved
    when: {source: request, event: quota.request.approved}
    do: {action: resize, params: {server: "{{ payload.server }}", flavor: "{{ payload.flavor }}"}}
    limits: {cooldown: 1h, budget: {max: 2, per: 1h}}
  - name: rescue-dry
    mode: dry-run
    when: {source: request, event: server.rescue.requested}
    do: {action: rescue, params: {server: "{{ payload.server }}"}}
  - name: broken-template
    when: {source: request, event: server.odd}
    do: {action: unrescue, params: {server: "{{ payload.parameters.target }}"}}
"""


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path, policies(POLICIES))
    w.runner.start()
    yield w
    w.runner.stop(timeout=5)
    w.journal.close()


def finish_resize(world: World, op_id: str) -> None:
    until(lambda: world.runner.waiting() == 1)
    world.cloud.nova_finishes(SID)
    world.nova("instance.resize_finish.end")
    until(lambda: world.cloud.calls["confirm"] == 1)
    until(lambda: world.runner.waiting() == 1)
    world.cloud.nova_finishes(SID)
    world.nova("instance.resize_confirm.end")
    until(lambda: world.journal.get(op_id).finished)
    # Reported once journaled: the results exchange first, then the requester.
    until(lambda: any(r["operation_id"] == op_id for r in world.results.to("answers")))


def test_an_approved_request_is_journaled_carried_out_and_answered(world: World) -> None:
    (op_id,) = world.approve()
    operation = world.journal.get(op_id)
    assert (operation.policy, operation.action, operation.server_id) == (
        "resize-approved",
        "resize",
        SID,
    )
    assert operation.event["event_type"] == "quota.request.approved"
    finish_resize(world, op_id)
    operation = world.journal.get(op_id)
    assert operation.outcome == "confirmed"
    assert operation.nova_requests == 5
    (answer,) = world.results.to("answers")
    assert answer["outcome"] == "confirmed"
    assert answer["request_id"] == "r-1"
    assert [s.name for s in world.journal.steps(op_id)][-1] == "settled"


def test_each_phase_an_operation_enters_is_told_to_its_requester_before_its_result(
    world: World,
) -> None:
    (op_id,) = world.approve()
    finish_resize(world, op_id)

    phases = [update["phase"] for update, _, _ in world.results.progressed]
    assert phases == [s for s in phases if s]  # every update names its phase
    assert len(phases) >= 3
    assert len(set(phases)) == len(phases)  # a phase is told once, when entered
    assert "start" not in phases  # the first phase is the decision's own answer
    machine = list(MACHINES["resize"].phases)
    assert phases == ["request", "wait_verify", "gate", "confirm", "verify"]
    assert set(phases) <= set(machine)
    for update, correlation_id, reply_to in world.results.progressed:
        assert (update["operation_id"], update["action"], update["request_id"]) == (
            op_id,
            "resize",
            "r-1",
        )
        assert (correlation_id, reply_to) == ("c-r-1", "answers")


def test_a_request_the_bus_delivers_again_is_not_executed_twice_and_gets_the_first_outcome(
    world: World,
) -> None:
    (op_id,) = world.approve()
    finish_resize(world, op_id)
    assert world.approve(redelivered=True) == []
    assert world.engine.tally.snapshot().duplicates == {"request": 1}
    answers = world.results.to("answers")
    assert [a["outcome"] for a in answers] == ["confirmed", "confirmed"]
    assert answers[1]["duplicate"] is True
    assert world.cloud.calls["resize"] == 1


def test_an_exact_copy_published_again_is_refused_as_replayed_with_the_first_outcome(
    world: World,
) -> None:
    (op_id,) = world.approve()
    with pytest.raises(BadMessage) as caught:
        world.approve()  # while the first copy runs
    assert caught.value.reason == "replayed"
    assert caught.value.detail.startswith("request id r-1 was accepted at ")
    assert f"operation {op_id} resize: in progress (" in caught.value.detail
    finish_resize(world, op_id)
    with pytest.raises(BadMessage) as caught:
        world.approve()
    assert f"operation {op_id} resize: confirmed" in caught.value.detail
    assert world.engine.tally.snapshot().duplicates == {}
    assert [a["outcome"] for a in world.results.to("answers")] == ["confirmed"]
    assert world.cloud.calls["resize"] == 1


def test_a_second_operation_on_a_busy_server_is_refused_and_recorded(world: World) -> None:
    world.approve("r-1")
    (second,) = world.approve("r-2")
    operation = world.journal.get(second)
    assert operation.outcome == "refused"
    assert operation.reason == "busy: another operation is in flight on this server"
    assert world.results.to("answers")[0]["outcome"] == "refused"
    counted = world.engine.tally.snapshot()
    assert counted.refusals == {"busy": 1}
    assert counted.decisions == {("resize-approved", "run"): 1, ("resize-approved", "refused"): 1}
    assert counted.finished == {("resize", "refused"): 1}
    assert counted.durations == {}  # a refusal took no time: only operations that ran count


def test_the_cooldown_refuses_a_new_resize_soon_after_the_last(world: World) -> None:
    (first,) = world.approve("r-1")
    finish_resize(world, first)
    (second,) = world.approve("r-2", flavor="m1.small")
    operation = world.journal.get(second)
    assert operation.outcome == "refused"
    assert operation.reason is not None
    assert operation.reason.startswith("cooldown:")
    assert world.engine.tally.snapshot().refusals == {"cooldown": 1}


def test_a_dry_run_policy_records_the_decision_without_a_nova_write(world: World) -> None:
    (op_id,) = world.engine.handle(request_event("server.rescue.requested"))
    operation = world.journal.get(op_id)
    assert (operation.outcome, operation.mode) == ("dry_run", "dry-run")
    assert world.cloud.calls["rescue"] == 0


def test_a_policy_whose_parameters_cannot_render_is_refused_with_the_reason(world: World) -> None:
    (op_id,) = world.engine.handle(request_event("server.odd"))
    operation = world.journal.get(op_id)
    assert operation.outcome == "refused"
    assert "payload.parameters.target is missing" in (operation.reason or "")


def test_a_request_no_policy_handles_is_bad_input(world: World) -> None:
    with pytest.raises(BadMessage) as caught:
        world.engine.handle(request_event("server.teleport"))
    assert caught.value.reason == "unknown_request"


def test_a_nova_event_no_policy_matches_costs_no_journal_write(world: World) -> None:
    event: Event = nova_event("instance.delete.end", uuid=SID)
    assert world.engine.handle(event) == []
    assert not world.journal.is_processed(event.dedupe_key or "")


def resume_and_confirm(tmp_path: Path, first: World, op_id: str) -> None:
    """A second daemon on the same journal and the same Nova resumes the resize,
    confirms it once Nova has finished, and never asks for it again."""
    second = World(tmp_path, policies(POLICIES))
    second.cloud = first.cloud
    second.runner._cloud = first.cloud  # the same Nova
    second.runner.start()
    try:
        first.cloud.nova_finishes(SID)
        assert second.engine.resume() == 1
        until(lambda: first.cloud.calls["confirm"] == 1)
        first.cloud.nova_finishes(SID)
        second.nova("instance.resize_confirm.end")
        until(lambda: second.journal.get(op_id).finished)
        assert second.journal.get(op_id).outcome == "confirmed"
        assert first.cloud.calls["resize"] == 1
    finally:
        second.runner.stop(timeout=5)
        second.journal.close()


def test_a_restarted_engine_resumes_unfinished_operations(tmp_path: Path) -> None:
    first = World(tmp_path, policies(POLICIES))
    first.runner.start()
    (op_id,) = first.approve()
    until(lambda: first.runner.waiting() == 1)
    first.runner.stop(timeout=5)  # the daemon stops while Nova is resizing
    first.journal.close()

    resume_and_confirm(tmp_path, first, op_id)


def test_an_operation_that_stopped_while_asking_nova_does_not_ask_twice(tmp_path: Path) -> None:
    first = World(tmp_path, policies(POLICIES))
    first.runner.start()
    (op_id,) = first.approve()
    until(lambda: first.runner.waiting() == 1)
    first.runner.stop(timeout=5)
    # As the journal holds it when the daemon died between its checkpoint before the
    # resize call and the record after it: in phase request, the call already at Nova.
    asked = first.journal.get(op_id)
    state = {k: v for k, v in asked.state.items() if k != "requested"}
    first.journal.advance(op_id, phase="request", state=state, expect_version=asked.version)
    first.journal.close()

    resume_and_confirm(tmp_path, first, op_id)
