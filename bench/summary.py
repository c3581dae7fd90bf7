"""The combined table of one ``python -m bench`` run: each benchmark's headline figures,
each beside the baseline measured in the same run, and the machine they ran on.

A benchmark's result carries its headline figures under ``"headline"``, made
with :func:`figure`; :func:`write` puts every benchmark's together in
``summary.md`` and ``summary.json``.
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


def figure(
    what: str,
    value: float,
    unit: str,
    *,
    baseline: str | None = None,
    baseline_value: float | None = None,
) -> dict[str, Any]:
    """One headline figure; with a baseline, ``ratio`` is ``value / baseline_value``."""
    ratio = None
    if baseline_value:
        ratio = value / baseline_value
    return {
        "figure": what,
        "value": float(value),
        "unit": unit,
        "baseline": baseline,
        "baseline_value": None if baseline_value is None else float(baseline_value),
        "ratio": ratio,
    }


def _first(path: str, key: str) -> str | None:
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    for line in lines:
        name, _, value = line.partition(":")
        if name.strip() == key:
            return value.strip()
    return None


def machine(now: datetime | None = None) -> dict[str, Any]:
    """What the figures were measured on: CPU model, cores, RAM, Python, date (UTC)."""
    memory = _first("/proc/meminfo", "MemTotal")  # "16314928 kB"
    ram_gib = int(memory.split()[0]) / 1024 / 1024 if memory else None
    moment = now or datetime.now(timezone.utc)
    return {
        "cpu": _first("/proc/cpuinfo", "model name") or platform.processor() or "unknown",
        "cores": os.cpu_count(),
        "ram_gib": None if ram_gib is None else round(ram_gib, 1),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
        "date": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def machine_line(facts: Mapping[str, Any]) -> str:
    ram = "RAM unknown" if facts["ram_gib"] is None else f"{facts['ram_gib']:.1f} GiB RAM"
    return (
        f"{facts['cpu']}, {facts['cores']} cores, {ram}, Python {facts['python']}, "
        f"{facts['system']}; {facts['date']}"
    )


def _number(value: float) -> str:
    if value == int(value) and abs(value) < 1e6:
        return f"{int(value):,}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def markdown(
    results: Mapping[str, Mapping[str, Any]], facts: Mapping[str, Any], *, quick: bool
) -> str:
    lines = [
        "### Every benchmark, one run" + (" (--quick: smaller sizes)" if quick else ""),
        "",
        f"Machine: {machine_line(facts)}.",
        "",
        "| benchmark | figure | value | baseline (same run) | baseline value | ratio |",
        "|---|---|---:|---|---:|---:|",
    ]
    for name, result in results.items():
        for row in result["headline"]:
            base, ratio = row["baseline_value"], row["ratio"]
            lines.append(
                f"| {name} | {row['figure']} | {_number(row['value'])} {row['unit']} "
                f"| {row['baseline'] or '-'} "
                f"| {'-' if base is None else _number(base) + ' ' + row['unit']} "
                f"| {'-' if ratio is None else f'{ratio:.2f}x'} |"
            )
    return "\n".join(lines)


def document(
    results: Mapping[str, Mapping[str, Any]], facts: Mapping[str, Any], *, quick: bool
) -> dict[str, Any]:
    return {
        "machine": dict(facts),
        "quick": quick,
        "benchmarks": {name: list(result["headline"]) for name, result in results.items()},
    }


def write(
    out: Path, results: Mapping[str, Mapping[str, Any]], facts: Mapping[str, Any], *, quick: bool
) -> str:
    """Write ``summary.md`` and ``summary.json`` under ``out``; the Markdown."""
    text = markdown(results, facts, quick=quick)
    (out / "summary.md").write_text(text + "\n", encoding="utf-8")
    (out / "summary.json").write_text(
        json.dumps(document(results, facts, quick=quick), indent=2) + "\n", encoding="utf-8"
    )
    return text
