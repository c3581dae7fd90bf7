"""Each fuzzer runs for a bounded time from its seed corpus and finds no crash:
whatever bytes arrive, parsing, verifying a request and loading a policy end
in their documented error (BadMessage, PolicyError) or succeed.

The time per fuzzer is ``NOVA_AUTOPILOT_FUZZ_SECONDS`` (10 by default); the
fuzzers run one after the other, each in its own process (tests/fuzz/run.py).
A crash fails the test with the crashing input, which libFuzzer saved; keep it
in ``tests/fuzz/corpus/<target>/`` (as ``found-<what>``) after fixing the bug.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fuzz.targets import TARGETS

pytestmark = [pytest.mark.fuzz, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
CORPUS = Path(__file__).parent / "corpus"
SECONDS = int(os.environ.get("NOVA_AUTOPILOT_FUZZ_SECONDS", "10"))
_DONE = re.compile(r"Done (\d+) runs in (\d+) second")


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_the_fuzzer_finds_no_crash(target: str, tmp_path: Path) -> None:
    seeds = CORPUS / target
    assert len(list(seeds.iterdir())) >= 2, f"no seed corpus for {target}"
    found = tmp_path / "found"
    found.mkdir()
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.fuzz.run",
            target,
            f"-max_total_time={SECONDS}",
            "-rss_limit_mb=1024",
            "-timeout=10",
            f"-artifact_prefix={tmp_path}/",
            "-print_final_stats=1",
            str(found),
            str(seeds),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=SECONDS * 4 + 120,
        check=False,
    )
    crashes = sorted(p.name for p in tmp_path.iterdir() if p.is_file())
    report = f"{target} crashed ({crashes}); inputs in {tmp_path}\n{run.stderr[-6000:]}"
    assert not crashes, report
    assert run.returncode == 0, report
    done = _DONE.search(run.stderr)
    assert done is not None, run.stderr[-3000:]
    print(f"{target}: {done.group(1)} runs in {done.group(2)} s")
    assert int(done.group(1)) > 100
