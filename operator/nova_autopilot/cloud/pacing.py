"""The pace of Nova write calls: one token bucket that every write of every
operation waits on, so that the daemon never sends Nova more writes than
``[guards] nova_write_rate`` and ``nova_write_burst`` allow; reads are never
paced."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from nova_autopilot.errors import CloudUnavailable


class WriteLimiter:
    """A thread-safe token bucket for Nova write calls: ``rate`` calls per second
    on average, up to ``burst`` at once after a quiet spell.

    Each call reserves the next free moment in arrival order (so waiting callers
    are served first come, first served) and sleeps until then. A call that would
    have to wait longer than its bound reserves nothing and raises
    ``CloudUnavailable``, a temporary error: the operation retries later instead
    of failing. ``clock`` and ``sleep`` are injectable for tests.
    """

    def __init__(
        self,
        rate: float,
        burst: int = 1,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"a write rate must be positive, got {rate}")
        if burst < 1:
            raise ValueError(f"a burst must be at least 1, got {burst}")
        self.rate = rate
        self.burst = burst
        self._interval = 1.0 / rate
        self._tolerance = (burst - 1) * self._interval
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next: float | None = None  # the earliest moment the next call may go
        self.calls = 0
        self.waited_s = 0.0

    def acquire(self, call: str, *, max_wait_s: float) -> float:
        """Wait for this call's turn; the seconds waited."""
        with self._lock:
            now = self._clock()
            earliest = now - self._tolerance  # unused credit never exceeds the burst
            at = earliest if self._next is None else max(self._next, earliest)
            wait = max(0.0, at - now)
            if wait > max_wait_s:
                raise CloudUnavailable(
                    f"Nova write rate limit: {call} would wait {wait:.1f} s, "
                    f"more than the {max_wait_s:g} s allowed",
                    call=call,
                )
            self._next = at + self._interval
            self.calls += 1
            self.waited_s += wait
        if wait > 0:
            self._sleep(wait)
        return wait
