"""The Grafana dashboard of deploy/grafana: the committed JSON is what its script
writes, every panel's query parses (promtool reads them as recording rules) and
names only metrics the daemon exports, and the issue's subjects each have a panel."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from tests.deploy.support import GRAFANA, concrete, dashboard, panel_queries, tool
from tests.metric_names import NAME, exported_metrics

QUERIES = panel_queries()


def test_the_json_is_what_the_script_writes() -> None:
    done = subprocess.run(
        [sys.executable, str(GRAFANA / "dashboard.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


def test_every_query_names_exported_metrics_only() -> None:
    exported = exported_metrics()
    for title, expr in QUERIES:
        names = set(NAME.findall(expr))
        assert names, f"{title}: {expr} names no metric of the daemon"
        assert names <= exported, f"{title}: not exported: {names - exported}"


def test_every_query_parses(tmp_path: Path) -> None:
    rules = [
        {"record": f"panel:query_{n}", "expr": concrete(e)} for n, (_, e) in enumerate(QUERIES)
    ]
    path = tmp_path / "queries.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = subprocess.run(
        [tool("promtool"), "check", "rules", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules)} rules found" in done.stdout


def test_the_subjects_of_the_issue_each_have_a_panel() -> None:
    queried = " ".join(expr for _, expr in QUERIES)
    for name in (
        "decisions_total",
        "operations_finished_total",
        "operation_duration_seconds_bucket",
        "operations_held",
        "operations_in_flight",
        "guard_refusals_total",
        "breaker_state",
        "nova_requests_total",
        "consumer_up",
    ):
        assert f"nova_autopilot_{name}{{" in queried, name


def test_panels_have_unique_ids_and_fit_the_grid() -> None:
    panels = dashboard()["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    for p in panels:
        assert p["gridPos"]["x"] + p["gridPos"]["w"] <= 24, p["title"]
    assert dashboard()["uid"] == "nova-autopilot"
