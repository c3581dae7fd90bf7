"""Boot verification: what Nova cannot see.

After a server (re)starts, Nova says ACTIVE as soon as the hypervisor runs
the guest, even when the guest then stops at a kernel panic or an emergency
shell. ``verify_boot`` watches the server's console output for success and
failure markers until its deadline. Its outcome (``boot_ok``,
``boot_failed`` or ``timed_out``) comes back into the engine as an event of
its own (``autopilot.boot.succeeded`` / ``.failed`` / ``.unknown``) that
policies match like any other: a rescue policy can act on a failed boot.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from nova_autopilot.actions.common import begin
from nova_autopilot.actions.machine import Finish, Machine, Next, StepContext, Transition, Wait
from nova_autopilot.cloud import ServerState

SUCCESS_MARKERS = ("login:",)
FAILURE_MARKERS = (
    "Kernel panic",
    "emergency mode",
    "Emergency Mode",
    "Give root password for maintenance",
    "grub rescue>",
    "dracut-initqueue timeout",
)
DEFAULT_INTERVAL_S = 10.0
CONSOLE_LINES = 200
#: The events a finished verification sends back into the engine, by outcome.
VERDICTS = {
    "boot_ok": "autopilot.boot.succeeded",
    "boot_failed": "autopilot.boot.failed",
    "timed_out": "autopilot.boot.unknown",
}


def _markers(value: Any, default: Sequence[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(value)
    return tuple(default)


def check(ctx: StepContext) -> Transition:
    server = begin(ctx, resume="watch")
    if not isinstance(server, ServerState):
        return server
    if server.status == "ERROR":
        return Finish("boot_failed", f"the server is ERROR: {server.fault or 'no fault given'}")
    return Next("watch")


def watch(ctx: StepContext) -> Transition:
    output = ctx.cloud.console_output(ctx.server_id, lines=CONSOLE_LINES)
    failure = next(
        (m for m in _markers(ctx.params.get("failure"), FAILURE_MARKERS) if m in output), None
    )
    if failure is not None:
        ctx.record("console_failure", {"marker": failure, "tail": output[-400:]})
        return Finish("boot_failed", f"the console shows {failure!r}")
    success = next(
        (m for m in _markers(ctx.params.get("success"), SUCCESS_MARKERS) if m in output), None
    )
    if success is not None:
        ctx.record("console_success", {"marker": success})
        return Finish("boot_ok", None)
    if ctx.overdue:
        return Finish("timed_out", "no success or failure marker on the console in time")
    interval = ctx.params.get("interval")
    delay = float(interval) if isinstance(interval, (int, float)) else DEFAULT_INTERVAL_S
    return Wait("watch", retry_after_s=delay, poll=False)


VERIFY_BOOT = Machine("verify_boot", "check", {"check": check, "watch": watch})
