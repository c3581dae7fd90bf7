"""Operations held before they run: queued behind the server's operation in
flight, or awaiting an operator's approval.

A held operation is an unfinished operation of the journal in a phase of its
own (:data:`QUEUED`, :data:`AWAITING_APPROVAL`) that no state machine knows:
the runner never sees it until the engine releases it (``holding``). Its
state says until when it may wait (``hold_until``); past that moment it ends
``expired``. Both kinds count as in flight on their server, so nothing else
starts there meanwhile. This module holds their vocabulary and the small
thread-safe parts used for them.
"""

from __future__ import annotations

import contextlib
import heapq
import threading
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any, Final

from nova_autopilot.journal import Journal, Operation

QUEUED: Final = "queued"
AWAITING_APPROVAL: Final = "awaiting_approval"
HELD_PHASES: Final = (QUEUED, AWAITING_APPROVAL)
#: The state key of the moment a held operation expires.
UNTIL: Final = "hold_until"
#: The state key of the moment a held operation was released to run: its
#: deadline (``confirm.timeout``) counts from there.
RELEASED_AT: Final = "released_at"
#: Stripes of the per-server locks.
LOCK_STRIPES: Final = 64


def hold_state(until: datetime, **extra: Any) -> dict[str, Any]:
    return {UNTIL: until.isoformat(), **extra}


def held_until(operation: Operation) -> datetime | None:
    value = operation.state.get(UNTIL)
    return datetime.fromisoformat(value) if isinstance(value, str) else None


def released_at(operation: Operation) -> datetime | None:
    value = operation.state.get(RELEASED_AT)
    return datetime.fromisoformat(value) if isinstance(value, str) else None


def occupies(operation: Operation) -> bool:
    """Whether the operation keeps its server busy for the others: running, or
    awaiting approval. A queued operation waits its turn like the others."""
    return not operation.finished and operation.phase != QUEUED


def plan(operation: Operation) -> dict[str, Any]:
    """What an operation awaiting approval would do, as its result announces it."""
    return {
        "action": operation.action,
        "server": {"id": operation.server_id, "name": operation.server_name},
        "params": operation.params,
        "policy": operation.policy,
        "why": operation.why,
    }


class Deadlines:
    """When held operations expire: a heap of ``(moment, operation id)``.

    Entries are never removed early: whoever pops one checks the journal, where
    the operation may have been released or finished meanwhile.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._heap: list[tuple[datetime, str]] = []

    def add(self, op_id: str, until: datetime) -> None:
        with self._lock:
            heapq.heappush(self._heap, (until, op_id))

    def due(self, now: datetime) -> list[str]:
        """Take every entry due at ``now``."""
        found = []
        with self._lock:
            while self._heap and self._heap[0][0] <= now:
                found.append(heapq.heappop(self._heap)[1])
        return found

    def __len__(self) -> int:
        with self._lock:
            return len(self._heap)


class ServerLocks:
    """One decision at a time per server: deciding, queueing, releasing and
    approving on one server never interleave. Striped re-entrant locks, taken in
    a fixed order, so a message about several servers cannot deadlock."""

    def __init__(self, stripes: int = LOCK_STRIPES) -> None:
        self._locks = [threading.RLock() for _ in range(stripes)]

    @contextlib.contextmanager
    def held(self, server_ids: Iterable[str | None]) -> Iterator[None]:
        indexes = sorted({hash(s) % len(self._locks) for s in server_ids if s is not None})
        with contextlib.ExitStack() as stack:
            for index in indexes:
                stack.enter_context(self._locks[index])
            yield


def awaiting(journal: Journal) -> list[Operation]:
    """The operations awaiting an operator's approval, oldest first."""
    return [o for o in journal.unfinished() if o.phase == AWAITING_APPROVAL]
