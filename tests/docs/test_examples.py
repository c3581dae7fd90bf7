"""Every policy example in the documentation passes ``nova-autopilot check``.

``docs/policies.md`` shows whole policy files, lists of policies, and single
conditions. Each ```yaml block is taken as it stands (a file with
``policies:``), or put where it belongs in a minimal policy (a list of
policies, a condition, a ``match:``), written to a file, and checked by the
command an operator runs. Any other page's ```yaml block that is a policy file
is checked the same way. So the documented examples cannot rot.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from nova_autopilot.cli import main

DOCS = Path(__file__).resolve().parents[2] / "docs"
REFERENCE = "policies.md"
_FENCE = re.compile(r"^```yaml[^\n]*\n(.*?)^```", re.M | re.S)
_CONDITION_KEYS = {"field", "all", "any", "not"}


@dataclass(frozen=True)
class Example:
    page: str
    line: int
    text: str

    def __str__(self) -> str:
        return f"{self.page}:{self.line}"


def yaml_blocks(page: Path) -> list[Example]:
    text = page.read_text(encoding="utf-8")
    return [
        Example(page.name, text.count("\n", 0, found.start()) + 1, found.group(1))
        for found in _FENCE.finditer(text)
    ]


def _is_condition(value: Any) -> bool:
    if isinstance(value, list):
        return bool(value) and all(_is_condition(item) for item in value)
    return isinstance(value, dict) and bool(_CONDITION_KEYS & set(value))


def _around(match: Any) -> str:
    policy = {
        "name": "docs-example",
        "when": {"source": "nova", "event": "instance.update", "match": match},
        "do": {"action": "rescue", "params": {"server": {"id": "{{ instance_id }}"}}},
    }
    return yaml.safe_dump({"policies": [policy]}, sort_keys=False)


def as_policy_file(example: Example) -> str | None:
    """The example as a policy file, or None when it is not a policy example."""
    data = yaml.safe_load(example.text)
    if isinstance(data, dict) and "policies" in data:
        return example.text
    if isinstance(data, list) and data and all(isinstance(p, dict) and "name" in p for p in data):
        return yaml.safe_dump({"policies": data}, sort_keys=False)
    if isinstance(data, dict) and set(data) == {"match"}:
        return _around(data["match"])
    if _is_condition(data):
        return _around(data)
    return None


def policy_examples() -> list[Example]:
    found = []
    for page in sorted(DOCS.glob("*.md")):
        for example in yaml_blocks(page):
            if page.name == REFERENCE or as_policy_file(example) is not None:
                found.append(example)
    return found


EXAMPLES = policy_examples()


def check(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str) -> tuple[int, str]:
    path = tmp_path / "policies.yaml"
    path.write_text(text, encoding="utf-8")
    code = main(["check", "--policies", str(path)])
    out, err = capsys.readouterr()
    return code, out + err


def test_the_reference_has_an_example_of_every_part() -> None:
    reference = [e for e in EXAMPLES if e.page == REFERENCE]
    assert len(reference) >= 10
    text = "\n".join(e.text for e in reference)
    for word in (
        "resize",
        "rescue",
        "unrescue",
        "verify_boot",
        "finish_resize",
        "longer_than",
        "source: sweep",
        "dry-run",
        "raise_quota",
        "gate",
        "budget",
        "cooldown",
        "default(",
        "mode: approve",
        "when_busy",
        "task_timeout",
        "budget_per_project",
        "budget_per_host",
        "budget_per_zone",
        "max_concurrent",
        "loop:",
        "breaker:",
        "max_wait",
        "gate_timeout",
        "on_failure",
    ):
        assert word in text, f"no policy example in {REFERENCE} shows {word!r}"


@pytest.mark.parametrize("example", EXAMPLES, ids=str)
def test_every_documented_policy_example_passes_check(
    example: Example, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = as_policy_file(example)
    assert text is not None, f"{example}: a yaml block that is not a policy example"
    code, output = check(tmp_path, capsys, text)
    assert code == 0, f"{example}: nova-autopilot check refused the example:\n{output}"


def test_a_broken_condition_example_would_be_caught(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = Example("policies.md", 1, "- field: payload.state\n  equal: error\n")
    text = as_policy_file(broken)
    assert text is not None
    code, output = check(tmp_path, capsys, text)
    assert code == 1
    assert "needs exactly one operator" in output
