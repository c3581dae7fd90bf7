"""Handler threads: one server's events in order, every job reported exactly once."""

from __future__ import annotations

import queue
import random
import threading
import time
from collections.abc import Sequence
from datetime import datetime, timezone

import pytest

from nova_autopilot.bus.delivery import (
    ABANDONED,
    HANDLED,
    Batched,
    DeadLetter,
    Delivery,
    Job,
    Retry,
)
from nova_autopilot.bus.workers import Workers
from nova_autopilot.errors import BadMessage, TemporaryError
from nova_autopilot.events import Event

NOW = datetime(2026, 11, 25, tzinfo=timezone.utc)


def job(tag: int, server: str) -> Job:
    event = Event(source="nova", format="versioned", event_type="instance.update", payload={})
    delivery = Delivery(
        source="nova",
        queue="q",
        message_id=f"m-{tag}",
        redelivered=False,
        attempt=1,
        correlation_id=None,
        reply_to=None,
        headers={"server": server},
        received_at=NOW,
    )
    return Job(generation=0, tag=tag, body=b"{}", properties={}, delivery=delivery, event=event)


def collect(done: queue.SimpleQueue[list[Job]], count: int) -> list[Job]:
    jobs: list[Job] = []
    while len(jobs) < count:
        jobs.extend(done.get(timeout=10))
    return jobs


@pytest.mark.parametrize("batched", [False, True], ids=["one_at_a_time", "batched"])
def test_each_servers_events_reach_the_handler_in_delivery_order_across_threads(
    batched: bool,
) -> None:
    seen: dict[str, list[int]] = {}
    lock = threading.Lock()
    rng = random.Random(3)

    def handler(event: Event, delivery: Delivery) -> None:
        with lock:
            seen.setdefault(delivery.headers["server"], []).append(int(delivery.message_id[2:]))

    def many(items: Sequence[tuple[Event, Delivery]]) -> list[BaseException | None]:
        time.sleep(rng.random() / 1000)  # long enough for turns to queue on several threads
        for event, delivery in items:
            handler(event, delivery)
        return [None] * len(items)

    done: queue.SimpleQueue[list[Job]] = queue.SimpleQueue()
    workers = Workers(
        count=4,
        handler=Batched(many) if batched else handler,
        done=done.put,
        skip=lambda j: False,
        name="t",
    )
    workers.start()
    jobs = [job(tag, f"server-{rng.randrange(20)}") for tag in range(2000)]
    for start in range(0, len(jobs), 50):  # batches, as the consuming thread hands them over
        workers.submit([(j.delivery.headers["server"], j) for j in jobs[start : start + 50]])

    reported = collect(done, len(jobs))
    workers.stop(5)

    assert sorted(j.tag for j in reported) == list(range(2000))
    assert all(j.outcome is HANDLED for j in reported)
    for server, tags in seen.items():
        expected = [j.tag for j in jobs if j.delivery.headers["server"] == server]
        assert tags == expected


def test_a_skipped_job_comes_back_abandoned_without_calling_the_handler() -> None:
    calls: list[int] = []
    done: queue.SimpleQueue[list[Job]] = queue.SimpleQueue()
    workers = Workers(
        count=2,
        handler=lambda event, delivery: calls.append(1),
        done=done.put,
        skip=lambda j: j.tag % 2 == 0,
        name="t",
    )
    workers.start()
    workers.submit([(str(tag), job(tag, "s")) for tag in range(10)])

    reported = collect(done, 10)
    workers.stop(5)

    assert len(calls) == 5
    assert {j.tag for j in reported if j.outcome is ABANDONED} == {0, 2, 4, 6, 8}


def test_a_failing_handler_costs_its_message_and_not_the_thread() -> None:
    def handler(event: Event, delivery: Delivery) -> None:
        if delivery.message_id == "m-0":
            raise ZeroDivisionError("bug")

    done: queue.SimpleQueue[list[Job]] = queue.SimpleQueue()
    workers = Workers(count=1, handler=handler, done=done.put, skip=lambda j: False, name="t")
    workers.start()
    workers.submit([("s", job(0, "s")), ("s", job(1, "s"))])

    first, second = collect(done, 2)

    assert isinstance(first.outcome, DeadLetter)
    assert first.outcome.reason == "handler_error: ZeroDivisionError"
    assert second.outcome is HANDLED
    assert workers.alive()
    assert workers.stop(5)


