"""``nova-autopilot demo``: the decision pipeline on an embedded stream.

It needs nothing outside the package: the seed policies and a recorded
stream of Nova notifications and operator requests (both shipped in
``nova_autopilot/seed``) go through the real parsing and matching code. Each
message is shown as it is read, with what the policies decide; at the end the
decisions are checked against what the two flows of the product must produce,
and the exit status says whether they did.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from importlib import resources
from typing import Any

from nova_autopilot.errors import BadMessage
from nova_autopilot.events import Event, parse_message
from nova_autopilot.policies import PolicySet, load_texts
from nova_autopilot.workbench import read_stream

#: What the seed stream must lead to: (policy, action, server id).
EXPECTED = [
    ("resize-on-approved-quota", "resize", "4f8b2a9e-1c3d-4e5f-8a7b-9c0d1e2f3a4b"),
    ("rescue-failed-boot", "rescue", "7d6e5f4a-3b2c-4d1e-9f8a-7b6c5d4e3f2a"),
    ("unrescue-when-repaired", "unrescue", "7d6e5f4a-3b2c-4d1e-9f8a-7b6c5d4e3f2a"),
]
EXPECTED_REJECTIONS = 2


def seed_text(name: str) -> str:
    return resources.files("nova_autopilot").joinpath("seed", name).read_text("utf-8")


def _describe(event: Event) -> str:
    payload = event.payload
    who = payload.get("display_name") or event.instance_id or "-"
    if event.source == "request":
        server = payload.get("server", {})
        who = server.get("name") or server.get("id")
        extra = f" flavor={payload['flavor']}" if "flavor" in payload else ""
        return f"request {event.event_type} for {who}{extra} (id {event.message_id})"
    state = payload.get("state_update")
    change = f" {state.get('old_state')} -> {state.get('state')}" if isinstance(state, dict) else ""
    return f"nova    {event.event_type} {who}{change}"


def _server_id(params: dict[str, Any]) -> str | None:
    server = params.get("server")
    return server.get("id") if isinstance(server, dict) else server


def run(*, out: Callable[[str], None] = print) -> int:
    """Play the seed stream through the seed policies; 0 when every flow decided right."""
    policies: PolicySet = load_texts([("seed/policies.yaml", seed_text("policies.yaml"))])
    out(f"nova-autopilot demo: {len(policies)} policies, embedded stream of Nova events")
    out("")
    decided: list[tuple[str, str, str | None]] = []
    rejected = 0
    for line, text in read_stream(seed_text("demo-stream.jsonl").splitlines()):
        try:
            event = parse_message(text)
        except BadMessage as exc:
            rejected += 1
            out(f"[{line:>2}] rejected: {exc.detail}  (would be dead-lettered: {exc.reason})")
            continue
        out(f"[{line:>2}] {_describe(event)}")
        for match in policies.match(event):
            decided.append((match.policy.name, match.action, _server_id(match.params)))
            out(f"      -> {match.policy.name}: {match.action} {json.dumps(match.params)}")
    out("")
    ok = decided == EXPECTED and rejected == EXPECTED_REJECTIONS
    out(f"{len(decided)} decisions, {rejected} messages rejected with their reason")
    out("demo: every flow decided as expected" if ok else "demo: UNEXPECTED decisions")
    return 0 if ok else 1
