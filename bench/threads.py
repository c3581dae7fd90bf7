"""Cost of a call made by several threads at once, for the micro-benchmarks."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


def per_call_us(call: Callable[[], object], *, threads: int, calls: int) -> float:
    """Microseconds per ``call()``, each of ``threads`` threads making ``calls`` of them."""

    def work() -> None:
        for _ in range(calls):
            call()

    workers = [threading.Thread(target=work) for _ in range(threads)]
    start = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return (time.perf_counter() - start) / (threads * calls) * 1e6
