"""How many requests the sandbox received, per method and route (and per server action).

The benchmarks compare how many API requests an operation costs, so every
compute API request is counted under a stable key:
``GET /v2.1/servers/{server_id}``, ``POST /v2.1/servers/{server_id}/action resize``.
The latest requests are also kept with the moment they arrived (``time.monotonic``),
to see how calls were spread over time.

The write calls (every method but GET) addressed to one server are also counted per
server, whatever they were answered, refusals included: a client that repeats a
resize shows here even when Nova refused it and recorded no instance action.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

#: Requests kept with their arrival time.
LOG_SIZE = 100_000


@dataclass(frozen=True)
class WriteCall:
    """One write request addressed to a server, as it was answered."""

    server_id: str
    name: str
    """The action of a ``POST .../action`` (``resize``, ``confirmResize``; ``(none)`` when
    the body names none), else ``METHOD /route`` (``DELETE /v2.1/servers/{server_id}``)."""
    status: int
    arrived: float
    """``time.monotonic()`` when the request arrived."""
    answered: float
    """``time.monotonic()`` when its answer was ready."""
    at: datetime
    """The wall clock (UTC) when it arrived."""


class RequestCounts:
    """Thread-safe request counts."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._log: deque[tuple[float, str]] = deque(maxlen=LOG_SIZE)
        self._writes: dict[str, Counter[str]] = {}
        self._write_log: deque[WriteCall] = deque(maxlen=LOG_SIZE)

    @staticmethod
    def key(method: str, route: str, action: str | None = None) -> str:
        return f"{method} {route}" + (f" {action}" if action else "")

    def count(self, key: str) -> None:
        with self._lock:
            self._counts[key] += 1
            self._log.append((time.monotonic(), key))

    def written(self, server_id: str, name: str, status: int, arrived: float) -> None:
        """Count a write call to a server, answered with ``status``."""
        call = WriteCall(
            server_id,
            name,
            status,
            arrived,
            time.monotonic(),
            datetime.now(timezone.utc) - _since(arrived),
        )
        with self._lock:
            self._writes.setdefault(server_id, Counter())[name] += 1
            self._write_log.append(call)

    def writes(self) -> dict[str, dict[str, int]]:
        """Write calls per server id, per name."""
        with self._lock:
            return {sid: dict(sorted(c.items())) for sid, c in sorted(self._writes.items())}

    def write_log(self, server_id: str | None = None) -> list[WriteCall]:
        """The latest write calls (of one server, or of all), in the order they arrived."""
        with self._lock:
            calls = [c for c in self._write_log if server_id in (None, c.server_id)]
        return sorted(calls, key=lambda c: c.arrived)

    def log(self) -> list[tuple[float, str]]:
        """The latest requests as ``(monotonic arrival time, key)``, oldest first."""
        with self._lock:
            return list(self._log)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(sorted(self._counts.items()))

    def total(self) -> int:
        with self._lock:
            return sum(self._counts.values())

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()
            self._log.clear()
            self._writes.clear()
            self._write_log.clear()


def _since(moment: float) -> timedelta:
    return timedelta(seconds=time.monotonic() - moment)
