"""The alerting rules of deploy/prometheus: promtool checks them and runs their unit
tests (series in, alerts expected firing and not firing); each one names only
metrics the daemon exports and links to a section of the runbook."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from tests.deploy.support import RULES, RULES_TESTS, alert_rules, runbook_anchors, signal, tool
from tests.metric_names import NAME, exported_metrics

RULE_NAMES = [rule["alert"] for rule in alert_rules()]


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("promtool"), *args],
        cwd=RULES.parent,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_promtool_checks_the_rules() -> None:
    done = promtool("check", "rules", RULES.name)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(RULE_NAMES)} rules found" in done.stdout


def test_the_rules_unit_tests_pass() -> None:
    done = promtool("test", "rules", RULES_TESTS.name)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_the_issue_s_alerts_are_there() -> None:
    wanted = {"Down", "NotReady", "Wedged", "BreakerOpen", "DeadLetters", "DecisionsLagging"}
    wanted |= {"OperationsPastDeadline", "ApprovalsWaiting", "RefusalsSpiking"}
    assert {f"NovaAutopilot{name}" for name in wanted} <= set(RULE_NAMES)


def test_every_alert_is_tested_firing() -> None:
    tests = RULES_TESTS.read_text(encoding="utf-8")
    assert not [name for name in RULE_NAMES if f"alertname: {name}\n" not in tests]


@pytest.mark.parametrize("rule", alert_rules(), ids=RULE_NAMES)
def test_a_rule_uses_exported_metrics_and_links_to_its_runbook_section(
    rule: dict[str, Any],
) -> None:
    names = set(NAME.findall(rule["expr"]))
    assert names or rule["expr"].startswith("up{"), rule["expr"]
    assert names <= exported_metrics(), f"not exported: {names - exported_metrics()}"
    assert signal(rule["expr"]) != rule["expr"].strip() or " unless " in rule["expr"]
    url = rule["annotations"]["runbook_url"]
    page, _, anchor = url.partition("#")
    assert page == "docs/runbook.md"
    assert anchor == rule["alert"].lower()
    assert anchor in runbook_anchors(), f"docs/runbook.md has no section #{anchor}"
    assert rule["labels"]["severity"] in ("page", "ticket")
