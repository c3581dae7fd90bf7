"""The seed resize policy's health gate over real HTTP, against the sandbox Nova.

The seed policy (config/policies.yaml) asks for SSH on the server's address.
The sandbox's servers have no address, as a server booted without a network:
the check can never pass, so the gate fails on its first look and the resize
is reverted, instead of retrying the console for the whole five-minute
gate_timeout.
"""

from __future__ import annotations

from pathlib import Path

from nova_autopilot.policies import load_policies
from tests.integration.stack import Stack

SEED = Path(__file__).resolve().parents[3] / "config" / "policies.yaml"


def test_the_seed_gate_on_a_server_without_an_address_reverts_at_once(stack: Stack) -> None:
    stack.policies = load_policies(SEED)
    server = stack.sandbox.add_server("web-1", "m1.small")
    assert stack.cloud.server(server.id).addresses == ()  # as Nova shows it
    op = stack.outcome(stack.request("quota.request.approved", server.id, flavor="m1.large"))
    assert op.outcome == "reverted"
    assert op.reason == "health gate failed: tcp: the server has no address to check"
    steps = stack.journal.steps(op.id)
    gate = [s for s in steps if s.name.startswith("gate_")]
    assert [s.name for s in gate] == ["gate_failed"]
    assert gate[0].detail["final"] is True
    assert stack.nova_calls("os-getConsoleOutput") == 1
    assert stack.nova_calls("revertResize") == 1
    assert stack.nova_calls("confirmResize") == 0
    assert stack.sandbox.server(server.id).flavor.name == "m1.small"
