"""The Nova write limit: what it costs, and how it spreads a burst of operations.

* **cost**: one ``WriteLimiter.acquire`` that does not have to wait (the
  common case), from one thread and from eight at once;
* **spread**: a burst of resizes (each one resize and one confirm call)
  decided at once on the sandbox Nova over real HTTP, without a limit and at
  ``[guards] nova_write_rate`` 2/s with ``nova_write_burst`` 3; the figures
  are what the sandbox saw arrive: write calls per second over the burst,
  the most in any one second, and how long the burst took.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from bench.summary import figure
from bench.threads import per_call_us
from nova_autopilot.cloud import WriteLimiter
from nova_autopilot.policies import load_texts
from tests.integration.stack import POLICIES, Stack

RATE, BURST = 2.0, 3
NO_GATE = POLICIES.replace(
    '      gate: [{console: {contains: "login:", not_contains: "Kernel panic"}}]\n', ""
)


def acquire_cost(threads: int, calls: int) -> float:
    """Microseconds per acquire that never waits."""
    writes = WriteLimiter(1e9, 1_000_000)
    return per_call_us(
        lambda: writes.acquire("resize", max_wait_s=1.0), threads=threads, calls=calls
    )


def burst(servers: int, writes: WriteLimiter | None) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack(Path(tmp), writes=writes)
        stack.policies = load_texts([("bench.yaml", NO_GATE.replace("{gate_timeout}", "1s"))])
        stack.start()
        try:
            stack.sandbox.add_flavor("m1.small")
            stack.sandbox.add_flavor("m1.large", vcpus=2)
            stack.cloud.flavor("m1.small")
            ids = [stack.sandbox.add_server(f"web-{i}", "m1.small").id for i in range(servers)]
            stack.sandbox.reset_request_counts()
            start = time.monotonic()
            ops = [stack.request("quota.request.approved", sid, flavor="m1.large") for sid in ids]
            outcomes = {stack.outcome(op, timeout=300).outcome for op in ops}
            took = time.monotonic() - start
            log = stack.sandbox.request_log()
        finally:
            stack.stop()
    assert outcomes == {"confirmed"}, outcomes
    times = [at for at, key in log if not key.startswith("GET ")]
    span = times[-1] - times[0]
    busiest = max(sum(1 for t in times if s <= t < s + 1.0) for s in times)
    return {
        "writes": len(times),
        "rate": (len(times) - 1) / span if span > 0 else float("inf"),
        "busiest_second": busiest,
        "seconds": took,
    }


def run(*, quick: bool = False) -> dict[str, Any]:
    servers = 3 if quick else 20
    calls = 20_000 if quick else 200_000
    cost_1 = min(acquire_cost(1, calls) for _ in range(3))
    cost_8 = min(acquire_cost(8, calls // 8) for _ in range(3))
    free = burst(servers, None)
    paced = burst(servers, WriteLimiter(RATE, BURST))
    lines = [
        "### Nova write limit",
        "",
        f"One acquire that does not wait: {cost_1:.2f} µs (1 thread), "
        f"{cost_8:.2f} µs (8 threads at once).",
        "",
        f"{servers} resizes decided at once on the sandbox Nova "
        f"({2 * servers} write calls: resize and confirm each):",
        "",
        "| limit | writes/s at Nova | most in one second | burst took |",
        "|---|---:|---:|---:|",
        f"| none | {free['rate']:.1f} | {free['busiest_second']:.0f} | {free['seconds']:.1f} s |",
        f"| {RATE:g}/s, burst {BURST} | {paced['rate']:.2f} | {paced['busiest_second']:.0f} "
        f"| {paced['seconds']:.1f} s |",
    ]
    headline = [
        figure(
            "one acquire that does not wait, 8 threads",
            cost_8,
            "µs",
            baseline="1 thread",
            baseline_value=cost_1,
        ),
        figure(
            f"writes/s at Nova, limit {RATE:g}/s burst {BURST}",
            paced["rate"],
            "writes/s",
            baseline="no limit",
            baseline_value=free["rate"],
        ),
    ]
    return {
        "benchmark": "writes",
        "headline": headline,
        "acquire_us": {"1": cost_1, "8": cost_8},
        "unlimited": free,
        "limited": paced,
        "markdown": "\n".join(lines),
    }
