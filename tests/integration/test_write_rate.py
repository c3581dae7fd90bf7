"""The Nova write limit over real HTTP: a burst of resizes on the sandbox Nova
spreads its write calls at the configured rate, as the sandbox saw them arrive."""

from __future__ import annotations

from pathlib import Path

import pytest

from nova_autopilot.cloud import WriteLimiter
from tests.integration.stack import Stack

pytestmark = pytest.mark.integration

RATE = 2.0
BURST = 2
SERVERS = 6


def writes_at(stack: Stack) -> list[float]:
    """When each write call reached the sandbox: every request but the GETs and
    the console log, which Nova reads with a POST."""
    return [
        at
        for at, key in stack.sandbox.request_log()
        if not key.startswith("GET ") and not key.endswith(" os-getConsoleOutput")
    ]


def most_in_window(times: list[float], width: float) -> int:
    return max(sum(1 for t in times if start <= t < start + width) for start in times)


def test_a_burst_of_operations_spreads_its_nova_writes_at_the_configured_rate(
    tmp_path: Path,
) -> None:
    stack = Stack(tmp_path, writes=WriteLimiter(RATE, BURST)).start()
    try:
        stack.sandbox.add_flavor("m1.small")
        stack.sandbox.add_flavor("m1.large", vcpus=2)
        servers = [stack.sandbox.add_server(f"web-{i}", "m1.small") for i in range(SERVERS)]
        stack.sandbox.reset_request_counts()
        ops = [stack.request("quota.request.approved", s.id, flavor="m1.large") for s in servers]
        outcomes = [stack.outcome(op, timeout=90).outcome for op in ops]
    finally:
        stack.stop()
    assert outcomes == ["confirmed"] * SERVERS
    writes = writes_at(stack)
    assert len(writes) == 2 * SERVERS  # resize and confirm, each once
    # At most the burst plus what the rate allows in any window (one more for
    # the jitter of loopback HTTP on a busy machine) ...
    for width in (0.5, 1.0, 2.0):
        assert most_in_window(writes, width) <= BURST + RATE * width + 1, (width, writes)
    # ... so the writes took at least as long as the rate makes them.
    span = writes[-1] - writes[0]
    assert span >= (len(writes) - BURST) / RATE - 1.0, writes
