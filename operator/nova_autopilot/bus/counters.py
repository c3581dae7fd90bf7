"""Counts of what happened to every message, for the metrics layer.

Every message received ends in exactly one of: handled (acknowledged after the
handler returned), retried (sent to a delay queue), dead-lettered (by reason),
or abandoned (its outcome was not settled because the connection was lost or
the bus stopped: the broker delivers it again). Until then it is in flight.
So ``received == handled + retried + dead_lettered + abandoned + in_flight``
once the dust settles, and nothing is ever dropped without a count.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = ["UNKNOWN_TYPE", "CounterSnapshot", "Counters"]

#: The event type counted for a message that did not become an event.
UNKNOWN_TYPE: Final = "unknown"


@dataclass(frozen=True, slots=True)
class CounterSnapshot:
    """The counters of one intake at one moment."""

    received: int = 0
    redelivered: int = 0
    handled: int = 0
    retried: int = 0
    abandoned: int = 0
    dead_lettered: dict[str, int] = field(default_factory=dict)
    #: The same by (reason, event type); the type is ``unknown`` for a message that
    #: did not become an event (not parsed, or not verified).
    dead_lettered_types: dict[tuple[str, str], int] = field(default_factory=dict)

    @property
    def dead_lettered_total(self) -> int:
        return sum(self.dead_lettered.values())

    @property
    def settled(self) -> int:
        return self.handled + self.retried + self.dead_lettered_total + self.abandoned

    def as_dict(self) -> dict[str, Any]:
        return {
            "received": self.received,
            "redelivered": self.redelivered,
            "handled": self.handled,
            "retried": self.retried,
            "abandoned": self.abandoned,
            "dead_lettered": dict(self.dead_lettered),
        }


class Counters:
    """Thread-safe counters of one intake (the notification or the request queue)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._received = 0
        self._redelivered = 0
        self._handled = 0
        self._retried = 0
        self._abandoned = 0
        self._dead: Counter[str] = Counter()
        self._dead_types: Counter[tuple[str, str]] = Counter()

    def received(self, *, redelivered: bool) -> None:
        with self._lock:
            self._received += 1
            if redelivered:
                self._redelivered += 1

    def handled(self, count: int = 1) -> None:
        with self._lock:
            self._handled += count

    def retried(self) -> None:
        with self._lock:
            self._retried += 1

    def abandoned(self, count: int = 1) -> None:
        with self._lock:
            self._abandoned += count

    def dead_lettered(self, reason: str, event_type: str | None = None) -> None:
        with self._lock:
            self._dead[reason] += 1
            self._dead_types[reason, event_type or UNKNOWN_TYPE] += 1

    def snapshot(self) -> CounterSnapshot:
        with self._lock:
            return CounterSnapshot(
                received=self._received,
                redelivered=self._redelivered,
                handled=self._handled,
                retried=self._retried,
                abandoned=self._abandoned,
                dead_lettered=dict(self._dead),
                dead_lettered_types=dict(self._dead_types),
            )
