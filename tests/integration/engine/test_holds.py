"""Held operations with the engine on a real journal (SQLite), the runner and an
in-memory Nova: a decision for a busy server queued behind its operation
(``limits.when_busy: wait``), a decision awaiting an operator's approval
(``mode: approve``), each with its own deadline, both kept across a restart."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from nova_autopilot.engine.flow import Engine
from nova_autopilot.errors import BadMessage
from nova_autopilot.events import Event, parse_message
from nova_autopilot.guards import GuardSettings
from nova_autopilot.journal import AWAITING_APPROVAL, QUEUED, JournalError
from nova_autopilot.policies import PolicySet
from tests.integration.engine.support import SID, World, decision, now
from tests.unit.policy_helpers import policies
from tests.waiting import until

POLICIES = """
policies:
  - name: resize-queued
    when: {source: request, event: quota.request.approved}
    do: {action: resize, params: {server: "{{ payload.server }}", flavor: "{{ payload.flavor }}"}}
    limits: {when_busy: wait, max_wait: 10m}
  - name: rescue-approved
    mode: approve
    when: {source: request, event: server.rescue.requested}
    do: {action: rescue, params: {server: "{{ payload.server }}"}}
  - name: resize-cooled
    when: {source: request, event: flavor.change.approved}
    do: {action: resize, params: {server: "{{ payload.server }}", flavor: "{{ payload.flavor }}"}}
    limits: {when_busy: wait, cooldown: 1h}
"""


def request(kind: str, request_id: str, **fields: Any) -> Event:
    return parse_message(
        {
            "type": kind,
            "id": request_id,
            "timestamp": now().isoformat(),
            "server": {"id": SID},
            **fields,
        },
        expect="request",
    )


class Held(World):
    """The engine's world, with policies that can be swapped and global switches."""

    def __init__(self, tmp_path: Path, policy_set: PolicySet, **switches: Any) -> None:
        super().__init__(tmp_path, policy_set)
        self.policy_set = policy_set
        self.engine = Engine(
            policies=lambda: self.policy_set,
            journal=self.journal,
            runner=self.runner,
            clock=now,
            reporter=self.results,
            **switches,
        )

    def resize(self, request_id: str, flavor: str, kind: str = "quota.request.approved") -> str:
        (op_id,) = self.engine.handle(
            request(kind, request_id, flavor=flavor), correlation_id=request_id, reply_to="answers"
        )
        return op_id

    def rescue(self, request_id: str = "rescue-1") -> str:
        (op_id,) = self.engine.handle(
            request("server.rescue.requested", request_id), reply_to="answers"
        )
        return op_id

    def decide(
        self, verb: str, op_id: str, request_id: str, *, redelivered: bool = False, **fields: Any
    ) -> list[str]:
        return self.engine.handle(
            decision(verb, op_id, request_id, **fields),
            correlation_id=request_id,
            reply_to="ops",
            redelivered=redelivered,
        )


@pytest.fixture
def held(tmp_path: Path) -> Iterator[Held]:
    world = Held(tmp_path, policies(POLICIES))
    world.runner.start()
    yield world
    world.runner.stop(timeout=5)
    world.journal.close()


def finish_resize(world: World, op_id: str) -> None:
    """Nova finishes the resize in flight and, once asked, its confirmation."""
    confirms = world.cloud.calls["confirm"]
    until(lambda: world.runner.waiting() == 1)
    world.cloud.nova_finishes(SID)
    world.nova("instance.resize_finish.end")
    until(lambda: world.cloud.calls["confirm"] == confirms + 1)
    until(lambda: world.runner.waiting() == 1)
    world.cloud.nova_finishes(SID)
    world.nova("instance.resize_confirm.end")
    until(lambda: world.journal.get(op_id).finished)


def finish_rescue(world: World, op_id: str) -> None:
    until(lambda: world.runner.waiting() == 1)
    world.cloud.nova_finishes(SID)
    world.nova("instance.rescue.end")
    until(lambda: world.journal.get(op_id).finished)


# -- when_busy: wait ----------------------------------------------------------------


