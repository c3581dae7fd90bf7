"""What the tests of deploy/ share: where the rules and the dashboard are, what they
ask Prometheus, and the tools (promtool, prometheus) they need."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import yaml

from tests.unavailable import unavailable

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
RULES = PROMETHEUS / "nova-autopilot.rules.yml"
RULES_TESTS = PROMETHEUS / "nova-autopilot.rules.test.yml"
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "nova-autopilot.json"
RUNBOOK = ROOT / "docs" / "runbook.md"
#: The scrape job the rules expect.
JOB = "nova-autopilot"
#: What the dashboard's variables stand for when a test asks Prometheus itself.
VARIABLES = {"$__rate_interval": "1m", "$job": JOB, "$instance": ".+"}
#: The operators that end an alert's signal: comparisons and the set operators.
_CUT = re.compile(r"\s(==|!=|>=|<=|>|<|and|unless|or)\s")


def tool(name: str) -> str:
    """The path of a Prometheus tool (Debian's package ``prometheus`` brings both)."""
    path = shutil.which(name)
    if path is None:
        unavailable(f"{name} is not installed (apt-get install prometheus)")
    return path


def alert_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for group in document["groups"] for rule in group["rules"] if "alert" in rule]


def dashboard() -> dict[str, Any]:
    loaded = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def panel_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every query of every panel."""
    return [
        (panel["title"], target["expr"])
        for panel in dashboard()["panels"]
        for target in panel.get("targets", [])
    ]


def concrete(expr: str) -> str:
    """A dashboard query with its Grafana variables replaced, for Prometheus alone."""
    for variable, value in VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"a variable left in {expr!r}"
    return expr


def signal(expr: str) -> str:
    """What an alert watches: its expression up to the first comparison or set
    operator outside parentheses and braces (the whole expression when there is none).
    It returns series whenever the daemon is scraped, firing or not."""
    depth = 0
    for index, char in enumerate(expr):
        depth += char in "({["
        depth -= char in ")}]"
        if depth == 0 and (cut := _CUT.match(expr, index)):
            return expr[: cut.start()].strip()
    return expr.strip()


def runbook_anchors() -> set[str]:
    """The anchors of the runbook's headings, as the docs site's toc makes them."""
    headings = re.findall(r"^#+ (.+)$", RUNBOOK.read_text(encoding="utf-8"), re.MULTILINE)
    return {re.sub(r"[\s]+", "-", re.sub(r"[^\w\s-]", "", h).strip().lower()) for h in headings}
