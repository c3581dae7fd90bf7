"""Finish a resize that waits for confirmation: check -> health gate -> confirm
(or revert) -> verify the final state and flavor.

For a server found in VERIFY_RESIZE (left there by whoever resized it, a lost
notification, a crashed tool): the same gate, confirm, revert and verify
phases as :mod:`.resize`, after a check of its own. The flavor the server had
before is not known here, so a revert is verified as "no longer on the new
flavor".
"""

from __future__ import annotations

from nova_autopilot.actions import resize
from nova_autopilot.actions.common import begin, wait_while_busy
from nova_autopilot.actions.machine import Finish, Machine, Next, StepContext, Transition, describe
from nova_autopilot.cloud import ServerState


def check(ctx: StepContext) -> Transition:
    """The server must wait for a confirmation now; remember its new flavor."""
    server = begin(ctx, resume="verify")
    if not isinstance(server, ServerState):
        return server
    busy = wait_while_busy(ctx, server, phase="check")
    if busy is not None:
        return busy
    if server.status != "VERIFY_RESIZE":
        return Finish(
            "refused",
            f"no resize awaits confirmation: the server is {server.status} "
            f"(vm_state {server.vm_state})",
        )
    ctx.state.update(
        old_flavor=None,
        new_flavor=server.flavor_name,
        project_id=server.project_id,
    )
    ctx.record("checked", describe(server))
    return Next("gate")


FINISH_RESIZE = Machine(
    "finish_resize",
    "check",
    {
        "check": check,
        "gate": resize.gate,
        "confirm": resize.confirm,
        "revert": resize.revert,
        "verify": resize.verify,
    },
)
