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
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any, Final

from nova_autopilot.coordination import Coordinator, Lock
from nova_autopilot.errors import TemporaryError
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


class ServerBusyElsewhere(TemporaryError):
    """Another daemon holds the server's lock and has recorded nothing on it yet
    (it is deciding): the message is tried again later."""


class ServerLocks:
    """One decision at a time per server: deciding, queueing, releasing and
    approving on one server never interleave. Striped re-entrant locks, taken in
    a fixed order, so a message about several servers cannot deadlock.

    With a coordinator of several daemons, each server also has the group's lock
    ``server:<id>``: taken before deciding, kept by an operation that runs
    (:meth:`keep`) until it ends (:meth:`drop`); the coordinator's heartbeat keeps
    it, and it expires with a daemon that dies. When another daemon holds it
    while an operation of the journal occupies the server (``occupied``), the
    decision goes on without it and counts the server busy, so nothing runs; when
    another daemon holds it with nothing recorded yet (it is deciding),
    :meth:`held` waits up to ``wait_s``, then raises :class:`ServerBusyElsewhere`.
    """

    def __init__(
        self,
        stripes: int = LOCK_STRIPES,
        *,
        coordinator: Coordinator | None = None,
        occupied: Callable[[str], bool] | None = None,
        wait_s: float = 10.0,
    ) -> None:
        self._locks = [threading.RLock() for _ in range(stripes)]
        self._group = coordinator if coordinator is not None and not coordinator.single else None
        self._occupied = occupied or (lambda server_id: False)
        self._wait_s = wait_s
        self._table = threading.Lock()
        self._owned: dict[str, tuple[Lock, int]] = {}

    @contextlib.contextmanager
    def held(self, server_ids: Iterable[str | None]) -> Iterator[frozenset[str]]:
        """Hold the servers' locks; yields those another daemon holds (always empty
        for a single daemon)."""
        ids = sorted({s for s in server_ids if s is not None})
        indexes = sorted({hash(s) % len(self._locks) for s in ids})
        with contextlib.ExitStack() as stack:
            for index in indexes:
                stack.enter_context(self._locks[index])
            elsewhere = set()
            for server_id in ids:
                if self._take(server_id):
                    stack.callback(self.drop, server_id)
                else:
                    elsewhere.add(server_id)
            yield frozenset(elsewhere)

    def keep(self, server_id: str | None) -> bool:
        """Keep the server's lock (held now) for an operation that runs; False when
        another daemon holds it."""
        if self._group is None or server_id is None:
            return True
        with self._table:
            entry = self._owned.get(server_id)
            if entry is None:
                return False
            self._owned[server_id] = (entry[0], entry[1] + 1)
            return True

    def take(self, server_id: str | None) -> bool:
        """Take the server's lock for an operation taken over, if free at once (and
        not already this daemon's: then one of its own operations runs there)."""
        if self._group is None or server_id is None:
            return True
        index = hash(server_id) % len(self._locks)
        with self._locks[index]:
            with self._table:
                if server_id in self._owned:
                    return False
            return self._take(server_id, wait=False)

    def drop(self, server_id: str | None) -> None:
        """One holder less; the lock goes back to the group with the last."""
        if self._group is None or server_id is None:
            return
        with self._table:
            entry = self._owned.get(server_id)
            if entry is None:
                return
            lock, count = entry
            if count > 1:
                self._owned[server_id] = (lock, count - 1)
                return
            del self._owned[server_id]
        lock.release()

    def owned(self) -> int:
        """How many servers' locks this daemon holds."""
        with self._table:
            return len(self._owned)

    def _take(self, server_id: str, *, wait: bool = True) -> bool:
        """Take (or count once more) the group's lock of the server (its stripe held)."""
        if self._group is None:
            return True
        with self._table:
            entry = self._owned.get(server_id)
            if entry is not None:
                self._owned[server_id] = (entry[0], entry[1] + 1)
                return True
        lock = self._group.lock(f"server:{server_id}")
        deadline = time.monotonic() + (self._wait_s if wait else 0.0)
        while not lock.acquire(False):
            if not wait or self._occupied(server_id):
                return False
            if time.monotonic() >= deadline:
                raise ServerBusyElsewhere(
                    f"another daemon holds server {server_id}'s lock and has recorded no "
                    "operation on it"
                )
            if lock.acquire(min(0.5, max(0.01, deadline - time.monotonic()))):
                break
        with self._table:
            self._owned[server_id] = (lock, 1)
        return True


def awaiting(journal: Journal) -> list[Operation]:
    """The operations awaiting an operator's approval, oldest first."""
    return [o for o in journal.unfinished() if o.phase == AWAITING_APPROVAL]
