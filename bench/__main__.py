"""Run every benchmark and write its table (Markdown and JSON) under bench/results/."""

from __future__ import annotations

import argparse
import json
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path

from bench import intake, latency, matching, observe, operations, sweeps, waiting, writes

BENCHMARKS = {
    "matching": matching.run,
    "intake": intake.run,
    "operations": operations.run,
    "waiting": waiting.run,
    "latency": latency.run,
    "writes": writes.run,
    "observe": observe.run,
    "sweeps": sweeps.run,
}


def machine() -> str:
    import os

    return f"{platform.node()} · {os.cpu_count()} cores · Python {platform.python_version()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", choices=[[], *BENCHMARKS], help="default: all")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (smoke run)")
    parser.add_argument("--out", default="bench/results", help="where the tables are written")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    for name in args.names or list(BENCHMARKS):
        result = BENCHMARKS[name](quick=args.quick)
        result.update(machine=machine(), when=stamp)
        (out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
        (out / f"{name}.md").write_text(result["markdown"] + "\n")
        print(result["markdown"])
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
