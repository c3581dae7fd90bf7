"""One thread that drives every state transition of the sandbox, at the time it is due.

A *flow* is a generator: the code between two ``yield`` statements is one
step (what one Nova service does at one moment), and the value it yields is
how many seconds to wait before the next step. Steps run one at a time in
the scheduler's thread, under the sandbox's state lock, so a flow reads like
the sequence Nova's services go through and never races an API request::

    def stop(server):
        yield durations.power_off
        server.vm_state = STOPPED
        ...

Flows are kept under a key (the server's id), so that deleting a server can
cancel whatever was still going on for it.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

from nova_autopilot.sandbox.clock import Clock

Flow = Generator[float, None, None]
"""A state transition sequence: yields the seconds to wait before its next step."""

_MAX_WAIT = 0.5
"""Longest the thread sleeps without looking again (a manual clock may have moved)."""


@dataclass(order=True)
class _Entry:
    due: float
    seq: int
    key: str = field(compare=False)
    flow: Flow = field(compare=False)
    cancelled: bool = field(default=False, compare=False)


class Scheduler:
    """Runs flows step by step at their due time, in one background thread."""

    def __init__(
        self,
        *,
        clock: Clock,
        lock: threading.RLock,
        on_error: Callable[[str, BaseException], None],
    ) -> None:
        self._clock = clock
        self._state_lock = lock
        self._on_error = on_error
        self._cond = threading.Condition()
        self._heap: list[_Entry] = []
        self._seq = itertools.count()
        self._current: _Entry | None = None
        self._stopping = False
        self._thread: threading.Thread | None = None
        clock.on_advance(self._wake)

    # -- life cycle ------------------------------------------------------------------

    def start(self) -> None:
        with self._cond:
            if self._thread is not None:
                return
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name="sandbox-scheduler", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            thread = self._thread
            self._thread = None
        if thread is not None:
            thread.join(timeout)

    # -- flows -----------------------------------------------------------------------

    def spawn(self, key: str, flow: Flow, delay: float = 0.0) -> None:
        """Run ``flow``'s first step after ``delay`` seconds."""
        self._push(key, flow, self._clock.monotonic() + max(0.0, delay))

    def _push(self, key: str, flow: Flow, due: float) -> None:
        with self._cond:
            heapq.heappush(self._heap, _Entry(due, next(self._seq), key, flow))
            self._cond.notify_all()

    def cancel(self, key: str) -> int:
        """Drop every pending flow kept under ``key``; returns how many were dropped.

        A step of that flow that is about to run is dropped too.
        """
        with self._cond:
            dropped = [entry for entry in self._heap if entry.key == key]
            if dropped:
                self._heap = [entry for entry in self._heap if entry.key != key]
                heapq.heapify(self._heap)
            if self._current is not None and self._current.key == key:
                self._current.cancelled = True
        for entry in dropped:
            entry.flow.close()
        return len(dropped)

    def pending(self, key: str | None = None) -> int:
        """How many flows are waiting for their next step (for ``key``, or in all)."""
        with self._cond:
            return sum(1 for entry in self._heap if key is None or entry.key == key)

    def settled(self) -> bool:
        """True when no step is running and none is due at this moment."""
        with self._cond:
            return self._settled()

    def _settled(self) -> bool:
        now = self._clock.monotonic()
        return self._current is None and not (self._heap and self._heap[0].due <= now)

    def wait_settled(self, timeout: float) -> bool:
        """Wait until :meth:`settled`; False if ``timeout`` seconds passed first."""
        with self._cond:
            return self._cond.wait_for(self._settled, timeout)

    # -- the thread ------------------------------------------------------------------

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _next_due(self) -> _Entry | None:
        with self._cond:
            while not self._stopping:
                now = self._clock.monotonic()
                if self._heap and self._heap[0].due <= now:
                    self._current = heapq.heappop(self._heap)
                    return self._current
                wait = _MAX_WAIT if not self._heap else min(_MAX_WAIT, self._heap[0].due - now)
                self._cond.wait(wait)
            return None

    def _run(self) -> None:
        while True:
            entry = self._next_due()
            if entry is None:
                return
            try:
                self._step(entry)
            finally:
                with self._cond:
                    self._current = None
                    self._cond.notify_all()

    def _step(self, entry: _Entry) -> None:
        delay: Any
        with self._state_lock:
            with self._cond:
                cancelled = entry.cancelled
            if cancelled:
                entry.flow.close()
                return
            try:
                delay = next(entry.flow)
            except StopIteration:
                return
            except Exception as exc:  # noqa: BLE001 (a broken flow must not stop the others)
                self._on_error(entry.key, exc)
                return
            # Still under the state lock: a cancel() cannot slip in between. The next
            # step is due ``delay`` after this one was due, however late it ran.
            self._push(entry.key, entry.flow, entry.due + max(0.0, float(delay)))
