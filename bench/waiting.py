"""1,000 operations waiting at once: threads, memory, CPU and Nova requests while they wait.

The daemon's stack over real HTTP (``tests/integration/stack.py``: the sandbox
Nova in this process, openstacksdk, the engine, the runner with its default 4
workers and the daemon's default 10 s batched poll, a SQLite journal; the
sandbox's notifications handed to the engine in-process). N servers are
resized at once (no gate checks). The sandbox moves each disk for an hour
(``resize_migrate``), so every operation parks waiting for VERIFY_RESIZE.
Once all N wait, the benchmark measures over an idle window:

* the process's threads (``threading.active_count()`` and the kernel's count in
  ``/proc/self/status``), by kind;
* its resident memory (``VmRSS``) before the requests and while all wait;
* the CPU time it uses per second of waiting and its context switches
  (``getrusage``), the sandbox's own idle ticks included;
* the Nova API requests received during the window (the sandbox's request counts).

Then the sandbox's timers jump the hour: the N resizes reach VERIFY_RESIZE
together, their notifications wake the N operations, and the time until the
last is confirmed is the drain time.

The sandbox shares the process (its scheduler thread, one thread per HTTP
connection, its server records), so the figures include it: an upper bound
for the daemon alone.
"""

from __future__ import annotations

import re
import resource
import statistics
import tempfile
import threading
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.summary import figure
from nova_autopilot import logs
from nova_autopilot.policies import load_texts
from nova_autopilot.sandbox import Durations, Sandbox
from nova_autopilot.sandbox.clock import JumpClock
from tests.integration.stack import InProcess, Stack

MIGRATE_S = 3600.0
POLL_INTERVAL_S = 10.0  # the daemon's default [nova] poll_interval
POLICY = """
policies:
  - name: resize
    when: {source: request, event: quota.request.approved}
    do:
      action: resize
      params: {server: "{{ payload.server }}", flavor: "{{ payload.flavor }}"}
    confirm: {timeout: 900s}
"""


def _status() -> dict[str, int]:
    """Threads and VmRSS (kB) from the kernel."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("Threads", "VmRSS"):
            out[key] = int(value.split()[0])
    return out


def _thread_kinds() -> dict[str, int]:
    kinds: Counter[str] = Counter()
    for thread in threading.enumerate():
        name = thread.name
        if "process_request_thread" in name:
            kind = "sandbox HTTP connections"
        else:
            kind = re.sub(r"[-_]\d+$", "", name)
        kinds[kind] += 1
    return dict(sorted(kinds.items()))


def _cpu() -> tuple[float, int, int]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime, usage.ru_nvcsw, usage.ru_nivcsw


def _total(sandbox: Sandbox) -> int:
    return sum(sandbox.request_counts().values())


def _count_calls(obj: Any, name: str) -> list[int]:
    """Count the calls of one of ``obj``'s methods from now on."""
    calls = [0]
    method = getattr(obj, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return method(*args, **kwargs)

    setattr(obj, name, counted)
    return calls


def _timeline(sandbox: Sandbox, writes: list[int], seconds: float) -> list[dict[str, float]]:
    """Per second: CPU ms, Nova requests, journal writes."""
    out = []
    end = time.monotonic() + seconds
    cpu, requests, written = _cpu()[0], _total(sandbox), writes[0]
    while time.monotonic() < end - 0.01:
        time.sleep(min(1.0, end - time.monotonic()))
        now_cpu, now_requests, now_written = _cpu()[0], _total(sandbox), writes[0]
        out.append(
            {
                "cpu_ms": 1000 * (now_cpu - cpu),
                "requests": now_requests - requests,
                "journal_writes": now_written - written,
            }
        )
        cpu, requests, written = now_cpu, now_requests, now_written
    return out


def _until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout:.0f}s")
        time.sleep(0.05)  # looking at the runner's count, with a deadline


