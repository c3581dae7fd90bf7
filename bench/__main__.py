"""Run every benchmark; write its table (Markdown and JSON) under bench/results/, and one
combined table of every benchmark's headline figures and the machine (summary.md, .json)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from bench import (
    decisions,
    intake,
    latency,
    matching,
    observe,
    operations,
    soak,
    summary,
    sweeps,
    waiting,
    writes,
)

BENCHMARKS = {
    "matching": matching.run,
    "intake": intake.run,
    "decisions": decisions.run,
    "operations": operations.run,
    "waiting": waiting.run,
    "latency": latency.run,
    "writes": writes.run,
    "observe": observe.run,
    "sweeps": sweeps.run,
    "soak": soak.run,
}
#: What runs without a name: every benchmark but the soak (half an hour; name it).
DEFAULT = [name for name in BENCHMARKS if name != "soak"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "names", nargs="*", choices=[[], *BENCHMARKS], help="default: all but the soak"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="every benchmark at a small size, seconds each (a smoke run: the figures "
        "are not the ones to quote)",
    )
    parser.add_argument("--out", default="bench/results", help="where the tables are written")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    facts = summary.machine()
    results = {}
    for name in args.names or DEFAULT:
        start = time.monotonic()
        result = BENCHMARKS[name](quick=args.quick)
        took = time.monotonic() - start
        result.update(
            machine=summary.machine_line(facts),
            when=facts["date"],
            quick=args.quick,
            seconds=round(took, 1),
        )
        (out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
        (out / f"{name}.md").write_text(result["markdown"] + "\n")
        print(result["markdown"])
        print(f"\n({name}: {took:.1f} s)\n", flush=True)
        results[name] = result
    print(summary.write(out, results, facts, quick=args.quick))
    return 0


if __name__ == "__main__":
    sys.exit(main())
