"""The health gate: is the resized server well enough to keep its new flavor?

Implicit checks always run (status VERIFY_RESIZE, the requested flavor, the
power state as before); the checks a policy names (``tcp``, ``console``) run
on top. Each check answers ``None`` (passed) or why it failed; the gate
records every check it ran with its result (:class:`Check`), so the journal
shows what was looked at, not only what went wrong.

A failed check is tried again until ``gate_timeout``, unless waiting cannot
cure it: a console that shows the unwanted marker, or a check that cannot
pass on this server at all (:func:`impossible`: a ``tcp`` check on a server
with no address, a port that is no TCP port, a ``console`` check whose
unwanted marker is part of the wanted one, a console Nova will not show).
Such a failure is *final*: the gate fails at once, with that reason.
"""

from __future__ import annotations

import math
import socket
from dataclasses import dataclass
from typing import Any

from nova_autopilot.actions.machine import StepContext
from nova_autopilot.cloud import ServerState
from nova_autopilot.errors import CloudError, CloudUnavailable, Conflict
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


def _timeout(settings: dict[str, Any]) -> float | None:
    """The ``tcp`` check's timeout in seconds; None when it is not a duration."""
    try:
        seconds = _seconds(settings.get("timeout", DEFAULT_TCP_TIMEOUT_S))
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds > 0 else None


def impossible(kind: str, settings: dict[str, Any], target: Target) -> str | None:
    """Why a check of the policy can never pass on ``target``, however long the gate
    waits; None when it may. Such a check is not run: it fails the gate at once."""
    if kind == "tcp":
        if not target.addresses:
            return "the server has no address to check"
        port = settings.get("port")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            return f"port {port!r} is not a TCP port (1-65535)"
        if _timeout(settings) is None:
            return f"timeout {settings.get('timeout')!r} is not a duration above 0"
        return None
    wanted, unwanted = settings.get("contains"), settings.get("not_contains")
    if wanted and unwanted and unwanted in wanted:
        return (
            f"the console cannot show {wanted!r} without showing {unwanted!r} "
            "(contains and not_contains contradict)"
        )
    if wanted and settings.get("lines") == 0:
        return f"lines: 0 reads no line of the console, so it cannot show {wanted!r}"
    return None


def _tcp(ctx: StepContext, target: Target, settings: dict[str, Any]) -> str | None:
    timeout = _timeout(settings) or DEFAULT_TCP_TIMEOUT_S
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
        # Nova answers 409 while the guest is not ready, 5xx when it fails now: both may
        # pass later. 404 (no server, or no console), 403 (our account may not read it),
        # another 4xx, or 501 (the compute driver has no console log) will not.
        cured_by_waiting = isinstance(exc, Conflict) or (
            isinstance(exc, CloudUnavailable) and exc.status != 501
        )
        return f"{'' if cured_by_waiting else FINAL}console output unavailable: {exc.message}"
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
    """Run every check the policy names, in order; each with its result. A check
    that cannot pass on this target (:func:`impossible`) is not run: it fails, final."""
    results = []
    for check in checks:
        cannot = impossible(check.kind, check.settings, target)
        if cannot is not None:
            results.append(Check(check.kind, False, cannot, final=True))
            continue
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
