"""How many requests the sandbox received, per method and route (and per server action).

The benchmarks compare how many API requests an operation costs, so every
compute API request is counted under a stable key:
``GET /v2.1/servers/{server_id}``, ``POST /v2.1/servers/{server_id}/action resize``.
"""

from __future__ import annotations

import threading
from collections import Counter


class RequestTally:
    """Thread-safe request counts."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    @staticmethod
    def key(method: str, route: str, action: str | None = None) -> str:
        return f"{method} {route}" + (f" {action}" if action else "")

    def count(self, key: str) -> None:
        with self._lock:
            self._counts[key] += 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(sorted(self._counts.items()))

    def total(self) -> int:
        with self._lock:
            return sum(self._counts.values())

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()
