"""The health gate fails at once when a check cannot pass, however long it would wait.

A failing check is tried again until ``gate_timeout``; a check that can never
pass on the server (a ``tcp`` check on a server with no address, a port that
is no TCP port, a console check that contradicts itself, a console Nova will
not show) must not be: it fails the gate on the first look, with its reason,
and the resize takes the failure path (revert, or keep with on_failure: keep).
"""

from __future__ import annotations

from typing import Any

import pytest

from nova_autopilot.actions.gate import Target, impossible
from nova_autopilot.actions.machine import Wait
from nova_autopilot.errors import CloudError, CloudUnavailable, Conflict, NotFound, Rejected
from nova_autopilot.policies.model import Confirm, GateCheck
from tests.unit.fakes import Drive, FakeCloud, FakeServer, finished

SID = "5e1f7a52-0000-4000-8000-000000000001"
SEED_GATE = (  # the seed policy's gate (config/policies.yaml)
    GateCheck("tcp", {"port": 22, "timeout": "5s"}),
    GateCheck("console", {"not_contains": "Kernel panic"}),
)


class CountingDrive(Drive):
    """A drive that counts the TCP connects the gate asks for."""

    connects: int = 0

    def tcp(self, host: str, port: int, timeout_s: float) -> str | None:
        self.connects += 1
        return super().tcp(host, port, timeout_s)


def at_verify_resize(
    gate: tuple[GateCheck, ...], *, addresses: tuple[str, ...] = (), **confirm: Any
) -> tuple[FakeCloud, CountingDrive]:
    """A resize of a server with ``addresses`` under ``gate``, up to its first gate look."""
    cloud = FakeCloud()
    cloud.add(FakeServer(id=SID, name="web-1", flavor="m1.small", addresses=addresses))
    drive = CountingDrive(
        cloud,
        "resize",
        {"server": {"id": SID}, "flavor": "m1.large"},
        Confirm(gate=gate, gate_timeout_s=300, **confirm),
    )
    drive.run()
    cloud.nova_finishes(SID)
    return cloud, drive


def gate_steps(drive: Drive) -> list[dict[str, Any]]:
    return [detail for name, detail in drive.details if name.startswith("gate_")]


def test_the_seed_gate_on_a_server_without_an_address_fails_at_once_and_reverts() -> None:
    cloud, drive = at_verify_resize(SEED_GATE)
    transition = drive.run()
    assert isinstance(transition, Wait)
    assert transition.phase == "verify"  # the revert is requested: no retry of the gate
    assert cloud.calls["revert"] == 1
    assert cloud.calls["confirm"] == 0
    assert cloud.calls["console"] == 1  # the other checks ran once, for the record
    assert drive.connects == 0
    (failed,) = gate_steps(drive)
    assert failed["final"] is True
    assert failed["problems"] == ["tcp: the server has no address to check"]
    assert failed["checks"][-2:] == [
        {"check": "tcp", "passed": False, "detail": "the server has no address to check"},
        {"check": "console", "passed": True, "detail": "console does not show 'Kernel panic'"},
    ]
    cloud.nova_finishes(SID)
    assert finished(drive.run()) == (
        "reverted",
        "health gate failed: tcp: the server has no address to check",
    )
    assert cloud.servers[SID].flavor == "m1.small"


def test_with_on_failure_keep_the_impossible_gate_is_kept_at_once_and_says_why() -> None:
    cloud, drive = at_verify_resize(SEED_GATE, on_failure="keep")
    drive.run()
    assert cloud.calls["confirm"] == 1
    assert len(gate_steps(drive)) == 1
    cloud.nova_finishes(SID)
    outcome, reason = finished(drive.run())
    assert outcome == "confirmed"
    assert reason == (
        "health gate failed: tcp: the server has no address to check (kept: on_failure is keep)"
    )


def test_a_tcp_check_that_only_fails_now_is_still_tried_again() -> None:
    cloud, drive = at_verify_resize(SEED_GATE, addresses=("192.0.2.10",))
    drive.probe_result = "192.0.2.10:22 did not answer: Connection refused"
    transition = drive.run()
    assert isinstance(transition, Wait)
    assert transition.phase == "gate"
    assert transition.retry_after_s is not None
    assert cloud.calls["revert"] == 0
    assert gate_steps(drive)[-1]["final"] is False
    assert drive.connects == 1


