"""The threads that call the handler, one queue each, keyed by server.

Every job for the same key (the server's id, else the message id) goes to
the same thread, so the events of one server reach the handler in the order
they were delivered while different servers are handled in parallel. Jobs travel
in lists (one per thread per turn of the consuming thread), so handing them
over costs one queue operation per list, not per message; every submitted
job comes back exactly once through ``done``, with its outcome.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

from nova_autopilot.bus.delivery import ABANDONED, Handler, Job, run_handler
from nova_autopilot.logs import get_logger

__all__ = ["Workers"]

log = get_logger("nova_autopilot.bus")
_STOP = object()


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
        """Hand ``(key, job)`` pairs to the threads of their keys, in order; one
        list per thread. Returns how many lists were handed out (each comes
        back through ``done`` once all its jobs have an outcome)."""
        count = len(self._queues)
        if count == 1:
            self._queues[0].put([job for _, job in jobs])
            return 1
        buckets: dict[int, list[Job]] = {}
        for key, job in jobs:
            buckets.setdefault(hash(key) % count, []).append(job)
        for index, bucket in buckets.items():
            self._queues[index].put(bucket)
        return len(buckets)

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
        handler, done, skip = self._handler, self._done, self._skip
        while True:
            batch = jobs.get()
            if batch is _STOP:
                return
            for job in batch:
                try:
                    if job.event is None or skip(job):
                        job.outcome = ABANDONED
                    else:
                        job.outcome = run_handler(handler, job.event, job.delivery)
                except BaseException:  # report the job whatever happens
                    log.exception("bus.worker_failed", worker=threading.current_thread().name)
                    job.outcome = ABANDONED
            done(batch)