def test_a_decision_for_a_busy_server_waits_in_the_journal_and_runs_after_the_first(
    held: Held,
) -> None:
    first = held.resize("r-1", "m1.large")
    second = held.resize("r-2", "m1.small")
    queued = held.journal.get(second)
    assert (queued.phase, queued.finished) == (QUEUED, False)
    until(lambda: held.runner.waiting() == 1)
    assert held.cloud.calls["resize"] == 1  # only the first reached Nova
    finish_resize(held, first)
    until(lambda: held.cloud.calls["resize"] == 2)
    finish_resize(held, second)
    one, two = held.journal.get(first), held.journal.get(second)
    assert (one.outcome, two.outcome) == ("confirmed", "confirmed")
    assert held.cloud.servers[SID].flavor == "m1.small"
    assert one.finished_at is not None
    assert two.state["released_at"] >= one.finished_at.isoformat()
    until(lambda: len(held.results.to("answers")) == 2)  # reported after it is journaled
    assert [a["outcome"] for a in held.results.to("answers")] == ["confirmed", "confirmed"]


def test_queued_decisions_run_first_come_first_served(held: Held) -> None:
    first = held.resize("r-1", "m1.large")
    second = held.resize("r-2", "m1.small")
    third = held.resize("r-3", "m1.large")
    finish_resize(held, first)
    until(lambda: held.journal.get(second).phase != QUEUED)
    assert held.journal.get(third).phase == QUEUED
    finish_resize(held, second)
    until(lambda: held.journal.get(third).phase != QUEUED)
    finish_resize(held, third)
    ends = [held.journal.get(op).finished_at for op in (first, second, third)]
    assert ends == sorted(ends)  # type: ignore[type-var]


def test_a_queued_decision_whose_wait_is_over_ends_expired_and_never_runs(held: Held) -> None:
    first = held.resize("r-1", "m1.large")
    second = held.resize("r-2", "m1.small")
    assert held.engine.expire_due(now() + timedelta(minutes=5)) == 0
    assert held.engine.expire_due(now() + timedelta(minutes=11)) == 1
    expired = held.journal.get(second)
    assert expired.outcome == "expired"
    assert "max_wait" in (expired.reason or "")
    finish_resize(held, first)
    assert held.cloud.calls["resize"] == 1
    until(lambda: len(held.results.to("answers")) == 2)  # reported after it is journaled
    assert [a["outcome"] for a in held.results.to("answers")] == ["expired", "confirmed"]


def test_a_released_decision_meets_the_cooldown_again(held: Held) -> None:
    first = held.resize("c-1", "m1.large", kind="flavor.change.approved")
    second = held.resize("c-2", "m1.small", kind="flavor.change.approved")
    assert held.journal.get(second).phase == QUEUED
    finish_resize(held, first)
    until(lambda: held.journal.get(second).finished)
    refused = held.journal.get(second)
    assert refused.outcome == "refused"
    assert (refused.reason or "").startswith("cooldown:")
    assert held.cloud.calls["resize"] == 1


def test_a_refuse_policy_still_refuses_a_busy_server(held: Held) -> None:
    held.resize("r-1", "m1.large")
    rescue = held.rescue()  # rescue-approved does not wait: the default is refuse
    assert held.journal.get(rescue).outcome == "refused"


def test_a_restart_keeps_queued_decisions_queued_and_starts_them_in_turn(tmp_path: Path) -> None:
    first_world = Held(tmp_path, policies(POLICIES))
    first_world.runner.start()
    first = first_world.resize("r-1", "m1.large")
    second = first_world.resize("r-2", "m1.small")
    until(lambda: first_world.runner.waiting() == 1)
    first_world.runner.stop(timeout=5)
    first_world.journal.close()

    world = Held(tmp_path, policies(POLICIES))
    world.cloud = first_world.cloud
    world.runner._cloud = first_world.cloud  # the same Nova
    world.runner.start()
    try:
        assert world.engine.resume() == 1  # the running resize; the queued one stays queued
        assert world.journal.get(second).phase == QUEUED
        world.cloud.nova_finishes(SID)
        world.nova("instance.resize_finish.end")
        until(lambda: world.cloud.calls["confirm"] == 1)
        world.cloud.nova_finishes(SID)
        world.nova("instance.resize_confirm.end")
        until(lambda: world.journal.get(first).finished)
        until(lambda: world.cloud.calls["resize"] == 2)
        finish_resize(world, second)
        assert world.journal.get(second).outcome == "confirmed"
    finally:
        world.runner.stop(timeout=5)
        world.journal.close()


# -- mode: approve ---------------------------------------------------------------------


