"""The shipped catalogue of event types is held to the code and data that emit them."""

from __future__ import annotations

import json
from pathlib import Path

from nova_autopilot.actions.boot import VERDICTS
from nova_autopilot.engine.sweeps import EVENT_TYPES as SWEEP_TYPES
from nova_autopilot.events.request import OPERATION_TYPES
from nova_autopilot.policies.event_types import EventTypes, catalogue

ROOT = Path(__file__).resolve().parents[3]
SAMPLES = Path("/work/shared/reference/nova-notification-samples")


def test_the_daemon_s_own_sources_are_those_its_code_emits() -> None:
    assert catalogue()["sweep"] == frozenset(SWEEP_TYPES.values())
    assert catalogue()["autopilot"] == frozenset(VERDICTS.values())
    assert catalogue()["request"] == frozenset(OPERATION_TYPES)


def test_every_nova_sample_of_the_tests_and_the_seed_policies_is_known() -> None:
    samples = [*(ROOT / "tests").rglob("*.json"), *SAMPLES.glob("*.json")]
    types = set()
    for path in samples:
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and isinstance(data.get("event_type"), str):
            types.add(data["event_type"])
    assert "instance.update" in catalogue()["nova"]
    assert "compute.instance.update" in catalogue()["nova"]
    assert types <= catalogue()["nova"], sorted(types - catalogue()["nova"])


def test_misspellings_get_a_did_you_mean_and_request_types_are_free() -> None:
    types = EventTypes()
    assert "did you mean instance.update" in str(types.problem("nova", "instance.updte"))
    assert "compute.instance.update.end" not in catalogue()["nova"]
    assert types.problem("nova", "compute.instance.udpate.end") is not None
    assert types.problem("request", "quota.requets.approved") is None
    assert types.problem("any", "server.repair.done") is None
    assert types.problem("nova", "instance.*.error") is None
    declared = EventTypes({"request": frozenset({"quota.request.approved"})})
    problem = declared.problem("request", "quota.requets.approved")
    assert problem is not None
    assert "did you mean quota.request.approved" in problem
