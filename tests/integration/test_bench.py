"""``python -m bench`` runs every benchmark end to end and writes the combined table.

The quick mode shrinks each benchmark to seconds; its figures are not looked
at, only that every benchmark ran and reported numbers (benchmarks report,
tests never judge a time). Intake and latency use the local RabbitMQ.

Most of a quick benchmark's time is spent waiting (on the broker, a database, a
paced publisher), so the benchmarks run in a few ``python -m bench --quick``
processes at once: the longest ones each alone, the others together in one run
(whose combined table then has several benchmarks, in their order).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from bench.__main__ import BENCHMARKS

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
#: The benchmarks that take the longest in quick mode, each run on its own.
ALONE = ("decisions", "latency", "intake")


def runs() -> list[list[str]]:
    """The benchmarks of each ``python -m bench --quick``, every one in exactly one."""
    alone = [[name] for name in BENCHMARKS if name in ALONE]
    together = [name for name in BENCHMARKS if name not in ALONE]
    return [*alone, together] if together else alone


def quick_run(names: list[str], out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench", "--quick", *names, "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_the_quick_run_writes_every_benchmarks_table_and_the_summary(tmp_path: Path) -> None:
    groups = runs()
    assert sorted(name for names in groups for name in names) == sorted(BENCHMARKS)
    assert max(len(names) for names in groups) > 1  # one combined table of several
    outs = [tmp_path / f"run-{n}" for n in range(len(groups))]
    with ThreadPoolExecutor(len(groups)) as pool:
        done = list(pool.map(quick_run, groups, outs))
    for names, out, ran in zip(groups, outs, done, strict=True):
        check_run(names, out, ran)


def check_run(names: list[str], out: Path, done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    for name in names:
        assert json.loads((out / f"{name}.json").read_text())["benchmark"] == name
        assert (out / f"{name}.md").read_text().startswith("### ")

    summary = json.loads((out / "summary.json").read_text())
    assert summary["quick"] is True
    assert list(summary["benchmarks"]) == names  # in the order of BENCHMARKS
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

    table = (out / "summary.md").read_text()
    assert f"Machine: {machine['cpu']}, {machine['cores']} cores" in table
    rows = [line.split(" | ")[0].strip("| ") for line in table.splitlines() if line[:2] == "| "]
    assert set(rows) == {"benchmark", *names}
    assert table in done.stdout
