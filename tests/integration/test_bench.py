"""``python -m bench`` runs every benchmark end to end and writes the combined table.

The quick mode shrinks each benchmark to seconds; its figures are not looked
at, only that every benchmark ran and reported numbers (benchmarks report,
tests never judge a time). Intake and latency use the local RabbitMQ.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from bench.__main__ import BENCHMARKS

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def test_the_quick_run_writes_every_benchmarks_table_and_the_summary(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    for name in BENCHMARKS:
        assert json.loads((tmp_path / f"{name}.json").read_text())["benchmark"] == name
        assert (tmp_path / f"{name}.md").read_text().startswith("### ")

    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["quick"] is True
    assert list(summary["benchmarks"]) == list(BENCHMARKS)
    for name, figures in summary["benchmarks"].items():
        assert figures, name
        for row in figures:
            assert isinstance(row["value"], float), (name, row)
            assert math.isfinite(row["value"]), (name, row)
            assert row["unit"], (name, row)
            if row["baseline"] is not None:
                assert isinstance(row["baseline_value"], float), (name, row)
                assert isinstance(row["ratio"], float), (name, row)
                assert math.isfinite(row["ratio"]), (name, row)
    machine = summary["machine"]
    assert machine["cpu"]
    assert machine["cores"] >= 1
    assert machine["ram_gib"] > 0
    assert machine["python"].count(".") == 2
    assert machine["date"].endswith("Z")

    table = (tmp_path / "summary.md").read_text()
    assert f"Machine: {machine['cpu']}, {machine['cores']} cores" in table
    rows = [line.split(" | ")[0].strip("| ") for line in table.splitlines() if line[:2] == "| "]
    assert set(rows) == {"benchmark", *BENCHMARKS}
    assert table in done.stdout
