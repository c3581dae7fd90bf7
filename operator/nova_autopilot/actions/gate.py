"""The health gate: is the resized server well enough to keep its new flavor?

Implicit checks always run (status VERIFY_RESIZE, the requested flavor, the
power state as before); the checks a policy names (``tcp``, ``console``) run
on top. Each check answers ``None`` (passed) or why it failed; the gate
records every check it ran with its result (:class:`Check`), so the journal
shows what was looked at, not only what went wrong.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

from nova_autopilot.actions.machine import StepContext
from nova_autopilot.cloud import ServerState
from nova_autopilot.errors import CloudError
from nova_autopilot.policies.model import GateCheck

DEFAULT_TCP_TIMEOUT_S = 5.0
#: Marks a failure that waiting cannot cure (a kernel panic on the console).
FINAL = "final: "
#: The checks every resize passes, whatever its policy names.
IMPLICIT = ("status", "flavor", "power_state")


@dataclass(frozen=True, slots=True)
class Target:
    """What the checks look at: the server and its addresses (read once)."""

    server_id: str
    addresses: tuple[str, ...]


_UNITS = {"s": 1.0, "m": 60.0}


class SocketProbe:
    """Real TCP connects, for the ``tcp`` check."""

    def tcp(self, host: str, port: int, timeout_s: float) -> str | None:
        try:
            with socket.create_connection((host, port), timeout=timeout_s):
                return None
        except OSError as exc:
            return f"{host}:{port} did not answer: {exc.strerror or exc}"


@dataclass(frozen=True, slots=True)
class Check:
    """One check the gate ran: its name, whether it passed, what it saw."""

    name: str
    passed: bool
    detail: str
    #: A failure that waiting cannot cure (a kernel panic on the console).
    final: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"check": self.name, "passed": self.passed, "detail": self.detail}


def implicit_checks(server: ServerState, state: dict[str, Any]) -> list[Check]:
    """The checks every resize passes before the policy's own: status, flavor, power state."""
    checks = [
        Check("status", True, "status is VERIFY_RESIZE")
        if server.status == "VERIFY_RESIZE"
        else Check("status", False, f"status is {server.status}, not VERIFY_RESIZE"),
        Check("flavor", True, f"flavor is {server.flavor_name}")
        if server.flavor_name == state["new_flavor"]
        else Check("flavor", False, f"flavor is {server.flavor_name}, not {state['new_flavor']}"),
    ]
    if state.get("power_state"):
        was = state["power_state"]
        checks.append(
            Check("power_state", True, f"power state is {was}")
            if server.power_state == was
            else Check("power_state", False, f"power state is {server.power_state}, was {was}")
        )
    return checks


def problems_of(checks: list[Check]) -> list[str]:
    """The failed checks, as sentences (the policy's prefixed with their kind)."""
    return [
        check.detail if check.name in IMPLICIT else f"{check.name}: {check.detail}"
        for check in checks
        if not check.passed
    ]


def _seconds(value: Any) -> float:
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    if text[-1:] in _UNITS:
        return float(text[:-1]) * _UNITS[text[-1]]
    return float(text)


def _tcp(ctx: StepContext, target: Target, settings: dict[str, Any]) -> str | None:
    if not target.addresses:
        return "the server has no address to check"
    timeout = _seconds(settings.get("timeout", DEFAULT_TCP_TIMEOUT_S))
    failures = []
    for address in target.addresses:
        failure = ctx.probe.tcp(address, int(settings["port"]), timeout)
        if failure is None:
            return None
        failures.append(failure)
    return "; ".join(failures)


def _console(ctx: StepContext, target: Target, settings: dict[str, Any]) -> str | None:
    try:
        output = ctx.cloud.console_output(target.server_id, lines=settings.get("lines"))
    except CloudError as exc:
        return f"console output unavailable: {exc.message}"
    wanted, unwanted = settings.get("contains"), settings.get("not_contains")
    if unwanted and unwanted in output:
        return f"{FINAL}console shows {unwanted!r}"
    if wanted and wanted not in output:
        return f"console does not show {wanted!r} yet"
    return None


_CHECKS = {"tcp": _tcp, "console": _console}


def _passed(kind: str, settings: dict[str, Any]) -> str:
    if kind == "tcp":
        return f"port {settings['port']} answered"
    wanted, unwanted = settings.get("contains"), settings.get("not_contains")
    seen = [f"shows {wanted!r}"] if wanted else []
    seen += [f"does not show {unwanted!r}"] if unwanted else []
    return "console " + (" and ".join(seen) or "output readable")


def policy_checks(ctx: StepContext, target: Target, checks: tuple[GateCheck, ...]) -> list[Check]:
    """Run every check the policy names, in order; each with its result."""
    results = []
    for check in checks:
        failure = _CHECKS[check.kind](ctx, target, check.settings)
        if failure is None:
            results.append(Check(check.kind, True, _passed(check.kind, check.settings)))
        else:
            text = failure.replace(FINAL, "")
            results.append(Check(check.kind, False, text, FINAL in failure))
    return results


def hopeless(checks: list[Check]) -> bool:
    """Whether a failure is one that waiting for the gate cannot cure."""
    return any(check.final and not check.passed for check in checks)


def recorded(checks: list[Check]) -> list[dict[str, Any]]:
    """The checks as the journal keeps them in a step's detail."""
    return [check.as_dict() for check in checks]
