"""Delayed retries: when a message comes back after a temporary failure.

On RabbitMQ a retried message is published to a delay queue, one per delay
(``<queue>.retry.30s``), whose message TTL dead-letters it back to the work
queue through the default exchange: the wait survives a restart of the daemon
and never blocks a consumer, and only the daemon's own queue gets the message
back. The in-memory broker of the demo has no TTL: :class:`LocalDelayer`
keeps the message in the process instead, and puts every waiting message back
at once when the bus stops, so a stop loses nothing there either.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["LocalDelayer", "RetryPlan"]


@dataclass(frozen=True, slots=True)
class RetryPlan:
    """``delays[i]`` is the wait before delivery ``i + 2``; after the last one
    the message is dead-lettered (``retries_exhausted``). No delays: the first
    temporary failure dead-letters."""

    delays: tuple[float, ...] = ()

    @classmethod
    def of(cls, delays: Sequence[float]) -> RetryPlan:
        if any(delay <= 0 for delay in delays):
            raise ValueError(f"retry delays must be positive, got {list(delays)}")
        return cls(tuple(float(delay) for delay in delays))

    def delay_after(self, attempt: int) -> float | None:
        """The wait after delivery number ``attempt`` failed, or None when the
        retries are exhausted."""
        if 1 <= attempt <= len(self.delays):
            return self.delays[attempt - 1]
        return None


@dataclass(order=True, slots=True)
class _Waiting:
    due: float
    seq: int
    body: bytes = field(compare=False)
    properties: dict[str, Any] = field(compare=False)


class LocalDelayer:
    """In-process delays for brokers without message TTL (``memory://``).

    Only the consuming thread uses it: :meth:`add` when a retry is decided,
    :meth:`due` on each turn of its loop, :meth:`drain` when it stops.
    """

    def __init__(self, *, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._heap: list[_Waiting] = []
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, delay: float, body: bytes, properties: dict[str, Any]) -> None:
        heapq.heappush(
            self._heap, _Waiting(self._clock() + delay, next(self._seq), body, properties)
        )

    def due(self) -> list[tuple[bytes, dict[str, Any]]]:
        now = self._clock()
        ready = []
        while self._heap and self._heap[0].due <= now:
            item = heapq.heappop(self._heap)
            ready.append((item.body, item.properties))
        return ready

    def drain(self) -> list[tuple[bytes, dict[str, Any]]]:
        ready = [(item.body, item.properties) for item in sorted(self._heap)]
        self._heap.clear()
        return ready