def test_a_decision_awaiting_approval_touches_nothing_and_is_announced_with_its_plan(
    held: Held,
) -> None:
    op_id = held.rescue()
    operation = held.journal.get(op_id)
    assert (operation.phase, operation.finished) == (AWAITING_APPROVAL, False)
    assert sum(held.cloud.calls.values()) == 0  # not even a read
    (announced,) = held.results.to("answers")
    assert announced["outcome"] == AWAITING_APPROVAL
    assert announced["operation_id"] == op_id
    assert announced["plan"]["action"] == "rescue"
    assert announced["plan"]["server"]["id"] == SID
    assert announced["approval_until"] > now().isoformat()
    broadcast = [r for r, _, q in held.results.published if q is None]
    assert broadcast[0]["outcome"] == AWAITING_APPROVAL


def test_an_approved_operation_runs_and_the_approver_is_answered(held: Held) -> None:
    op_id = held.rescue()
    assert held.decide("approve", op_id, "a-1", reason="OPS-7") == []
    (answer,) = held.results.to("ops")
    assert (answer["decision"], answer["by"], answer["operation_id"]) == ("approve", "carol", op_id)
    finish_rescue(held, op_id)
    assert held.journal.get(op_id).outcome == "rescued"
    steps = [s.name for s in held.journal.steps(op_id)]
    assert steps[:2] == [AWAITING_APPROVAL, "approved"]
    assert held.journal.steps(op_id)[1].detail["reason"] == "OPS-7"
    until(lambda: len(held.results.to("answers")) == 2)  # reported after it is journaled
    assert [a["outcome"] for a in held.results.to("answers")] == [AWAITING_APPROVAL, "rescued"]


def test_a_rejected_operation_ends_rejected_without_touching_nova(held: Held) -> None:
    op_id = held.rescue()
    held.decide("reject", op_id, "a-1", reason="not now")
    operation = held.journal.get(op_id)
    assert (operation.outcome, operation.reason) == ("rejected", "rejected by carol: not now")
    assert sum(held.cloud.calls.values()) == 0
    assert held.results.to("ops")[0]["outcome"] == "rejected"


def test_no_answer_before_the_approval_timeout_ends_it_expired(held: Held) -> None:
    op_id = held.rescue()
    assert held.engine.expire_due(now() + timedelta(minutes=30)) == 0
    assert held.engine.expire_due(now() + timedelta(hours=2)) == 1
    operation = held.journal.get(op_id)
    assert (operation.outcome, operation.reason) == ("expired", "expired: no approval in time")
    with pytest.raises(BadMessage) as caught:
        held.decide("approve", op_id, "late-1")
    assert caught.value.reason == "operation_finished"
    assert sum(held.cloud.calls.values()) == 0


def test_an_operation_awaiting_approval_keeps_its_server_busy(held: Held) -> None:
    held.rescue()
    other = held.engine.handle(request("server.rescue.requested", "rescue-2"))[0]
    assert held.journal.get(other).reason == "busy: another operation is in flight on this server"
    queued = held.resize("r-1", "m1.large")  # a waiting policy queues behind it
    assert held.journal.get(queued).phase == QUEUED


def test_a_rejection_lets_the_next_queued_decision_run(held: Held) -> None:
    rescue = held.rescue()
    queued = held.resize("r-1", "m1.large")
    held.decide("reject", rescue, "a-1")
    until(lambda: held.cloud.calls["resize"] == 1)
    finish_resize(held, queued)
    assert held.journal.get(queued).outcome == "confirmed"


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("unknown", "unknown_operation"),
        ("running", "not_awaiting_approval"),
        ("finished", "operation_finished"),
    ],
)
def test_a_decision_on_an_operation_that_does_not_await_approval_is_bad_input(
    held: Held, target: str, reason: str
) -> None:
    op_id = "no-such-operation"
    if target == "running":
        op_id = held.resize("r-1", "m1.large")
    elif target == "finished":
        op_id = held.rescue()
        held.decide("reject", op_id, "a-0")
    with pytest.raises(BadMessage) as caught:
        held.decide("approve", op_id, "a-1")
    assert caught.value.reason == reason
    assert not held.journal.is_processed("request:a-1")


def test_a_decision_naming_another_server_is_refused(held: Held) -> None:
    op_id = held.rescue()
    other = "99999999-2222-4333-8444-555555555555"
    with pytest.raises(BadMessage) as caught:
        held.decide("approve", op_id, "a-1", server={"id": other})
    assert caught.value.reason == "server_mismatch"
    assert held.journal.get(op_id).phase == AWAITING_APPROVAL


