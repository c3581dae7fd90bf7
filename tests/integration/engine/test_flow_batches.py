"""Group commit: the messages at hand decided together (``Engine.handle_many``), on a
real journal (SQLite), decide exactly as one message after the other would: the same
outcomes, the same refusals for the same guards, the same duplicates, in one journal
transaction; a message that fails fails alone, and a batch that cannot be written is
decided one message at a time."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from nova_autopilot.engine.flow import Engine, Incoming
from nova_autopilot.errors import BadMessage
from nova_autopilot.events import Event
from nova_autopilot.guards import GuardSettings
from nova_autopilot.journal import JournalError
from nova_autopilot.policies.model import Budget
from tests.integration.engine.test_flow_guards import World
from tests.unit.policy_helpers import nova_event, request_event

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
POLICIES = """
policies:
  - name: rescue-on-error
    when: {source: nova, event: instance.update, match: {field: payload.state, equals: error}}
    do: {action: rescue, params: {server: "{{ instance_id }}"}}
    limits: {max_concurrent: 4, loop: {max: 2, per: 1h}}
  - name: watch-errors
    mode: dry-run
    when: {source: nova, event: instance.update, match: {field: payload.state, equals: error}}
    do: {action: rescue, params: {server: "{{ instance_id }}"}}
  - name: reboot-queued
    when: {source: nova, event: instance.update, match: {field: payload.state, equals: stopped}}
    do: {action: rescue, params: {server: "{{ instance_id }}"}}
    limits: {when_busy: wait}
  - name: grow
    when: {source: request, event: quota.request.approved}
    do: {action: resize, params: {server: "{{ payload.server }}", flavor: m1.large}}
"""
SETTINGS = GuardSettings(
    max_concurrent=7,
    budgets={"host": Budget(3, 3600), "zone": Budget(5, 3600), "all": Budget(9, 3600)},
)


def what_became(world: World, outcome: list[str] | Exception) -> Any:
    """What a message led to, without the ids that differ from world to world."""
    if isinstance(outcome, Exception):
        return type(outcome).__name__, str(outcome)
    found = [world.journal.get(op_id) for op_id in outcome]
    return sorted((o.policy, o.outcome, o.reason, o.phase, o.server_id) for o in found)


@pytest.fixture
def worlds(tmp_path: Path) -> Iterator[tuple[World, World]]:
    one = World(tmp_path / "one", SETTINGS, POLICIES)
    many = World(tmp_path / "many", SETTINGS, POLICIES)
    yield one, many
    one.journal.close()
    many.journal.close()


def server(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def messages(seed: int, count: int = 60) -> list[Event]:
    """Errors, stops and requests about a few servers on a few hosts, some sent twice."""
    rng = random.Random(seed)
    events: list[Event] = []
    for n in range(count):
        if events and rng.random() < 0.1:
            events.append(rng.choice(events))  # a copy delivered again
            continue
        number = rng.randrange(8)
        if rng.random() < 0.15:
            events.append(request_event(id=f"r-{seed}-{n}", server={"id": server(number)}))
            continue
        events.append(
            nova_event(
                "instance.update",
                uuid=server(number),
                state=rng.choice(["error", "error", "stopped", "active"]),
                host=f"compute-{number % 3}",
                availability_zone=f"az-{number % 2}",
            )
        )
    return events


def one_by_one(engine: Engine, events: list[Event]) -> list[list[str] | Exception]:
    out: list[list[str] | Exception] = []
    for event in events:
        try:
            out.append(engine.handle(event, redelivered=True))
        except Exception as exc:  # noqa: BLE001 - compared with what the batch says
            out.append(exc)
    return out


def in_batches(engine: Engine, events: list[Event], seed: int) -> list[list[str] | Exception]:
    rng = random.Random(seed)
    out: list[list[str] | Exception] = []
    start = 0
    while start < len(events):
        size = rng.randint(1, 25)
        chunk = events[start : start + size]
        out += engine.handle_many([Incoming(e, redelivered=True) for e in chunk])
        start += size
    return out


@pytest.mark.parametrize("seed", range(6))
def test_a_batch_decides_as_one_message_after_the_other_would(
    worlds: tuple[World, World], seed: int
) -> None:
    one, many = worlds
    events = messages(seed)

    expected = [what_became(one, o) for o in one_by_one(one.engine, events)]
    got = [what_became(many, o) for o in in_batches(many.engine, events, seed)]

    assert got == expected
    decided = [d for d in expected if d and isinstance(d, list)]
    outcomes = {row[1] for d in decided for row in d}
    assert {None, "refused", "dry_run"} <= outcomes  # the guards had something to do
    assert many.engine.tally.snapshot().refusals == one.engine.tally.snapshot().refusals


def test_a_batch_is_one_journal_transaction(
    worlds: tuple[World, World], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, many = worlds
    writes: list[int] = []
    accept_many = many.journal.accept_many

    def counted(messages: Any, **kwargs: Any) -> Any:
        writes.append(len(messages))
        return accept_many(messages, **kwargs)

    monkeypatch.setattr(many.journal, "accept_many", counted)
    monkeypatch.setattr(many.journal, "accept", lambda **_: pytest.fail("accepted alone"))
    events = [
        nova_event(uuid=server(n), state="error", host="h", availability_zone="z")
        for n in range(20)
    ]

    decided = many.engine.handle_many([Incoming(e) for e in events])

    assert writes == [20]
    assert all(isinstance(d, list) and len(d) == 2 for d in decided)  # rescue and watch


def test_placements_are_read_once_a_batch_and_only_when_an_event_does_not_say_them(
    worlds: tuple[World, World], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nova's notifications say their server's host and zone: a batch of them reads
    no placement; one that does not say them reads the batch's servers' in one read."""
    _, many = worlds
    reads: list[set[str]] = []
    placements = many.journal.placements

    def counted(server_ids: Any) -> Any:
        reads.append(set(server_ids))
        return placements(server_ids)

    monkeypatch.setattr(many.journal, "placements", counted)
    placed = [
        nova_event(uuid=server(n), state="error", host=f"compute-{n}", availability_zone="z")
        for n in range(5)
    ]
    many.engine.handle_many([Incoming(e) for e in placed])
    assert reads == []

    # Server 1's host is known from its operation above; servers 6 and 7 have none.
    unplaced = [nova_event(uuid=server(n), state="error") for n in (1, 6)]
    decided = many.engine.handle_many([Incoming(e) for e in [*unplaced, placed[2]]])

    assert reads == [{server(1), server(2), server(6)}]
    first = many.journal.get(decided[0][0])  # type: ignore[index]
    assert (first.host, first.availability_zone) == ("compute-1", "z")
    assert many.journal.get(decided[1][0]).host is None  # type: ignore[index]


