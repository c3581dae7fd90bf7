"""Accounting of the HTTP requests made to the cloud: in total, per call and per
operation; for an operation also the calls themselves (which call, method, path
template, status), so that each recorded step can say which requests it made.

The operation and the :class:`~nova_autopilot.cloud.Cloud` call a request is
counted for are context variables, set by :func:`counting_for` and
:func:`counting_as` around the code that makes it.
"""

from __future__ import annotations

import contextlib
import contextvars
import re
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

_ID_IN_PATH = re.compile(
    r"/[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"
)
_current_operation: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "nova_autopilot_operation", default=None
)
_current_call: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "nova_autopilot_call", default=None
)
#: Calls kept per operation until the next step takes them (the counts stay exact beyond).
CALLS_KEPT = 50
#: Paths are cut to this length, so a call stays small whatever a name in it holds.
PATH_KEPT = 200


@dataclass(frozen=True, slots=True)
class Call:
    """One HTTP request an operation made: the :class:`Cloud` call it served
    (``resize``, ``get_server``...), its method, its path with ids as ``{id}``
    and no query string, and Nova's status. Never a body, header or token."""

    call: str | None
    method: str
    path: str
    status: int

    def as_dict(self) -> dict[str, Any]:
        return {"call": self.call, "method": self.method, "path": self.path, "status": self.status}


class RequestCounter:
    """Counts HTTP requests to the cloud: in total, by call, by status, by the
    pair of them (``("POST /v2.1/servers/{id}/action", 202)``) and by operation;
    keeps each operation's calls (at most :data:`CALLS_KEPT`) until taken."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.total = 0
        self.by_call: Counter[str] = Counter()
        self.by_status: Counter[int] = Counter()
        self.by_call_status: Counter[tuple[str, int]] = Counter()
        self.by_operation: Counter[str] = Counter()
        self._calls: dict[str, list[Call]] = {}

    def record(self, method: str, path: str, status: int) -> None:
        template = _ID_IN_PATH.sub("/{id}", path.split("?", 1)[0])[:PATH_KEPT]
        call = f"{method} {template}"
        operation = _current_operation.get()
        with self._lock:
            self.total += 1
            self.by_call[call] += 1
            self.by_status[status] += 1
            self.by_call_status[call, status] += 1
            if operation is not None:
                self.by_operation[operation] += 1
                kept = self._calls.setdefault(operation, [])
                if len(kept) < CALLS_KEPT:
                    kept.append(Call(_current_call.get(), method, template, status))

    def for_operation(self, operation_id: str) -> int:
        with self._lock:
            return self.by_operation[operation_id]

    def take_calls(self, operation_id: str) -> list[Call]:
        """The operation's calls since the last take, oldest first (at most
        :data:`CALLS_KEPT`: compare with :meth:`for_operation` for the count)."""
        with self._lock:
            return self._calls.pop(operation_id, [])

    def call_counts(self) -> dict[tuple[str, int], int]:
        """A copy of the counts by (call, status)."""
        with self._lock:
            return dict(self.by_call_status)

    def forget(self, operation_id: str) -> None:
        with self._lock:
            self.by_operation.pop(operation_id, None)
            self._calls.pop(operation_id, None)


@contextlib.contextmanager
def counting_for(operation_id: str) -> Iterator[None]:
    """Attribute the requests made inside the block to an operation."""
    token = _current_operation.set(operation_id)
    try:
        yield
    finally:
        _current_operation.reset(token)


@contextlib.contextmanager
def counting_as(call: str) -> Iterator[None]:
    """Name the :class:`~nova_autopilot.cloud.Cloud` call (``resize``,
    ``get_server``...) the requests made inside the block serve."""
    token = _current_call.set(call)
    try:
        yield
    finally:
        _current_call.reset(token)
