"""Counts the engine keeps of what it saw and decided, for the metrics and ``status``.

Plain, thread-safe Python: the bus calls the engine from several worker threads
and the runner reports outcomes from its own. The metrics layer reads a
:class:`TallySnapshot` at scrape time; nothing here knows about Prometheus.

Operation durations are kept as a distribution over fixed bounds
(:data:`DURATION_BOUNDS`, seconds, suited to operations of 1 s to 1 h): a count
per bound of the durations at or below it, their number and their sum, so the
memory used never grows with the number of operations.
"""

from __future__ import annotations

import bisect
import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

__all__ = ["DURATION_BOUNDS", "Distribution", "Tally", "TallySnapshot"]

DURATION_BOUNDS: Final = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0)


@dataclass(frozen=True, slots=True)
class Distribution:
    """Observations of one kind: ``cumulative[i]`` of them were at most ``bounds[i]``."""

    bounds: tuple[float, ...]
    cumulative: tuple[int, ...]
    count: int
    total: float


class _Buckets:
    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * len(bounds)  # per bucket, not cumulative
        self.count = 0
        self.total = 0.0

    def observe(self, value: float) -> None:
        index = bisect.bisect_left(self.bounds, value)
        if index < len(self.bounds):
            self.counts[index] += 1
        self.count += 1
        self.total += value

    def frozen(self) -> Distribution:
        running, cumulative = 0, []
        for n in self.counts:
            running += n
            cumulative.append(running)
        return Distribution(self.bounds, tuple(cumulative), self.count, self.total)


@dataclass(frozen=True, slots=True)
class TallySnapshot:
    """The counts at one moment; keys are label tuples."""

    #: (source, event type) of every event the engine was given.
    received: Mapping[tuple[str, str], int] = field(default_factory=dict)
    #: (source, event type) of the events at least one policy matched.
    matched: Mapping[tuple[str, str], int] = field(default_factory=dict)
    #: (policy, decision): run, dry_run, refused, queue, await_approval.
    decisions: Mapping[tuple[str, str], int] = field(default_factory=dict)
    #: guard name -> refusals (busy, cooldown, budget, parameters...).
    refusals: Mapping[str, int] = field(default_factory=dict)
    #: (action, outcome) of every finished operation, refused and dry-run ones included.
    finished: Mapping[tuple[str, str], int] = field(default_factory=dict)
    #: (action, outcome) -> how long the operations that ran took, created to finished.
    durations: Mapping[tuple[str, str], Distribution] = field(default_factory=dict)
    #: source -> messages already processed (same message id or request id).
    duplicates: Mapping[str, int] = field(default_factory=dict)
    #: (source, event type) -> the same duplicates, by the type of their event.
    duplicate_types: Mapping[tuple[str, str], int] = field(default_factory=dict)


class Tally:
    def __init__(self, *, bounds: tuple[float, ...] = DURATION_BOUNDS) -> None:
        self._lock = threading.Lock()
        self._bounds = bounds
        self._received: Counter[tuple[str, str]] = Counter()
        self._matched: Counter[tuple[str, str]] = Counter()
        self._decisions: Counter[tuple[str, str]] = Counter()
        self._refusals: Counter[str] = Counter()
        self._finished: Counter[tuple[str, str]] = Counter()
        self._durations: dict[tuple[str, str], _Buckets] = {}
        self._duplicates: Counter[str] = Counter()
        self._duplicate_types: Counter[tuple[str, str]] = Counter()

    def received(self, source: str, event_type: str, *, matched: bool) -> None:
        with self._lock:
            self._received[source, event_type] += 1
            if matched:
                self._matched[source, event_type] += 1

    def decided(self, policy: str, decision: str, *, guard: str | None = None) -> None:
        with self._lock:
            self._decisions[policy, decision] += 1
            if guard is not None:
                self._refusals[guard] += 1

    def finished(self, action: str, outcome: str, *, duration_s: float | None) -> None:
        """An operation ended; ``duration_s`` only for one that ran."""
        with self._lock:
            self._finished[action, outcome] += 1
            if duration_s is not None:
                buckets = self._durations.setdefault((action, outcome), _Buckets(self._bounds))
                buckets.observe(max(0.0, duration_s))

    def duplicate(self, source: str, event_type: str) -> None:
        with self._lock:
            self._duplicates[source] += 1
            self._duplicate_types[source, event_type] += 1

    def snapshot(self) -> TallySnapshot:
        with self._lock:
            return TallySnapshot(
                received=dict(self._received),
                matched=dict(self._matched),
                decisions=dict(self._decisions),
                refusals=dict(self._refusals),
                finished=dict(self._finished),
                durations={key: b.frozen() for key, b in self._durations.items()},
                duplicates=dict(self._duplicates),
                duplicate_types=dict(self._duplicate_types),
            )
