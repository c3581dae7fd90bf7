"""The sandbox's clocks: :class:`JumpClock`, real time whose timers jump forward on demand."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest

from nova_autopilot.sandbox.clock import JumpClock, SystemClock
from nova_autopilot.sandbox.scheduler import Flow, Scheduler
from tests.unit.sandbox_support import running_scheduler

#: Room for a slow machine between two readings of real time.
SLACK_S = 30.0


def assert_ahead(clock: JumpClock, seconds: float) -> None:
    """``clock``'s timers are ``seconds`` ahead of real time (give or take a float's last
    digit, plus the time between the two readings)."""
    real = time.monotonic()
    assert seconds - 1e-6 <= clock.monotonic() - real < seconds + SLACK_S


def test_a_jump_moves_monotonic_forward_by_its_seconds() -> None:
    clock = JumpClock()
    assert_ahead(clock, 0.0)  # real time until a jump
    before = clock.monotonic()
    clock.jump(3600.0)
    after = clock.monotonic()
    assert 3600.0 - 1e-6 <= after - before < 3600.0 + SLACK_S
    clock.jump(0.5)
    assert_ahead(clock, 3600.5)


def test_monotonic_keeps_running_in_real_time_between_jumps() -> None:
    clock = JumpClock()
    clock.jump(10.0)
    first = clock.monotonic()
    time.sleep(0.05)
    assert clock.monotonic() - first >= 0.05


def test_now_stays_the_real_wall_clock_after_a_jump() -> None:
    clock = JumpClock()
    clock.jump(3600.0)
    before = datetime.now(timezone.utc)
    now = clock.now()
    after = datetime.now(timezone.utc)
    assert now.utcoffset() == timedelta(0)
    assert before <= now <= after


def test_a_jump_calls_every_callback_once() -> None:
    clock = JumpClock()
    calls: list[str] = []
    clock.on_advance(lambda: calls.append("a"))
    clock.on_advance(lambda: calls.append("b"))
    clock.jump(1.0)
    assert calls == ["a", "b"]
    clock.jump(2.0)
    assert calls == ["a", "b", "a", "b"]


def test_a_callback_sees_the_jumped_time_and_may_read_the_clock() -> None:
    clock = JumpClock()
    start = clock.monotonic()
    seen: list[float] = []
    clock.on_advance(lambda: seen.append(clock.monotonic()))  # no deadlock on the clock's lock
    clock.jump(100.0)
    assert len(seen) == 1
    assert seen[0] - start >= 100.0 - 1e-6


def test_a_negative_jump_is_refused_and_changes_nothing() -> None:
    clock = JumpClock()
    calls: list[int] = []
    clock.on_advance(lambda: calls.append(1))
    clock.jump(50.0)
    with pytest.raises(ValueError, match="cannot go back"):
        clock.jump(-1.0)
    assert calls == [1]
    assert_ahead(clock, 50.0)


def test_jumps_from_several_threads_all_count() -> None:
    clock = JumpClock()
    calls: list[int] = []
    clock.on_advance(lambda: calls.append(1))

    def jumps() -> None:
        for _ in range(100):
            clock.jump(1.0)

    threads = [threading.Thread(target=jumps) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert not any(thread.is_alive() for thread in threads)
    assert_ahead(clock, 800.0)
    assert len(calls) == 800


def test_it_is_a_system_clock() -> None:
    assert isinstance(JumpClock(), SystemClock)


@pytest.fixture
def clock() -> JumpClock:
    return JumpClock()


@pytest.fixture
def scheduler(clock: JumpClock) -> Iterator[Scheduler]:
    with running_scheduler(clock) as running:
        yield running


def test_a_jump_runs_a_long_timer_of_the_scheduler_at_once(
    clock: JumpClock, scheduler: Scheduler
) -> None:
    ran = threading.Event()

    def slow() -> Flow:
        yield 3600.0
        ran.set()

    scheduler.spawn("slow", slow())
    assert not ran.wait(0.1)
    clock.jump(3600.0)
    assert ran.wait(5.0)
