"""Handler threads: one server's events in order, every job reported exactly once."""

from __future__ import annotations

import queue
import random
import threading
from datetime import datetime, timezone

from nova_autopilot.bus.delivery import ABANDONED, HANDLED, DeadLetter, Delivery, Job
from nova_autopilot.bus.workers import Workers
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


def test_each_servers_events_reach_the_handler_in_delivery_order_across_threads() -> None:
    seen: dict[str, list[int]] = {}
    lock = threading.Lock()

    def handler(event: Event, delivery: Delivery) -> None:
        with lock:
            seen.setdefault(delivery.headers["server"], []).append(int(delivery.message_id[2:]))

    done: queue.SimpleQueue[list[Job]] = queue.SimpleQueue()
    workers = Workers(count=4, handler=handler, done=done.put, skip=lambda j: False, name="t")
    workers.start()
    rng = random.Random(3)
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
