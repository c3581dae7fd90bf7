"""The names the operator's pages quote exist in the code.

The runbook tells what each log line and each metric means; a renamed or
removed one would leave it describing something that never comes. Every name
in its table of log lines must be logged somewhere by the package (as a
literal), or be an ``<action>.<outcome>`` line of a real action and outcome;
every metric any page names must be exported by the daemon's collector.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from nova_autopilot.journal import OUTCOMES
from nova_autopilot.policies.model import ACTIONS
from tests.metric_names import exported_metrics

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "operator" / "nova_autopilot"
DOCS = ROOT / "docs"
RUNBOOK = DOCS / "runbook.md"


def logged_names() -> set[str]:
    found: set[str] = set()
    for source in PACKAGE.rglob("*.py"):
        found.update(re.findall(r'"([a-z_]+\.[a-z_]+)"', source.read_text(encoding="utf-8")))
    return found


def runbook_log_names() -> list[str]:
    text = RUNBOOK.read_text(encoding="utf-8")
    section = text.split("## Log lines", 1)[1].split("\n## ", 1)[0]
    names = []
    for line in section.splitlines():
        if line.startswith("| `"):
            names.extend(re.findall(r"`([^`]+)`", line.split("|")[1]))
    return names


NAMES = runbook_log_names()


def test_the_runbook_lists_log_lines() -> None:
    assert len(NAMES) >= 15


@pytest.mark.parametrize("name", NAMES)
def test_every_log_line_in_the_runbook_is_logged_by_the_code(name: str) -> None:
    if name == "<action>.<outcome>":
        return
    action, _, outcome = name.partition(".")
    if action in ACTIONS:
        assert outcome in OUTCOMES, f"{name}: {outcome!r} is not an outcome"
        return
    assert name in logged_names(), f"the runbook quotes {name!r}, which nothing logs"


def documented_metrics() -> list[tuple[str, str]]:
    return sorted(
        {
            (page.name, name)
            for page in DOCS.glob("*.md")
            for name in re.findall(r"\bnova_autopilot_[a-z_]+", page.read_text(encoding="utf-8"))
        }
    )


METRICS = documented_metrics()


def test_the_runbook_names_the_metrics() -> None:
    assert sum(1 for page, _ in METRICS if page == RUNBOOK.name) >= 13


@pytest.mark.parametrize(("page", "name"), METRICS, ids=[f"{p}:{n}" for p, n in METRICS])
def test_every_metric_a_page_names_is_exported(page: str, name: str) -> None:
    assert name in exported_metrics(), f"{page} names {name}, which the daemon does not export"
