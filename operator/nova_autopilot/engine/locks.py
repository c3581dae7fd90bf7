"""Per-server locks: one decision at a time on a server, in this daemon and in the
group of daemons that share the cloud.

Deciding, queueing, releasing and approving on one server never interleave.
With a coordinator of several daemons (:mod:`nova_autopilot.coordination`),
each server also has the group's lock, kept by the operation that runs there
until it ends.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Final

from nova_autopilot.coordination import Coordinator, Lock
from nova_autopilot.errors import TemporaryError

#: Stripes of the per-server locks.
LOCK_STRIPES: Final = 64


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
            if self._group is None:  # a single daemon: the stripes are all there is
                yield frozenset()
                return
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