def test_a_message_that_fails_fails_alone(
    worlds: tuple[World, World], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, many = worlds
    events = [nova_event(uuid=server(n), state="error") for n in range(3)]
    notify = many.runner.notify

    def notify_or_fail(event: Event) -> int:
        if event is events[1]:
            raise BadMessage("bad_payload", "this one")
        return notify(event)

    monkeypatch.setattr(many.runner, "notify", notify_or_fail)

    first, second, third = many.engine.handle_many([Incoming(e) for e in events])

    assert isinstance(second, BadMessage)
    assert second.reason == "bad_payload"
    assert isinstance(first, list)
    assert isinstance(third, list)
    assert len(first) == len(third) == 2


def test_a_batch_the_journal_does_not_take_is_decided_one_message_at_a_time(
    worlds: tuple[World, World], monkeypatch: pytest.MonkeyPatch
) -> None:
    one, many = worlds
    events = messages(seed=11, count=30)

    def refuse(*_: Any, **__: Any) -> Any:
        raise JournalError("journal database is locked")

    monkeypatch.setattr(many.journal, "accept_many", refuse)

    got = [
        what_became(many, o)
        for o in many.engine.handle_many([Incoming(e, redelivered=True) for e in events])
    ]

    assert got == [what_became(one, o) for o in one_by_one(one.engine, events)]


def test_batches_decided_at_once_by_several_threads_keep_the_caps_exact(tmp_path: Path) -> None:
    """Four threads, ten new errors each on servers of their own, the policy's cap of
    4 operations at once: the batches are recorded together (group commit), each
    decision counted for the next, so exactly 4 run."""
    world = World(tmp_path, GuardSettings(), POLICIES)
    start = threading.Barrier(4)
    results: list[list[list[str] | Exception]] = [[] for _ in range(4)]

    def decide(index: int) -> None:
        events = [nova_event(uuid=server(index * 100 + n), state="error") for n in range(10)]
        start.wait()
        results[index] = world.engine.handle_many([Incoming(e) for e in events])

    threads = [threading.Thread(target=decide, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    decided = [op_id for batch in results for ids in batch for op_id in ids]  # type: ignore[union-attr]
    operations = [world.journal.get(op_id) for op_id in decided]
    rescues = [o for o in operations if o.policy == "rescue-on-error"]
    assert len(rescues) == 40
    assert sum(o.outcome is None for o in rescues) == 4
    refusals = {o.reason.split(":")[0] for o in rescues if o.outcome == "refused"}  # type: ignore[union-attr]
    assert refusals == {"concurrency(policy)"}
    assert len(world.runner.submitted) == 4
    world.journal.close()
