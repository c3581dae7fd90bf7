"""What watching the daemon costs.

* **counting**: one event counted by the engine's tally, from one thread and
  from eight at once (the bus calls the engine from several workers);
* **a scrape**: ``/metrics`` rendered for a busy daemon's figures (20
  policies, 50 event types, 4 actions by 8 outcomes with their duration
  histograms, 30 Nova calls by 5 statuses): about 800 series;
* **readiness**: the journal's write check that ``/readyz`` makes at every
  probe (a probe row written and rolled back), on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from typing import Any

from bench import databases
from bench.summary import figure
from bench.threads import per_call_us
from nova_autopilot.bus import CounterSnapshot, IntakeHealth
from nova_autopilot.daemon.metrics import Metrics, Sources
from nova_autopilot.engine.tally import Tally
from nova_autopilot.journal import Journal

OUTCOMES = ("confirmed", "reverted", "rescued", "unrescued", "failed", "timed_out", "refused")


def counting_cost(threads: int, events: int) -> float:
    """Microseconds per event counted."""
    tally = Tally()
    return per_call_us(
        lambda: tally.received("nova", "instance.update", matched=False),
        threads=threads,
        calls=events,
    )


def busy_metrics() -> Metrics:
    tally = Tally()
    for p in range(20):
        for outcome in ("run", "dry_run", "refused"):
            tally.decided(
                f"policy-{p}", outcome, guard="cooldown" if outcome == "refused" else None
            )
    for e in range(50):
        tally.received("nova", f"instance.event-{e}", matched=e % 2 == 0)
    for action in ("resize", "rescue", "unrescue", "verify_boot"):
        for outcome in (*OUTCOMES, "dry_run"):
            for d in range(10):
                tally.finished(action, outcome, duration_s=d * 37.0)
    calls = {(f"GET /v2.1/call-{c}", s): 10 for c in range(30) for s in (200, 404, 409, 500, 503)}
    health = IntakeHealth(
        "notifications", "nova", "q", "amqp://h//", True, True, None, 0, None, 0, None
    )
    counts = CounterSnapshot(
        received=10,
        handled=9,
        dead_lettered={"not_json": 1},
        dead_lettered_types={("not_json", "unknown"): 1},
    )
    return Metrics(
        Sources(
            version="bench",
            tally=tally.snapshot,
            intakes=lambda: [(health, counts)],
            nova_calls=lambda: calls,
            in_flight=lambda: {"resize": 1, "rescue": 0, "unrescue": 0, "verify_boot": 0},
        )
    )


def median_ms(work: Any, times: int) -> float:
    spent = []
    for _ in range(times):
        start = time.perf_counter()
        work()
        spent.append(time.perf_counter() - start)
    return statistics.median(spent) * 1e3


def write_check_ms(url: str, times: int) -> float:
    with Journal.open(url) as journal:
        journal.check_writable()  # connect and warm up
        return median_ms(journal.check_writable, times)


def postgres_check_ms(times: int) -> float | None:
    with databases.postgresql("observe") as url:
        return None if url is None else write_check_ms(url, times)


def run(*, quick: bool = False) -> dict[str, Any]:
    events = 20_000 if quick else 200_000
    times = 20 if quick else 200
    count_1 = min(counting_cost(1, events) for _ in range(3))
    count_8 = min(counting_cost(8, events // 8) for _ in range(3))
    metrics = busy_metrics()
    body, _ = metrics.exposition()
    series = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
    scrape = min(median_ms(metrics.exposition, times) for _ in range(3))
    with tempfile.TemporaryDirectory() as tmp:
        sqlite = min(write_check_ms(f"sqlite:///{tmp}/journal.sqlite", times) for _ in range(3))
    postgres = postgres_check_ms(times)
    lines = [
        "### Watching the daemon",
        "",
        f"One event counted: {count_1:.2f} µs (1 thread), {count_8:.2f} µs (8 threads at once).",
        "",
        "| what | median |",
        "|---|---:|",
        f"| a scrape of {series} series ({len(body) / 1024:.0f} KiB) | {scrape:.1f} ms |",
        f"| the journal's write check, SQLite | {sqlite:.2f} ms |",
        "| the journal's write check, PostgreSQL | "
        + ("not reachable" if postgres is None else f"{postgres:.2f} ms")
        + " |",
    ]
    headline = [
        figure(
            "one event counted, 8 threads",
            count_8,
            "µs",
            baseline="1 thread",
            baseline_value=count_1,
        ),
        figure(f"a scrape of {series} series", scrape, "ms"),
        figure("the journal's write check, SQLite", sqlite, "ms"),
    ]
    if postgres is not None:
        headline.append(
            figure(
                "the journal's write check, PostgreSQL",
                postgres,
                "ms",
                baseline="SQLite",
                baseline_value=sqlite,
            )
        )
    return {
        "benchmark": "observe",
        "headline": headline,
        "count_us": {"1": count_1, "8": count_8},
        "scrape_ms": scrape,
        "series": series,
        "write_check_ms": {"sqlite": sqlite, "postgresql": postgres},
        "markdown": "\n".join(lines),
    }