@pytest.mark.parametrize(
    ("check", "addresses", "reason"),
    [
        (GateCheck("tcp", {"port": 22}), (), "the server has no address to check"),
        (
            GateCheck("tcp", {"port": 70000}),
            ("192.0.2.10",),
            "port 70000 is not a TCP port (1-65535)",
        ),
        (GateCheck("tcp", {"port": 0}), ("192.0.2.10",), "port 0 is not a TCP port (1-65535)"),
        (
            GateCheck("tcp", {"port": 22, "timeout": "soon"}),
            ("192.0.2.10",),
            "timeout 'soon' is not a duration above 0",
        ),
        (
            GateCheck("tcp", {"port": 22, "timeout": 0}),
            ("192.0.2.10",),
            "timeout 0 is not a duration above 0",
        ),
        (
            GateCheck(
                "console", {"contains": "Kernel panic - not syncing", "not_contains": "panic"}
            ),
            (),
            "the console cannot show 'Kernel panic - not syncing' without showing 'panic' "
            "(contains and not_contains contradict)",
        ),
        (
            GateCheck("console", {"contains": "login:", "lines": 0}),
            (),
            "lines: 0 reads no line of the console, so it cannot show 'login:'",
        ),
    ],
    ids=[
        "no-address",
        "port-too-high",
        "port-zero",
        "bad-timeout",
        "zero-timeout",
        "contradiction",
        "no-lines",
    ],
)
def test_a_check_that_cannot_pass_fails_the_gate_on_its_first_look_without_being_run(
    check: GateCheck, addresses: tuple[str, ...], reason: str
) -> None:
    cloud, drive = at_verify_resize((check,), addresses=addresses)
    drive.run()
    (failed,) = gate_steps(drive)
    assert failed["final"] is True
    assert failed["problems"] == [f"{check.kind}: {reason}"]
    assert cloud.calls["revert"] == 1
    assert (cloud.calls["console"], drive.connects) == (0, 0)


@pytest.mark.parametrize(
    ("error", "final"),
    [
        (NotFound("Guest does not have a console available.", status=404), True),
        (Rejected("Policy doesn't allow os_compute_api:os-console-output", status=403), True),
        (CloudUnavailable("Unable to get console log, not implemented", status=501), True),
        (Conflict("Instance is not ready yet", status=409), False),
        (CloudUnavailable("Service Unavailable", status=503), False),
        (CloudUnavailable("ConnectTimeout: timed out"), False),
    ],
    ids=["404", "403", "501", "409", "503", "no-answer"],
)
def test_a_console_nova_will_never_show_fails_at_once_one_it_may_show_later_is_retried(
    error: CloudError, final: bool
) -> None:
    cloud, drive = at_verify_resize((GateCheck("console", {"contains": "login:"}),))
    cloud.fail["console"] = [error]
    transition = drive.run()
    (failed,) = gate_steps(drive)
    assert failed["final"] is final
    assert failed["problems"] == [f"console: console output unavailable: {error.message}"]
    assert cloud.calls["revert"] == (1 if final else 0)
    assert isinstance(transition, Wait)
    assert transition.phase == ("verify" if final else "gate")


@pytest.mark.parametrize(
    ("kind", "settings"),
    [
        ("tcp", {"port": 22}),
        ("tcp", {"port": 65535, "timeout": "2s"}),
        ("tcp", {"port": 1, "timeout": 0.5}),
        ("console", {"contains": "login:", "not_contains": "Kernel panic"}),
        ("console", {"contains": "login:", "lines": 50}),
        ("console", {"not_contains": "Kernel panic", "lines": 0}),
        ("console", {}),
    ],
)
def test_checks_that_can_pass_are_not_called_impossible(
    kind: str, settings: dict[str, Any]
) -> None:
    assert impossible(kind, settings, Target(SID, ("192.0.2.10",))) is None
