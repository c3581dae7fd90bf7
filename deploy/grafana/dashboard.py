#!/usr/bin/env python3
"""Writes nova-autopilot.json, the Grafana dashboard of nova-autopilot's metrics.

    python3 deploy/grafana/dashboard.py            # (re)write nova-autopilot.json
    python3 deploy/grafana/dashboard.py --check    # exit 1 when the file is not what this writes

Plain JSON built here, no dependency: edit the panels below, run it, commit both.
The dashboard asks a Prometheus data source (the ``datasource`` variable) for the
daemons of a scrape job (``job``, ``nova-autopilot``) and instance (``instance``).
tests/deploy/test_grafana_dashboard.py checks that every query parses and names
only exported metrics, and tests/integration/test_alerts.py that each returns series
from a real Prometheus scraping a real daemon.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUT = HERE / "nova-autopilot.json"
SEL = 'job=~"$job", instance=~"$instance"'
RATE = "$__rate_interval"
INSTANCES = 'label_values(nova_autopilot_build_info{job=~"$job"}, instance)'
BREAKER_STATES = {"0": ("closed", "green"), "1": ("half-open", "orange"), "2": ("open", "red")}


def q(expr: str, legend: str) -> dict[str, Any]:
    return {"expr": expr, "legendFormat": legend}


def metric(name: str) -> str:
    """The daemon's metric ``nova_autopilot_<name>`` of the chosen job and instances."""
    return f"nova_autopilot_{name}{{{SEL}}}"


def over(function: str, by: str, name: str, legend: str) -> dict[str, Any]:
    """``sum by (by) (function(metric[$__rate_interval]))``: rate or increase."""
    return q(f"sum by ({by}) ({function}({metric(name)}[{RATE}]))", legend)


def quantile(level: float) -> dict[str, Any]:
    buckets = f"rate({metric('operation_duration_seconds_bucket')}[{RATE}])"
    return q(
        f"histogram_quantile({level}, sum by (le, action) ({buckets}))",
        f"p{level * 100:g} {{{{action}}}}",
    )


def panel(
    title: str,
    *targets: dict[str, Any],
    unit: str = "short",
    kind: str = "timeseries",
    width: int = 12,
    description: str = "",
) -> dict[str, Any]:
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
        "targets": [dict(t, refId=chr(ord("A") + i)) for i, t in enumerate(targets)],
        "gridPos": {"w": width, "h": 8},
    }


def breakers() -> dict[str, Any]:
    p = panel(
        "Circuit breakers",
        q(f"max by (scope) ({metric('breaker_state')})", "{{scope}}"),
        kind="stat",
        width=8,
        description="0 closed, 1 half-open, 2 open (docs/runbook.md#a-circuit-breaker-opened)",
    )
    texts = {v: {"text": t, "color": c} for v, (t, c) in BREAKER_STATES.items()}
    p["fieldConfig"]["defaults"]["mappings"] = [{"type": "value", "options": texts}]
    p["fieldConfig"]["defaults"]["color"] = {"mode": "fixed"}
    p["options"] = {"colorMode": "background", "textMode": "value_and_name"}
    return p


def row(title: str) -> dict[str, Any]:
    return {
        "type": "row",
        "title": title,
        "collapsed": False,
        "panels": [],
        "gridPos": {"w": 24, "h": 1},
    }


def panels() -> list[dict[str, Any]]:
    return [
        row("Health"),
        panel(
            "Ready and alive",
            q(f"min by (instance) ({metric('ready')})", "ready {{instance}}"),
            q(f"min by (instance) ({metric('alive')})", "alive {{instance}}"),
            description="ready: /readyz says so (consumers, journal, Nova); alive: not wedged",
            width=24,
        ),
        row("Decisions and outcomes"),
        panel(
            "Decisions per policy and outcome",
            over("rate", "policy, outcome", "decisions_total", "{{policy}} {{outcome}}"),
            unit="ops",
        ),
        panel(
            "Operations finished by action and outcome",
            over("rate", "action, outcome", "operations_finished_total", "{{action}} {{outcome}}"),
            unit="ops",
        ),
        panel("Operation durations (p50, p95)", quantile(0.5), quantile(0.95), unit="s"),
        panel(
            "Events received and matched",
            over("rate", "source", "events_received_total", "received {{source}}"),
            over("rate", "source", "events_matched_total", "matched {{source}}"),
            unit="ops",
        ),
        row("Queue and work in progress"),
        panel(
            "Operations in flight and held (queue lag)",
            q(f"sum by (action) ({metric('operations_in_flight')})", "in flight {{action}}"),
            q(f"max by (phase) ({metric('operations_held')})", "held {{phase}}"),
            description="held: decided, queued behind the server's operation or awaiting approval",
        ),
        panel(
            "Dead letters and drops by reason",
            over("increase", "queue, reason", "dead_lettered_total", "{{queue}} {{reason}}"),
            over("increase", "reason", "events_dropped_total", "dropped {{reason}}"),
        ),
        row("Guards"),
        panel(
            "Guards' refusals",
            over("increase", "guard", "guard_refusals_total", "{{guard}}"),
            width=16,
        ),
        breakers(),
        row("Nova and the broker"),
        panel(
            "Nova requests by call and status",
            over("rate", "call, status", "nova_requests_total", "{{status}} {{call}}"),
            unit="reqps",
        ),
        panel(
            "Consumers up and reconnects",
            q(f"min by (consumer) ({metric('consumer_up')})", "up {{consumer}}"),
            over("increase", "consumer", "broker_reconnects_total", "reconnects {{consumer}}"),
        ),
    ]


def placed(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Lays the panels out left to right, a new line when the width of 24 is full."""
    x = y = line = 0
    for number, item in enumerate(items, start=1):
        grid = item["gridPos"]
        if x + grid["w"] > 24:
            x, y, line = 0, y + line, 0
        grid.update(x=x, y=y)
        item["id"] = number
        x, line = x + grid["w"], max(line, grid["h"])
    return items


def variable(name: str, query: str, *, label: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "query": {"query": query, "refId": name},
        "refresh": 2,
        "includeAll": name == "instance",
        "multi": name == "instance",
        "current": {},
    }


def dashboard() -> dict[str, Any]:
    return {
        "uid": "nova-autopilot",
        "title": "nova-autopilot",
        "description": "Decisions, operations, guards, breakers, Nova, the broker",
        "tags": ["nova-autopilot", "openstack"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {
            "list": [
                {"name": "datasource", "label": "Data source", "type": "datasource"}
                | {"query": "prometheus", "current": {}},
                variable("job", "label_values(nova_autopilot_build_info, job)", label="Job"),
                variable("instance", INSTANCES, label="Instance"),
            ]
        },
        "annotations": {"list": []},
        "links": [],
        "panels": placed(panels()),
    }


def text() -> str:
    return json.dumps(dashboard(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    if argv == ["--check"]:
        if OUT.read_text(encoding="utf-8") != text():
            print(f"{OUT} is not what {Path(__file__).name} writes: run it", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text(), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