def measure(count: int, window_s: float) -> dict[str, Any]:
    clock = JumpClock()
    durations = replace(Durations(), resize_migrate=MIGRATE_S)
    with tempfile.TemporaryDirectory() as tmp:
        publisher = InProcess()
        sandbox = Sandbox(publisher=publisher, durations=durations, clock=clock).start()
        stack = Stack(Path(tmp), sandbox=sandbox, poll_interval_s=POLL_INTERVAL_S)
        stack.publisher = publisher  # the sandbox's notifications go to the stack's engine
        stack.policies = load_texts([("bench.yaml", POLICY)])
        stack.start()
        try:
            stack.sandbox.add_flavor("m1.small")
            stack.sandbox.add_flavor("m1.large", vcpus=2)
            stack.cloud.flavor("m1.small")  # the flavor list is cached, as in a running daemon
            servers = [stack.sandbox.add_server(f"vm-{i}", "m1.small") for i in range(count)]
            time.sleep(1)
            idle = {"status": _status(), "threads": threading.active_count()}
            start = time.monotonic()
            ops = [
                stack.request("quota.request.approved", s.id, flavor="m1.large") for s in servers
            ]
            _until(lambda: stack.runner.waiting() >= count, 300, f"{count} operations waiting")
            ramp_s = time.monotonic() - start
            time.sleep(0.5)  # the last phases' journal writes
            writes = _count_calls(stack.journal, "advance")
            requests_before = stack.sandbox.request_counts()
            cpu0, vol0, invol0 = _cpu()
            t0 = time.monotonic()
            seconds = _timeline(stack.sandbox, writes, window_s)
            cpu1, vol1, invol1 = _cpu()
            elapsed = time.monotonic() - t0
            requests = stack.sandbox.request_counts()
            waiting = {
                "status": _status(),
                "threads": threading.active_count(),
                "kinds": _thread_kinds(),
                "still_waiting": stack.runner.waiting(),
            }
            window_requests = {
                k: n - requests_before.get(k, 0)
                for k, n in requests.items()
                if n - requests_before.get(k, 0)
            }
            start = time.monotonic()
            clock.jump(MIGRATE_S)
            _until(lambda: stack.runner.in_flight() == 0, 300, "every operation to end")
            drain_s = time.monotonic() - start
            outcomes = Counter(stack.journal.get(op).outcome for op in ops)
        finally:
            stack.stop()
            sandbox.stop()
    return {
        "operations": count,
        "ramp_s": ramp_s,
        "window_s": elapsed,
        "threads_before": idle["threads"],
        "os_threads_before": idle["status"]["Threads"],
        "rss_before_kb": idle["status"]["VmRSS"],
        "threads_waiting": waiting["threads"],
        "os_threads_waiting": waiting["status"]["Threads"],
        "thread_kinds": waiting["kinds"],
        "rss_waiting_kb": waiting["status"]["VmRSS"],
        "still_waiting": waiting["still_waiting"],
        "cpu_ms_per_s": 1000 * (cpu1 - cpu0) / elapsed,
        "voluntary_switches_per_s": (vol1 - vol0) / elapsed,
        "involuntary_switches_per_s": (invol1 - invol0) / elapsed,
        "nova_requests_in_window": window_requests,
        "nova_requests_total": requests,
        "timeline": seconds,
        "drain_s": drain_s,
        "outcomes": dict(outcomes),
    }


def run(*, quick: bool = False) -> dict[str, Any]:
    count, window_s = (20, 2.0) if quick else (1_000, 30.0)
    logs.configure(level="WARNING")  # a line per operation would be most of the drain's work
    r = measure(count, window_s)
    per_op_kb = (r["rss_waiting_kb"] - r["rss_before_kb"]) / count
    kinds = ", ".join(f"{kind} {n}" for kind, n in r["thread_kinds"].items())
    quiet = [s["cpu_ms"] for s in r["timeline"] if not s["requests"] and not s["journal_writes"]]
    idle_ms = statistics.median(quiet) if quiet else 0.0
    polls = sum(r["nova_requests_in_window"].values())
    woken = sum(s["journal_writes"] for s in r["timeline"])
    r.update(idle_cpu_ms_per_s=idle_ms, polls_in_window=polls, poll_wakes=woken)
    lines = [
        f"### {count:,} operations waiting at once",
        "",
        f"{count:,} resizes (no gate checks) against the sandbox Nova over HTTP, every disk move "
        f"held for an hour; measured over {r['window_s']:.0f} s while all "
        f"{r['still_waiting']:,} waited, with the batched poll every {POLL_INTERVAL_S:.0f} s. "
        "The sandbox runs in the same process and is counted too.",
        "",
        "| measure | before the requests | while all wait |",
        "|---|---:|---:|",
        f"| threads (`threading.active_count()`) | {r['threads_before']} "
        f"| {r['threads_waiting']} |",
        f"| threads (`/proc/self/status`) | {r['os_threads_before']} | {r['os_threads_waiting']} |",
        f"| RSS | {r['rss_before_kb'] / 1024:.1f} MiB | {r['rss_waiting_kb'] / 1024:.1f} MiB "
        f"(+{per_op_kb:.1f} KiB per operation) |",
        f"| CPU, a second without a poll (median) | - | {idle_ms:.1f} ms/s |",
        f"| CPU, mean over the window, polls included | - | {r['cpu_ms_per_s']:.1f} ms/s |",
        f"| context switches (mean) | - | {r['voluntary_switches_per_s']:.0f}/s "
        f"voluntary, {r['involuntary_switches_per_s']:.0f}/s involuntary |",
        f"| Nova API requests in the window | - | {polls} "
        f"({', '.join(f'{k} x{n}' for k, n in r['nova_requests_in_window'].items()) or '-'}) |",
        f"| operations woken by those polls (journal writes) | - | {woken:,} |",
        "",
        f"Threads while waiting: {kinds}. CPU ms per second of the window: "
        + ", ".join(f"{s['cpu_ms']:.0f}" for s in r["timeline"])
        + f". Getting all {count:,} to wait took {r['ramp_s']:.1f} s (a read and a resize "
        f"each); once the disks moved, confirming every one took {r['drain_s']:.1f} s "
        "(outcomes: " + ", ".join(f"{k} {v:,}" for k, v in sorted(r["outcomes"].items())) + ").",
    ]
    headline = [
        figure(
            f"threads while {count:,} operations wait",
            r["threads_waiting"],
            "threads",
            baseline="before the requests",
            baseline_value=r["threads_before"],
        ),
        figure(
            f"RSS while {count:,} operations wait",
            r["rss_waiting_kb"] / 1024,
            "MiB",
            baseline="before the requests",
            baseline_value=r["rss_before_kb"] / 1024,
        ),
        figure("CPU while waiting, a second without a poll", idle_ms, "ms/s"),
    ]
    return {"benchmark": "waiting", **r, "headline": headline, "markdown": "\n".join(lines)}


if __name__ == "__main__":
    import sys

    print(run(quick="--quick" in sys.argv)["markdown"])
