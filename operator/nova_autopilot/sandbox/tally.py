"""How many requests the sandbox received, per method and route (and per server action).

The benchmarks compare how many API requests an operation costs, so every
compute API request is counted under a stable key:
``GET /v2.1/servers/{server_id}``, ``POST /v2.1/servers/{server_id}/action resize``.
The latest requests are also kept with the moment they arrived (``time.monotonic``),
to see how calls were spread over time.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque

#: Requests kept with their arrival time.
LOG_SIZE = 100_000


class RequestTally:
    """Thread-safe request counts."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._log: deque[tuple[float, str]] = deque(maxlen=LOG_SIZE)

    @staticmethod
    def key(method: str, route: str, action: str | None = None) -> str:
        return f"{method} {route}" + (f" {action}" if action else "")

    def count(self, key: str) -> None:
        with self._lock:
            self._counts[key] += 1
            self._log.append((time.monotonic(), key))

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
