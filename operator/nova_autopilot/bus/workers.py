"""The threads that call the handler, one queue each, keyed by server.

The jobs of one key (the server's id, else the message id) reach the handler in
the order they were delivered, while different servers are handled in parallel.
Jobs travel in lists (one per thread per turn of the consuming thread), so
handing them over costs one queue operation per list, not per message; every
submitted job comes back exactly once through ``done``, with its outcome.

A handler of one message at a time gets each key's jobs on the thread its hash
names, so that the messages of a turn spread over every thread.

A :class:`~.delivery.Batched` handler decides what it gets together, so a turn's
jobs are better kept together: they go to the thread with the fewest jobs in
hand, except the jobs of a key that a thread still holds (jobs of it queued or
being handled there), which go to that thread, behind the earlier ones. A turn
is thus one list, and one call, where spreading it over eight threads made eight
calls that each woke a thread, took their turn at the GIL and met at the
journal's decision lock (a busy daemon spent a sixth of its time so). A thread
gets every job it has at hand at once, up to :data:`BATCH_MAX`: the lists queued
while it decided the previous ones (in order, so a server's events stay in
order). The busier the bus, the larger the batch, and the fewer commits per
message; a turn that comes while one thread decides goes to another.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from typing import Any

from nova_autopilot.bus.delivery import ABANDONED, Batched, Handler, Job, run_batch, run_handler
from nova_autopilot.logs import get_logger

__all__ = ["Workers"]

log = get_logger("nova_autopilot.bus")
_STOP = object()
#: What a thread's queue holds: a list of jobs and, for a batched handler's threads,
#: the key of each (let go once handled); or _STOP.
_Handed = tuple[list[Job], Sequence[str]]
#: The most jobs a batched handler gets at once.
BATCH_MAX = 500


class Workers:
    """``count`` threads calling ``handler``; ``skip(job)`` is asked before each
    call (a stopping bus or a lost connection makes the call useless: the
    message will be delivered again)."""

    def __init__(
        self,
        *,
        count: int,
        handler: Handler,
        done: Callable[[list[Job]], None],
        skip: Callable[[Job], bool],
        name: str,
    ) -> None:
        if count < 1:
            raise ValueError(f"at least one worker thread is needed, got {count}")
        self._handler = handler
        self._done = done
        self._skip = skip
        self._name = name
        self._queues: list[queue.SimpleQueue[Any]] = [queue.SimpleQueue() for _ in range(count)]
        self._threads: list[threading.Thread] = []
        # For a batched handler, with several threads: each key with jobs in hand,
        # [its thread, how many], and how many jobs each thread has in hand.
        self._held: dict[str, list[int]] | None = (
            {} if isinstance(handler, Batched) and count > 1 else None
        )
        self._in_hand = [0] * count
        self._held_lock = threading.Lock()

    @property
    def count(self) -> int:
        return len(self._queues)

    def start(self) -> None:
        for index, jobs in enumerate(self._queues):
            thread = threading.Thread(
                target=self._run, args=(jobs,), name=f"{self._name}-{index}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def submit(self, jobs: list[tuple[str, Job]]) -> int:
        """Hand ``(key, job)`` pairs to the threads (see the module), in order; one
        list per thread. Returns how many lists were handed out (each comes
        back through ``done`` once all its jobs have an outcome)."""
        count = len(self._queues)
        if count == 1:
            self._queues[0].put(([job for _, job in jobs], ()))
            return 1
        if self._held is not None:
            return self._submit_together(jobs, self._held)
        buckets: dict[int, list[Job]] = {}
        for key, job in jobs:
            buckets.setdefault(hash(key) % count, []).append(job)
        for index, bucket in buckets.items():
            self._queues[index].put((bucket, ()))
        return len(buckets)

    def _submit_together(self, jobs: list[tuple[str, Job]], held: dict[str, list[int]]) -> int:
        """A turn for a batched handler: to the thread with the fewest jobs in hand,
        but each key another thread holds to that thread."""
        buckets: dict[int, tuple[list[Job], list[str]]] = {}
        in_hand = self._in_hand
        with self._held_lock:
            least = in_hand.index(min(in_hand))
            for key, job in jobs:
                holder = held.get(key)
                if holder is None:
                    holder = held[key] = [least, 0]
                holder[1] += 1
                index = holder[0]
                in_hand[index] += 1
                bucket = buckets.get(index)
                if bucket is None:
                    bucket = buckets[index] = ([], [])
                bucket[0].append(job)
                bucket[1].append(key)
        for index, bucket in buckets.items():
            self._queues[index].put(bucket)
        return len(buckets)

    def _let_go(self, keys: Sequence[str]) -> None:
        """The jobs of ``keys`` (one entry a job) are handled: their thread holds them no more."""
        held, in_hand = self._held, self._in_hand
        assert held is not None
        with self._held_lock:
            for key in keys:
                holder = held[key]
                in_hand[holder[0]] -= 1
                holder[1] -= 1
                if not holder[1]:
                    del held[key]

    def alive(self) -> bool:
        return bool(self._threads) and all(thread.is_alive() for thread in self._threads)

    def stop(self, timeout: float) -> bool:
        """Let each thread finish its queue (skipped jobs are quick) and exit."""
        for jobs in self._queues:
            jobs.put(_STOP)
        for thread in self._threads:
            thread.join(timeout)
        return not any(thread.is_alive() for thread in self._threads)

    def _run(self, jobs: queue.SimpleQueue[Any]) -> None:
        done = self._done
        while True:
            batch = jobs.get()
            if batch is _STOP:
                return
            lists: list[_Handed] = [batch]
            stop = False
            if isinstance(self._handler, Batched):
                lists, stop = self._more(jobs, lists)
            try:
                self._handle([job for taken, _ in lists for job in taken])
            except BaseException:  # report the jobs whatever happens
                log.exception("bus.worker_failed", worker=threading.current_thread().name)
                for taken, _ in lists:
                    for job in taken:
                        if job.outcome is None:
                            job.outcome = ABANDONED
            for taken, keys in lists:
                if keys:
                    self._let_go(keys)
                done(taken)
            if stop:
                return

    def _more(
        self, jobs: queue.SimpleQueue[Any], lists: list[_Handed]
    ) -> tuple[list[_Handed], bool]:
        """The lists queued behind the first, up to :data:`BATCH_MAX` jobs; whether the
        stop came with them."""
        size = len(lists[0][0])
        while size < BATCH_MAX:
            try:
                more = jobs.get_nowait()
            except queue.Empty:
                break
            if more is _STOP:
                return lists, True
            lists.append(more)
            size += len(more[0])
        return lists, False

    def _handle(self, jobs: list[Job]) -> None:
        todo = []
        for job in jobs:
            if job.event is None or self._skip(job):
                job.outcome = ABANDONED
            else:
                todo.append(job)
        if isinstance(self._handler, Batched):
            if todo:
                run_batch(self._handler, todo)
            return
        for job in todo:
            assert job.event is not None
            job.outcome = run_handler(self._handler, job.event, job.delivery)
