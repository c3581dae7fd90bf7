"""cliff has one home, ``cli/output.py``: the contract of ``.importlinter`` that says
so fails on a listing that would draw its own table with cliff or prettytable."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.integration.test_layers import copy_with, lint

CONTRACT = "Only cli.output imports cliff"


@pytest.mark.parametrize(
    ("module", "line"),
    [
        ("cli/journal_views.py", "from cliff.formatters.table import TableFormatter  # noqa"),
        ("reports/status.py", "import prettytable  # noqa"),
    ],
)
def test_cliff_outside_its_home_fails_the_check(tmp_path: Path, module: str, line: str) -> None:
    result = lint(copy_with(tmp_path, module, line))

    assert result.returncode != 0
    verdicts = " ".join(result.stdout.split())
    assert re.search(re.escape(CONTRACT) + r"[^.]*? BROKEN", verdicts), result.stdout
