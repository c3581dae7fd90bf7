"""When a temporarily failed message comes back."""

from __future__ import annotations

import pytest

from nova_autopilot.bus.retry import LocalDelayer, RetryPlan


def test_each_failed_attempt_waits_for_the_next_delay_until_there_is_none() -> None:
    plan = RetryPlan.of([5, 30, 120])

    assert [plan.delay_after(attempt) for attempt in (1, 2, 3, 4)] == [5, 30, 120, None]


def test_without_delays_the_first_temporary_failure_is_final() -> None:
    assert RetryPlan.of([]).delay_after(1) is None


def test_delays_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        RetryPlan.of([5, 0])


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_local_delayer_releases_messages_when_they_are_due_in_due_order() -> None:
    clock = FakeClock()
    delayer = LocalDelayer(clock=clock)
    delayer.add(2.0, b"late", {})
    delayer.add(1.0, b"early", {})

    assert delayer.due() == []
    clock.now += 1.5
    assert delayer.due() == [(b"early", {})]
    clock.now += 1.0
    assert delayer.due() == [(b"late", {})]
    assert len(delayer) == 0


def test_draining_the_local_delayer_releases_everything_at_once() -> None:
    delayer = LocalDelayer(clock=FakeClock())
    delayer.add(30.0, b"b", {"headers": {}})
    delayer.add(5.0, b"a", {})

    assert delayer.drain() == [(b"a", {}), (b"b", {"headers": {}})]
    assert len(delayer) == 0
