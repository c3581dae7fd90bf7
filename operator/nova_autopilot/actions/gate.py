"""The health gate: is the resized server well enough to keep its new flavor?

Implicit checks always run (status VERIFY_RESIZE, the requested flavor, the
power state as before); the checks a policy names (``tcp``, ``console``) run
on top. Each check answers ``None`` (passed) or why it failed.
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


def implicit_problems(server: ServerState, state: dict[str, Any]) -> list[str]:
    problems = []
    if server.status != "VERIFY_RESIZE":
        problems.append(f"status is {server.status}, not VERIFY_RESIZE")
    if server.flavor_name != state["new_flavor"]:
        problems.append(f"flavor is {server.flavor_name}, not {state['new_flavor']}")
    if state.get("power_state") and server.power_state != state["power_state"]:
        problems.append(f"power state is {server.power_state}, was {state['power_state']}")
    return problems


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


def policy_problems(ctx: StepContext, target: Target, checks: tuple[GateCheck, ...]) -> list[str]:
    """Run every check the policy names; the failures, as sentences."""
    problems = []
    for check in checks:
        failure = _CHECKS[check.kind](ctx, target, check.settings)
        if failure is not None:
            problems.append(f"{check.kind}: {failure}")
    return problems


def hopeless(problems: list[str]) -> bool:
    """Whether a failure is one that waiting for the gate cannot cure."""
    return any(FINAL in problem for problem in problems)


def plain(problems: list[str]) -> list[str]:
    return [problem.replace(FINAL, "") for problem in problems]