def test_an_approval_the_bus_delivers_again_is_a_duplicate(held: Held) -> None:
    op_id = held.rescue()
    held.decide("approve", op_id, "a-1")
    assert held.decide("approve", op_id, "a-1", redelivered=True) == []
    assert held.engine.tally.snapshot().duplicates == {"request": 1}
    finish_rescue(held, op_id)
    assert held.cloud.calls["rescue"] == 1


@pytest.mark.parametrize("verb", ["approve", "reject"])
def test_a_decision_published_again_is_refused_as_replayed(held: Held, verb: str) -> None:
    op_id = held.rescue()
    held.decide(verb, op_id, "a-1")
    with pytest.raises(BadMessage) as caught:
        held.decide(verb, op_id, "a-1")
    assert caught.value.reason == "replayed"
    name = "approved" if verb == "approve" else "rejected"
    assert caught.value.detail.startswith(f"request id a-1 was accepted ({name} at ")
    assert f"operation {op_id}: " in caught.value.detail
    assert held.engine.tally.snapshot().duplicates == {}
    if verb == "approve":
        finish_rescue(held, op_id)
        assert held.cloud.calls["rescue"] == 1
    else:
        assert held.journal.get(op_id).outcome == "rejected"
        assert held.cloud.calls["rescue"] == 0


def test_approval_checks_the_guards_again(held: Held) -> None:
    op_id = held.rescue()
    held.policy_set = policies(POLICIES.replace("cooldown: 1h", "cooldown: 2h"))
    held.decide("approve", op_id, "a-1")
    finish_rescue(held, op_id)  # the same policy, reloaded: it runs
    second = held.engine.handle(request("server.rescue.requested", "rescue-2"))[0]
    held.policy_set = policies(POLICIES.split("  - name: rescue-approved")[0])
    held.cloud.servers[SID].vm_state = "active"
    held.decide("approve", second, "a-2")  # its policy is gone now
    refused = held.journal.get(second)
    assert (refused.outcome, refused.reason) == (
        "refused",
        "policy 'rescue-approved' is no longer loaded",
    )
    assert held.cloud.calls["rescue"] == 1


def test_a_restart_keeps_an_operation_awaiting_approval(tmp_path: Path) -> None:
    before = Held(tmp_path, policies(POLICIES))
    op_id = before.rescue()
    before.journal.close()
    world = Held(tmp_path, policies(POLICIES))
    world.runner.start()
    try:
        assert world.engine.resume() == 0
        assert world.journal.get(op_id).phase == AWAITING_APPROVAL
        assert sum(world.cloud.calls.values()) == 0
        world.decide("approve", op_id, "a-1")
        finish_rescue(world, op_id)
        assert world.journal.get(op_id).outcome == "rescued"
    finally:
        world.runner.stop(timeout=5)
        world.journal.close()


def test_a_restart_remembers_when_an_awaiting_operation_expires(tmp_path: Path) -> None:
    before = Held(tmp_path, policies(POLICIES))
    op_id = before.rescue()
    before.journal.close()
    world = Held(tmp_path, policies(POLICIES))
    try:
        world.engine.resume()
        assert world.engine.expire_due(now() + timedelta(hours=2)) == 1
        assert world.journal.get(op_id).outcome == "expired"
    finally:
        world.journal.close()


def test_the_global_switch_makes_every_acting_decision_await_approval(tmp_path: Path) -> None:
    world = Held(tmp_path, policies(POLICIES), global_approval=True)
    try:
        op_id = world.resize("r-1", "m1.large")
        assert world.journal.get(op_id).phase == AWAITING_APPROVAL
        assert world.results.to("answers")[0]["outcome"] == AWAITING_APPROVAL
    finally:
        world.journal.close()


def test_a_global_dry_run_wins_over_approval(tmp_path: Path) -> None:
    world = Held(
        tmp_path,
        policies(POLICIES),
        guard_settings=GuardSettings(dry_run=True),
        global_approval=True,
    )
    try:
        assert world.journal.get(world.rescue()).outcome == "dry_run"
    finally:
        world.journal.close()


def test_an_expiry_the_database_refuses_is_tried_again_at_the_next_turn(
    held: Held, monkeypatch: pytest.MonkeyPatch
) -> None:
    op_id = held.rescue()
    later = now() + timedelta(hours=2)
    with monkeypatch.context() as patched:

        def away(op: str) -> None:
            raise JournalError("the database is away")

        patched.setattr(held.journal, "get", away)
        assert held.engine.expire_due(later) == 0
    assert held.journal.get(op_id).phase == AWAITING_APPROVAL
    assert held.engine.expire_due(later) == 1
    assert held.journal.get(op_id).outcome == "expired"
