"""Matching cost against the number of policies, with the JSON decode cost beside it.

A typical event (a Nova ``instance.update`` on the wire) meets policy sets of
10, 100 and 1,000 policies. In every set the same handful of policies listen
to ``instance.update`` (the seed policies and five whose conditions fail);
the rest listen to other event types, exact or by glob, as a large
deployment's would. Matching is indexed by event type, so the policies that
cannot match must not add cost: the 1,000/10 ratio is the figure to watch
(the target is at most ~2x).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.summary import figure
from nova_autopilot.events import parse_message
from nova_autopilot.policies import PolicySet, load_texts
from tests.samples import on_the_wire, sample

SEED = Path(__file__).resolve().parents[1] / "config" / "policies.yaml"
SIZES = (10, 100, 1000)

_CANDIDATE = """
  - name: watch-{i}
    when:
      source: nova
      event: instance.update
      match:
        - field: payload.state_update.state
          equals: error
        - field: payload.flavor.vcpus
          gt: {threshold}
    do: {{action: rescue, params: {{server: "{{{{ instance_id }}}}"}}}}
"""
_OTHER = """
  - name: other-{i}
    when:
      event: {event}
      match: {{field: payload.state, in: [error, stopped]}}
    do: {{action: rescue, params: {{server: "{{{{ instance_id }}}}"}}}}
"""


def policy_set(size: int) -> PolicySet:
    """The seed policies, five failing candidates, and ``size - 8`` others."""
    seed = SEED.read_text()
    extra = "".join(_CANDIDATE.format(i=i, threshold=64 + i) for i in range(5))
    for i in range(size - 8):
        event = f"custom.service{i % 50}.*" if i % 5 == 0 else f"custom.event{i}.end"
        extra += _OTHER.format(i=i, event=event)
    return load_texts([("seed.yaml", seed), ("generated.yaml", "policies:" + extra)])


def _best_rate(fn: Callable[[], Any], count: int, repeats: int) -> float:
    """Operations per second, best of ``repeats`` runs of ``count`` calls."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(count):
            fn()
        best = min(best, time.perf_counter() - start)
    return count / best


def typical_message() -> bytes:
    notification = sample("instance-update")
    data = notification["payload"]["nova_object.data"]
    data["state_update"]["nova_object.data"].update(old_state="active", state="error")
    data["launched_at"] = "2026-11-25T09:00:00Z"
    return on_the_wire(notification)


def run(*, quick: bool = False) -> dict[str, Any]:
    count, repeats = (1_000, 2) if quick else (20_000, 5)
    wire = typical_message()
    event = parse_message(wire)

    def decode() -> Any:
        return json.loads(json.loads(wire)["oslo.message"])

    rows = []
    decode_rate = _best_rate(decode, count, repeats)
    parse_rate = _best_rate(lambda: parse_message(wire), count, repeats)
    for size in SIZES:
        policies = policy_set(size)
        assert len(policies) == size
        assert [m.policy.name for m in policies.match(event)] == ["rescue-failed-boot"]
        match_rate = _best_rate(lambda p=policies: p.match(event), count, repeats)
        full_rate = _best_rate(lambda p=policies: p.match(parse_message(wire)), count, repeats)
        rows.append({"policies": size, "match_per_s": match_rate, "parse_match_per_s": full_rate})
    base = rows[0]
    for row in rows:
        row["match_cost_vs_10"] = base["match_per_s"] / row["match_per_s"]
        row["parse_match_cost_vs_10"] = base["parse_match_per_s"] / row["parse_match_per_s"]
    lines = [
        "### Matching: events per second against the number of policies",
        "",
        f"Typical event: Nova `instance.update` on the wire ({len(wire)} bytes).",
        f"JSON decode alone (envelope + message): {decode_rate:,.0f}/s "
        f"({1e6 / decode_rate:.1f} µs); decode + normalize into an Event: "
        f"{parse_rate:,.0f}/s ({1e6 / parse_rate:.1f} µs).",
        "",
        "| policies | match only /s | µs | cost vs 10 | parse + match /s | µs | cost vs 10 |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['policies']:,} | {row['match_per_s']:,.0f} | {1e6 / row['match_per_s']:.1f} "
            f"| {row['match_cost_vs_10']:.2f}x | {row['parse_match_per_s']:,.0f} "
            f"| {1e6 / row['parse_match_per_s']:.1f} | {row['parse_match_cost_vs_10']:.2f}x |"
        )
    small, large = rows[0], rows[-1]
    headline = [
        figure(
            f"match only, {large['policies']:,} policies",
            1e6 / large["match_per_s"],
            "µs",
            baseline=f"{small['policies']} policies",
            baseline_value=1e6 / small["match_per_s"],
        ),
        figure(
            f"parse + match, {large['policies']:,} policies",
            1e6 / large["parse_match_per_s"],
            "µs",
            baseline="JSON decode alone",
            baseline_value=1e6 / decode_rate,
        ),
    ]
    return {
        "benchmark": "matching",
        "decode_per_s": decode_rate,
        "parse_per_s": parse_rate,
        "rows": rows,
        "headline": headline,
        "markdown": "\n".join(lines),
    }
