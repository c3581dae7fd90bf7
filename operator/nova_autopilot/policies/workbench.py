"""The policy author's workbench: explain one event, replay a recorded stream.

Everything here is pure over a :class:`PolicySet` and messages: it decides
what *would* be done and says why, and never talks to a broker or a cloud.
The results are plain dicts, ready for ``--json``; ``render_*`` turn them
into text for a person.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

from nova_autopilot.errors import BadMessage
from nova_autopilot.events import Event, parse_message
from nova_autopilot.policies import Match, PolicySet
from nova_autopilot.policies.model import ACTIONS


def _task_in_progress(event: Event) -> str | None:
    """The task Nova was still running on the server when it sent this event."""
    payload = event.payload
    update = payload.get("state_update")
    for value in (
        payload.get("task_state"),
        update.get("new_task_state") if isinstance(update, dict) else None,
        payload.get("new_task_state"),  # legacy compute.instance.update
    ):
        if isinstance(value, str) and value:
            return value
    return None


def _match_dict(match: Match, event: Event) -> dict[str, Any]:
    out: dict[str, Any] = {
        "policy": match.policy.name,
        "action": match.action,
        "params": match.params,
        "mode": match.policy.mode,
    }
    if match.error:
        out["error"] = match.error
    task = _task_in_progress(event)
    spec = ACTIONS.get(match.action)
    if task and spec is not None and spec.waits_for_task:
        out["note"] = (
            f"Nova's task {task} is still in progress: the {match.action} first waits "
            f"up to {match.policy.confirm.task_timeout_s:g}s for it to end, then decides "
            "on the server's state"
        )
    return out


def explain(policies: PolicySet, event: Event) -> dict[str, Any]:
    """The normalized event, every policy's verdict, and the actions it leads to."""
    verdicts = policies.explain(event)
    return {
        "event": event.as_dict(),
        "policies": [
            {"name": v.policy, "matched": v.matched, "reason": v.reason} for v in verdicts
        ],
        "actions": [_match_dict(v.match, event) for v in verdicts if v.match is not None],
    }


def render_explain(result: dict[str, Any]) -> str:
    event = result["event"]
    lines = [f"event {event['event_type']}  ({event['source']}, {event['format']})"]
    for key, value in event.items():
        if key not in ("event_type", "source", "format", "payload") and value is not None:
            lines.append(f"  {key:<13} {value}")
    payload = json.dumps(event["payload"], sort_keys=True, default=str)
    lines.append(f"  {'payload':<13} {payload if len(payload) <= 200 else payload[:197] + '...'}")
    lines.append("")
    lines.append("policies")
    for verdict in result["policies"]:
        mark = "MATCH" if verdict["matched"] else "  -  "
        lines.append(f"  {mark}  {verdict['name']}: {verdict['reason']}")
    lines.append("")
    if result["actions"]:
        lines.append("actions")
        for action in result["actions"]:
            lines.append(f"  {_action_text(action)}")
            if "note" in action:
                lines.append(f"    {action['note']}")
    else:
        lines.append("actions: none")
    return "\n".join(lines)


def sweep(policies: PolicySet, looked: dict[str, Any], events: Iterable[Event]) -> dict[str, Any]:
    """A sweep's look (``sweeps.Sweep.as_dict``) and every event it would emit, explained."""
    return {"sweep": looked, "events": [explain(policies, event) for event in events]}


def render_sweep(result: dict[str, Any]) -> str:
    looked = result["sweep"]
    if looked["skipped"] == "no_policy":
        return "no enabled policy listens to sweep events: Nova was not asked"
    lines = [
        f"sweep of {', '.join(looked['statuses'])}: {looked['servers']} servers, "
        f"{looked['events']} events, {looked['nova_requests']} Nova requests, "
        f"{looked['duration_s']:g} s"
    ]
    for explained in result["events"]:
        lines.extend(("", render_explain(explained)))
    return "\n".join(lines)


def _action_text(action: dict[str, Any]) -> str:
    params = json.dumps(action["params"], sort_keys=True, default=str)
    text = f"{action['policy']}: {action['action']} {params}"
    if action["mode"] == "dry-run":
        text += "  [dry-run]"
    if "error" in action:
        text += f"  [cannot run: {action['error']}]"
    return text


def read_stream(lines: Iterable[str]) -> Iterator[tuple[int, str]]:
    """Numbered messages of a JSON-lines stream; blank and ``#`` lines are skipped."""
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if text and not text.startswith("#"):
            yield number, text


def decide(policies: PolicySet, stream: Iterable[tuple[int, str]]) -> dict[str, Any]:
    """Run a stream through the policies: every decision and every rejection."""
    decisions: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    count = 0
    for line, text in stream:
        count += 1
        try:
            event = parse_message(text)
        except BadMessage as exc:
            rejected.append({"line": line, "reason": exc.reason, "detail": exc.detail})
            continue
        for match in policies.match(event):
            decisions.append(
                {
                    "line": line,
                    "event_type": event.event_type,
                    "instance_id": event.instance_id,
                    **_match_dict(match, event),
                }
            )
    summary = Counter(d["policy"] for d in decisions)
    return {
        "messages": count,
        "rejected": rejected,
        "decisions": decisions,
        "summary": dict(sorted(summary.items())),
    }


def _key(decision: dict[str, Any]) -> tuple[int, str]:
    return decision["line"], decision["policy"]


def compare(base: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    """What changes between two replays of the same stream (backtesting)."""
    before = {_key(d): d for d in base["decisions"]}
    after = {_key(d): d for d in other["decisions"]}
    changes = []
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key), after.get(key)
        if old is None and new is not None:
            changes.append({"change": "added", **new})
        elif new is None and old is not None:
            changes.append({"change": "removed", **old})
        elif old != new and new is not None and old is not None:
            changes.append({"change": "changed", "before": old, **new})
    return {
        "messages": base["messages"],
        "base": base["summary"],
        "other": other["summary"],
        "changes": changes,
    }


def render_replay(result: dict[str, Any]) -> str:
    lines = []
    for decision in result["decisions"]:
        target = decision["instance_id"] or "-"
        lines.append(f"line {decision['line']:>5}  {decision['event_type']}  {target}")
        lines.append(f"            -> {_action_text(decision)}")
        if "note" in decision:
            lines.append(f"               {decision['note']}")
    for rejection in result["rejected"]:
        lines.append(f"line {rejection['line']:>5}  rejected: {rejection['detail']}")
    lines.append("")
    lines.append(
        f"{result['messages']} messages, {len(result['decisions'])} decisions, "
        f"{len(result['rejected'])} rejected"
    )
    lines.extend(f"  {name}: {count}" for name, count in result["summary"].items())
    return "\n".join(lines)


def render_comparison(result: dict[str, Any]) -> str:
    lines = [f"{result['messages']} messages replayed against both policy sets"]
    for change in result["changes"]:
        lines.append(f"line {change['line']:>5}  {change['change']:<8} {_action_text(change)}")
    if not result["changes"]:
        lines.append("no decision changes")
    names = sorted(set(result["base"]) | set(result["other"]))
    lines.append("")
    lines.append(f"{'policy':<32} {'base':>6} {'other':>6}")
    lines.extend(
        f"{name:<32} {result['base'].get(name, 0):>6} {result['other'].get(name, 0):>6}"
        for name in names
    )
    return "\n".join(lines)
