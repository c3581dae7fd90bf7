"""Time for the sandbox: the wall clock it stamps records with and the clock its timers run on.

:class:`SystemClock` is the real thing. :class:`ManualClock` only moves when a
test calls :meth:`ManualClock.advance`, so that long waits (Nova's
``resize_confirm_window``, slow phases) are tested without waiting.
:class:`JumpClock` is real time whose timers a test or a benchmark can move
forward at once with :meth:`JumpClock.jump` (the wall clock stays real).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Protocol


class Clock(Protocol):
    """What the sandbox needs to know about time."""

    def now(self) -> datetime:
        """The current wall-clock time, timezone-aware UTC."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (timers run on it)."""

    def on_advance(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` whenever this clock jumps forward by itself (never, for real time)."""


class SystemClock:
    """Real time."""

    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    def monotonic(self) -> float:
        return time.monotonic()

    def on_advance(self, callback: Callable[[], None]) -> None:
        """Real time advances by itself; nobody needs telling."""


class _Wakes:
    """A clock that moves when told to: each move wakes whoever waits on it (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[], None]] = []

    def on_advance(self, callback: Callable[[], None]) -> None:
        with self._lock:
            self._callbacks.append(callback)

    def _move(self, seconds: float, forward: Callable[[float], None]) -> None:
        """``forward(seconds)`` under the lock, then every callback (outside it, so
        that a callback can read the clock)."""
        if seconds < 0:
            raise ValueError("a clock cannot go back")
        with self._lock:
            forward(seconds)
            callbacks = list(self._callbacks)
        for callback in callbacks:
            callback()


class ManualClock(_Wakes):
    """A clock that stands still until told to move (thread-safe)."""

    def __init__(self, start: datetime | None = None) -> None:
        super().__init__()
        self._now = start or datetime(2026, 1, 1, tzinfo=timezone.utc)
        self._elapsed = 0.0

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def monotonic(self) -> float:
        with self._lock:
            return self._elapsed

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` and wake whoever waits on this clock."""
        self._move(seconds, self._forward)

    def _forward(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)
        self._elapsed += seconds


class JumpClock(_Wakes, SystemClock):
    """Real time whose timers can be moved forward at once (thread-safe).

    :meth:`now` is the real wall clock; :meth:`monotonic` is the real monotonic
    clock plus every :meth:`jump` so far.
    """

    def __init__(self) -> None:
        super().__init__()
        self._offset = 0.0

    def monotonic(self) -> float:
        with self._lock:
            return time.monotonic() + self._offset

    def jump(self, seconds: float) -> None:
        """Move the timers forward by ``seconds`` and wake whoever waits on this clock."""
        self._move(seconds, self._forward)

    def _forward(self, seconds: float) -> None:
        self._offset += seconds
