"""Run one fuzzer: ``python -m tests.fuzz.run TARGET [libFuzzer options] [CORPUS...]``.

TARGET is one of ``parse_message``, ``verifier``, ``policy_loader``
(tests/fuzz/targets.py). The package's code is instrumented for coverage, so
atheris steers its inputs toward new branches. libFuzzer's options apply:
``-max_total_time=60``, ``-runs=N``, ``-artifact_prefix=DIR/``; a corpus
directory given first receives the new inputs it finds, so give a scratch
directory first and ``tests/fuzz/corpus/TARGET`` after it to keep the seeds
unchanged. On a crash it writes the input to ``crash-<sha1>`` and exits
non-zero; keep that input in the corpus once the bug is fixed.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["nova_autopilot"]):
    from tests.fuzz.targets import TARGETS


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[1] not in TARGETS:
        sys.exit(f"usage: python -m tests.fuzz.run {{{','.join(TARGETS)}}} [libFuzzer options]")
    target = TARGETS[argv[1]]
    atheris.Setup([argv[0], *argv[2:]], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
