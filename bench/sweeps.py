"""Nova requests and time per sweep, for 1,000 servers in the sandbox Nova.

The sandbox serves real HTTP (with Nova's ``max_limit`` of 1,000 servers a
page) and the sweep lists through openstacksdk. Three clouds of 1,000
servers:

* **mixed**: 900 ACTIVE, 40 VERIFY_RESIZE, 30 RESCUE, 30 ERROR (launched);
  policies for all three sweep event types;
* **all stuck**: 1,000 launched servers in ERROR, one policy for
  ``sweep.server.error``: a full page, so one request more;
* **no policy**: the mixed cloud, no policy listening to sweeps.

For each: the Nova requests of one sweep (counted by the cloud edge, and by
the sandbox), the time of the look (list calls + events, best of several),
and through the engine on a SQLite journal with dry-run policies: the first
sweep (every event a decision, journaled) and the next (every event a
duplicate of the same stuck state). ``--quick``: 100 servers (the mixed
cloud in the same proportions), one look.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench.summary import figure
from nova_autopilot.engine.sweeps import Sweeper
from nova_autopilot.journal import Journal
from nova_autopilot.logs import redact
from nova_autopilot.policies import PolicySet, load_texts
from nova_autopilot.sandbox import Sandbox
from tests.integration.stack import assemble

SERVERS = 1000
ALL_SWEEPS = """
policies:
  - name: finish-resizes
    mode: dry-run
    when: {source: sweep, event: sweep.server.verify_resize}
    do: {action: finish_resize, params: {server: {id: "{{ instance_id }}"}}}
  - name: unrescue
    mode: dry-run
    when: {source: sweep, event: sweep.server.rescue}
    do: {action: unrescue, params: {server: {id: "{{ instance_id }}"}}}
  - name: rescue
    mode: dry-run
    when: {source: sweep, event: sweep.server.error}
    do: {action: rescue, params: {server: {id: "{{ instance_id }}"}}}
"""
ERROR_ONLY = """
policies:
  - name: rescue
    mode: dry-run
    when: {source: sweep, event: sweep.server.error}
    do: {action: rescue, params: {server: {id: "{{ instance_id }}"}}}
"""
NO_SWEEPS = """
policies:
  - name: rescue-on-request
    when: {source: request, event: server.rescue.requested}
    do: {action: rescue, params: {server: "{{ payload.server }}"}}
"""


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _mixed(sandbox: Sandbox, servers: int) -> None:
    # 4 % resizes waiting for confirmation, 3 % rescued, 3 % launched in ERROR.
    stuck = servers // 100
    states = ["VERIFY_RESIZE"] * 4 * stuck + ["RESCUE"] * 3 * stuck + ["ERROR"] * 3 * stuck
    states += ["ACTIVE"] * (servers - len(states))
    for n, state in enumerate(states):
        old = "m1.small" if state == "VERIFY_RESIZE" else None
        flavor = "m1.large" if state == "VERIFY_RESIZE" else "m1.small"
        sandbox.add_server(f"s{n:04d}", flavor, state=state, old_flavor=old)


def _all_stuck(sandbox: Sandbox, servers: int) -> None:
    for n in range(servers):
        sandbox.add_server(f"s{n:04d}", "m1.small", state="ERROR")


def _listings(sandbox: Sandbox) -> int:
    return sum(n for call, n in sandbox.request_counts().items() if "/servers/detail" in call)


def measure(
    fill: Callable[[Sandbox, int], None], servers: int, policies: PolicySet, repeats: int
) -> dict[str, Any]:
    with Sandbox() as sandbox, tempfile.TemporaryDirectory() as tmp:
        sandbox.add_flavor("m1.small")
        sandbox.add_flavor("m1.large", vcpus=2)
        fill(sandbox, servers)
        journal = Journal.open(f"sqlite:///{Path(tmp) / 'journal.sqlite'}", redact=redact)
        cloud, _runner, engine = assemble(sandbox.url, journal, lambda: policies)
        try:
            sweeper = Sweeper(
                cloud=cloud,
                policies=lambda: policies,
                decide=engine.handle_events,
                clock=utc_now,
                interval_s=300,
            )
            looks = []
            for _ in range(repeats):
                before = _listings(sandbox)
                start = time.perf_counter()
                looked, events = sweeper.look()
                looks.append(time.perf_counter() - start)
                seen_by_nova = _listings(sandbox) - before
            start = time.perf_counter()
            first = sweeper.sweep()
            first_s = time.perf_counter() - start
            start = time.perf_counter()
            again = sweeper.sweep()
            again_s = time.perf_counter() - start
            return {
                "listed": looked.servers,
                "events": len(events),
                "statuses": list(looked.statuses),
                "requests": looked.requests,
                "requests_seen_by_nova": seen_by_nova,
                "look_s": min(looks),
                "first_sweep_s": first_s,
                "first_operations": first.operations,
                "next_sweep_s": again_s,
                "next_operations": again.operations,
            }
        finally:
            journal.close()
            cloud.close()


def run(*, quick: bool = False) -> dict[str, Any]:
    servers, repeats = (100, 1) if quick else (SERVERS, 5)
    cases = {
        "mixed": (_mixed, load_texts([("bench.yaml", ALL_SWEEPS)])),
        "all stuck": (_all_stuck, load_texts([("bench.yaml", ERROR_ONLY)])),
        "no policy": (_mixed, load_texts([("bench.yaml", NO_SWEEPS)])),
    }
    rows = {
        name: measure(fill, servers, policies, repeats) for name, (fill, policies) in cases.items()
    }
    lines = [
        f"### One sweep over {servers:,} servers in the sandbox Nova (max_limit 1,000)",
        "",
        "| cloud | statuses listed | servers listed | events | Nova requests | look "
        "| first sweep (decisions journaled) | next sweep (duplicates) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in rows.items():
        assert row["requests"] == row["requests_seen_by_nova"], row
        lines.append(
            f"| {name} | {', '.join(row['statuses']) or '-'} | {row['listed']:,} "
            f"| {row['events']:,} | {row['requests']} | {row['look_s'] * 1000:.0f} ms "
            f"| {row['first_sweep_s']:.2f} s ({row['first_operations']:,}) "
            f"| {row['next_sweep_s']:.2f} s ({row['next_operations']}) |"
        )
    stuck = rows["all stuck"]
    headline = [
        figure(
            f"Nova requests for one sweep, {stuck['listed']:,} servers stuck",
            stuck["requests"],
            "requests",
        ),
        figure(
            f"next sweep, {stuck['events']:,} duplicates",
            stuck["next_sweep_s"],
            "s",
            baseline="first sweep (decisions journaled)",
            baseline_value=stuck["first_sweep_s"],
        ),
    ]
    return {
        "benchmark": "sweeps",
        "servers": servers,
        "rows": rows,
        "headline": headline,
        "markdown": "\n".join(lines),
    }
