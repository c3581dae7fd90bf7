"""Nova API requests per operation: the event-driven runner against a polling loop.

The sandbox Nova serves real HTTP; both sides use openstacksdk. For each Nova
speed (the sandbox's phase durations scaled 1x and 10x) it measures:

* **event-driven**: nova-autopilot's runner, woken by the server's own
  notifications (delivered in-process), confirming a resize (no gate checks)
  and rescuing a server; the figure is the operation's own request count;
* **polling loop**: the same operations as a script would do them with
  ``wait_for_server`` every 0.5 s (openstacksdk's default is 2 s).

The event-driven count must not grow with how long Nova takes (target: at
most 5 per confirmed resize); the polling loop's does.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import openstack

from bench.summary import figure
from nova_autopilot.policies import load_texts
from nova_autopilot.sandbox import Durations, Sandbox
from tests.integration.stack import POLICIES, Stack

POLL_INTERVAL_S = 0.5
SPEEDS = (1, 10)
NO_GATE = POLICIES.replace(
    '      gate: [{console: {contains: "login:", not_contains: "Kernel panic"}}]\n', ""
)


def _requests(sandbox: Sandbox) -> int:
    return sum(
        n for call, n in sandbox.request_counts().items() if not call.startswith("GET /v2.1 ")
    )


def event_driven(scale: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack(Path(tmp), durations=Durations().scaled(scale))
        stack.policies = load_texts([("bench.yaml", NO_GATE.replace("{gate_timeout}", "1s"))])
        stack.start()
        try:
            stack.sandbox.add_flavor("m1.small")
            stack.sandbox.add_flavor("m1.large", vcpus=2)
            stack.cloud.flavor("m1.small")  # the flavor list is cached: warm it like a daemon
            web = stack.sandbox.add_server("web", "m1.small")
            db = stack.sandbox.add_server("db", "m1.small", state="ERROR")
            start = time.monotonic()
            resize = stack.outcome(
                stack.request("quota.request.approved", web.id, flavor="m1.large"), timeout=120
            )
            resize_s = time.monotonic() - start
            rescue = stack.outcome(stack.request("server.rescue.requested", db.id), timeout=120)
            assert (resize.outcome, rescue.outcome) == ("confirmed", "rescued")
            return {
                "resize_requests": resize.nova_requests,
                "rescue_requests": rescue.nova_requests,
                "resize_seconds": resize_s,
            }
        finally:
            stack.stop()


def polling(scale: int) -> dict[str, float]:
    with Sandbox(durations=Durations().scaled(scale)) as sandbox:
        sandbox.add_flavor("m1.small")
        large = sandbox.add_flavor("m1.large", vcpus=2)
        web = sandbox.add_server("web", "m1.small")
        db = sandbox.add_server("db", "m1.small", state="ERROR")
        conn = openstack.connect(
            auth_type="admin_token",
            auth={"endpoint": sandbox.url, "token": "admin:admin"},
            compute_endpoint_override=sandbox.url,
        )
        compute = conn.compute
        compute.get_endpoint_data()
        before = _requests(sandbox)
        start = time.monotonic()
        server = compute.get_server(web.id)
        compute.resize_server(server, large.id)
        compute.wait_for_server(server, status="VERIFY_RESIZE", interval=POLL_INTERVAL_S, wait=120)
        compute.confirm_server_resize(server)
        compute.wait_for_server(server, status="ACTIVE", interval=POLL_INTERVAL_S, wait=120)
        resize_s = time.monotonic() - start
        resize_requests = _requests(sandbox) - before
        before = _requests(sandbox)
        server = compute.get_server(db.id)
        compute.rescue_server(server)
        # From ERROR the status stays ERROR while rescuing: a plain wait would give up.
        compute.wait_for_server(
            server, status="RESCUE", failures=[], interval=POLL_INTERVAL_S, wait=120
        )
        rescue_requests = _requests(sandbox) - before
        conn.close()
        return {
            "resize_requests": resize_requests,
            "rescue_requests": rescue_requests,
            "resize_seconds": resize_s,
        }


def run(*, quick: bool = False) -> dict[str, Any]:
    rows = []
    for scale in SPEEDS[:1] if quick else SPEEDS:
        rows.append({"scale": scale, "event": event_driven(scale), "poll": polling(scale)})
    lines = [
        "### Nova API requests per operation: event-driven vs polling",
        "",
        f"Polling loop: openstacksdk `wait_for_server` every {POLL_INTERVAL_S} s. "
        "Event-driven: the runner woken by the server's notifications; no gate checks.",
        "",
        "| Nova speed | resize took | resize: event-driven | resize: polling | "
        "rescue: event-driven | rescue: polling |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        e, p = row["event"], row["poll"]
        lines.append(
            f"| {row['scale']}x | {e['resize_seconds']:.1f} s | {e['resize_requests']:.0f} "
            f"| {p['resize_requests']:.0f} | {e['rescue_requests']:.0f} "
            f"| {p['rescue_requests']:.0f} |"
        )
    slowest = rows[-1]
    e, p = slowest["event"], slowest["poll"]
    speed = f"Nova at {slowest['scale']}x"
    headline = [
        figure(
            f"requests per confirmed resize, event-driven ({speed})",
            e["resize_requests"],
            "requests",
            baseline="polling every 0.5 s",
            baseline_value=p["resize_requests"],
        ),
        figure(
            f"requests per rescue, event-driven ({speed})",
            e["rescue_requests"],
            "requests",
            baseline="polling every 0.5 s",
            baseline_value=p["rescue_requests"],
        ),
    ]
    return {
        "benchmark": "operations",
        "rows": rows,
        "headline": headline,
        "markdown": "\n".join(lines),
    }