def test_a_batched_handler_gets_what_queued_meanwhile_in_order_and_says_of_each() -> None:
    """While the handler decides one batch, the lists handed over meanwhile wait; the
    next call gets them all at once, in delivery order, and each job's outcome is
    what the handler said of it."""
    calls: list[list[int]] = []
    first_call = threading.Event()
    go_on = threading.Event()

    def many(items: Sequence[tuple[Event, Delivery]]) -> list[BaseException | None]:
        tags = [int(delivery.message_id[2:]) for _, delivery in items]  # type: ignore[index]
        calls.append(tags)
        if len(calls) == 1:
            first_call.set()
            go_on.wait(10)
        return [
            BadMessage("bad_payload", "odd")
            if tag == 7
            else TemporaryError("later")
            if tag == 8
            else None
            for tag in tags
        ]

    done: queue.SimpleQueue[list[Job]] = queue.SimpleQueue()
    workers = Workers(count=1, handler=Batched(many), done=done.put, skip=lambda j: False, name="t")
    workers.start()
    workers.submit([("s", job(0, "s")), ("s", job(1, "s"))])
    assert first_call.wait(10)
    for start in range(2, 10, 2):
        workers.submit([("s", job(start, "s")), ("s", job(start + 1, "s"))])
    go_on.set()

    reported = collect(done, 10)
    workers.stop(5)

    assert calls == [[0, 1], [2, 3, 4, 5, 6, 7, 8, 9]]
    outcomes = {j.tag: j.outcome for j in reported}
    assert isinstance(outcomes[7], DeadLetter)
    assert outcomes[7].reason == "bad_payload"
    assert isinstance(outcomes[8], Retry)
    assert all(outcomes[tag] is HANDLED for tag in (0, 1, 2, 3, 4, 5, 6, 9))


def test_a_batch_whose_call_fails_is_handled_one_message_at_a_time() -> None:
    sizes: list[int] = []

    def many(items: Sequence[tuple[Event, Delivery]]) -> list[BaseException | None]:
        sizes.append(len(items))
        if len(items) > 1:
            raise ZeroDivisionError("a bug of the batch")
        ((_, delivery),) = items
        return [ValueError("bug") if delivery.message_id == "m-1" else None]

    done: queue.SimpleQueue[list[Job]] = queue.SimpleQueue()
    workers = Workers(count=1, handler=Batched(many), done=done.put, skip=lambda j: False, name="t")
    workers.start()
    workers.submit([("s", job(tag, "s")) for tag in range(3)])

    reported = sorted(collect(done, 3), key=lambda j: j.tag)
    workers.stop(5)

    assert sizes == [3, 1, 1, 1]
    assert [j.outcome for j in reported][::2] == [HANDLED, HANDLED]
    assert isinstance(reported[1].outcome, DeadLetter)
    assert reported[1].outcome.reason == "handler_error: ValueError"


def test_a_batched_handlers_turn_is_one_call_on_one_thread_however_many_threads() -> None:
    """Spread over the threads by key, a turn of 40 servers made four calls."""
    calls: list[list[int]] = []

    def many(items: Sequence[tuple[Event, Delivery]]) -> list[BaseException | None]:
        calls.append([int(delivery.message_id[2:]) for _, delivery in items])  # type: ignore[index]
        return [None] * len(items)

    done: queue.SimpleQueue[list[Job]] = queue.SimpleQueue()
    workers = Workers(count=4, handler=Batched(many), done=done.put, skip=lambda j: False, name="t")
    workers.start()
    for start in (0, 40):
        handed = workers.submit(
            [(f"server-{tag}", job(tag, f"server-{tag}")) for tag in range(start, start + 40)]
        )
        assert handed == 1
        collect(done, 40)
    workers.stop(5)

    assert calls == [list(range(40)), list(range(40, 80))]


def test_a_server_held_by_a_busy_thread_waits_there_while_other_servers_go_to_another() -> None:
    """Server a's first event is being decided on one thread: its next event waits
    behind it on that thread, while server c's, in the same turn, is decided at once
    on another."""
    calls: list[list[str]] = []
    first_call, c_decided, go_on = threading.Event(), threading.Event(), threading.Event()

    def many(items: Sequence[tuple[Event, Delivery]]) -> list[BaseException | None]:
        names = [f"{delivery.headers['server']}{delivery.message_id[2:]}" for _, delivery in items]
        calls.append(names)
        if len(calls) == 1:
            first_call.set()
            go_on.wait(10)
        if any(name.startswith("c") for name in names):
            c_decided.set()
        return [None] * len(items)

    done: queue.SimpleQueue[list[Job]] = queue.SimpleQueue()
    workers = Workers(count=2, handler=Batched(many), done=done.put, skip=lambda j: False, name="t")
    workers.start()
    workers.submit([("a", job(1, "a")), ("b", job(2, "b"))])
    assert first_call.wait(10)
    assert workers.submit([("c", job(3, "c")), ("a", job(4, "a"))]) == 2
    assert c_decided.wait(10)  # while a1 and b2 are still being decided
    assert calls == [["a1", "b2"], ["c3"]]
    go_on.set()
    collect(done, 4)
    workers.stop(5)

    assert calls == [["a1", "b2"], ["c3"], ["a4"]]
