"""The pace of Nova write calls: a token bucket shared by every operation, with
a fake clock (that every write of the cloud edge passes it: test_client)."""

from __future__ import annotations

import threading

import pytest

from nova_autopilot.cloud.pacing import WriteLimiter
from nova_autopilot.errors import CloudUnavailable, TemporaryError


class FakeTime:
    """A clock that moves only when someone sleeps (or the test says so)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def limiter(rate: float, burst: int, time: FakeTime) -> WriteLimiter:
    return WriteLimiter(rate, burst, clock=time.clock, sleep=time.sleep)


def test_a_burst_goes_at_once_then_writes_are_paced_at_the_rate() -> None:
    time = FakeTime()
    writes = limiter(2.0, 3, time)
    waits = [writes.acquire("resize", max_wait_s=60) for _ in range(6)]
    assert waits == [0.0, 0.0, 0.0, 0.5, 0.5, 0.5]
    assert time.now == pytest.approx(1001.5)


def test_a_quiet_spell_gives_back_the_burst_but_never_more() -> None:
    time = FakeTime()
    writes = limiter(2.0, 3, time)
    for _ in range(3):
        writes.acquire("resize", max_wait_s=60)
    time.now += 3600  # an hour without writes: still only the burst at once
    waits = [writes.acquire("confirm_resize", max_wait_s=60) for _ in range(5)]
    assert waits == [0.0, 0.0, 0.0, 0.5, 0.5]


def test_a_slow_caller_does_not_wait_at_all() -> None:
    time = FakeTime()
    writes = limiter(1.0, 1, time)
    for _ in range(4):
        assert writes.acquire("lock", max_wait_s=60) == 0.0
        time.now += 1.0
    assert time.slept == []


def test_a_write_that_would_wait_too_long_fails_as_temporary_and_reserves_nothing() -> None:
    time = FakeTime()
    writes = limiter(0.1, 1, time)  # one write every 10 s
    writes.acquire("resize", max_wait_s=60)
    with pytest.raises(CloudUnavailable) as caught:
        writes.acquire("rescue", max_wait_s=5)
    assert isinstance(caught.value, TemporaryError)
    assert "would wait 10.0 s, more than the 5 s allowed" in str(caught.value)
    # The refused call took no turn: the next caller's turn is still 10 s after the first.
    assert writes.acquire("rescue", max_wait_s=60) == pytest.approx(10.0)


def test_concurrent_callers_each_get_their_own_turn() -> None:
    time = FakeTime()
    lock = threading.Lock()
    waits: list[float] = []
    writes = WriteLimiter(4.0, 2, clock=time.clock, sleep=lambda s: None)  # the clock stands still

    def caller() -> None:
        for _ in range(50):
            wait = writes.acquire("resize", max_wait_s=1000)
            with lock:
                waits.append(wait)

    threads = [threading.Thread(target=caller) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(waits) == 400
    # Two turns at once, then one every 0.25 s: no turn was handed out twice.
    expected = [0.0, 0.0] + [0.25 * k for k in range(1, 399)]
    assert sorted(waits) == pytest.approx(expected)
    assert writes.calls == 400


def test_bad_rates_and_bursts_are_refused() -> None:
    with pytest.raises(ValueError, match="rate must be positive"):
        WriteLimiter(0, 1)
    with pytest.raises(ValueError, match="burst must be at least 1"):
        WriteLimiter(1.0, 0)
