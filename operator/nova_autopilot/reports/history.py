"""What the daemon did and why, from the journal, for ``nova-autopilot history``.

Pure functions: :func:`parse_when` reads ``--since``/``--until``;
:func:`operation_view` turns an operation and its steps into a JSON-ready
chain (event -> policy and why -> guard decision -> steps with their Nova
calls and gate checks -> outcome); :func:`document` wraps the chains for
``--json``; :func:`render` writes them as text, where :func:`fold` tells a run of
alike steps once, with its count. Everything shown passes
through the redaction of the logs first, whatever the journal holds.
``docs/history.md`` describes the output.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Final

from nova_autopilot.journal import INITIAL_PHASE, Operation, Step
from nova_autopilot.logs import redact
from nova_autopilot.reports.table import Column, table

__all__ = [
    "CHAIN_UP_TO",
    "FORMAT_VERSION",
    "Filters",
    "StepParts",
    "decision_of",
    "document",
    "event_view",
    "fold",
    "operation_view",
    "parse_when",
    "render",
    "step_parts",
]

#: The version of the ``--json`` shape; it grows only when a field changes meaning or goes.
FORMAT_VERSION: Final = 1
#: Text output shows each operation's whole chain when at most this many match.
CHAIN_UP_TO: Final = 3

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_UNITS: Final = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
#: Payload fields worth showing with the event, when present (requests, Nova, verdicts).
_KEY_FIELDS: Final = (
    "server",
    "display_name",
    "flavor",
    "state",
    "old_state",
    "task_state",
    "old_task_state",
    "power_state",
    "host",
    "fault",
    "requested_by",
    "approved_by",
    "reason",
    "parameters",
    "operation_id",
    "policy",
)
#: Keys of a step's detail that the runner adds; shown apart from the action's detail.
_CALL_KEYS: Final = ("calls", "calls_omitted")


@dataclass(frozen=True, slots=True)
class Filters:
    """What ``history`` selects (every given filter must hold)."""

    server_id: str | None = None
    policy: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    outcome: str | None = None
    operation_id: str | None = None
    limit: int = 20

    def as_dict(self) -> dict[str, Any]:
        return {
            "server": self.server_id,
            "policy": self.policy,
            "since": _iso(self.since),
            "until": _iso(self.until),
            "outcome": self.outcome,
            "operation": self.operation_id,
            "limit": self.limit,
        }


def parse_when(text: str, *, now: datetime) -> datetime:
    """A moment from ``--since``/``--until``: ``30m``, ``2h``, ``7d``, ``1w``, ``90s``
    (that long before ``now``), or an ISO 8601 date or time (UTC when it names no zone).
    Raises ``ValueError`` saying what is accepted."""
    relative = _RELATIVE.match(text)
    if relative:
        amount, unit = float(relative.group(1)), relative.group(2).lower()
        return now - timedelta(**{_UNITS[unit]: amount})
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{text!r} is neither a time like 2026-11-25T20:30:00Z nor an age like 30m, 2h, 7d"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def decision_of(operation: Operation) -> dict[str, Any]:
    """What the guards decided: ``run``, ``dry-run`` (no Nova write) or ``refused``
    before any step (a guard or the policy's parameters said no), with the reason."""
    if operation.mode == "dry-run":
        return {"verdict": "dry-run", "reason": operation.reason}
    refused_at_once = (
        operation.outcome == "refused"
        and operation.step_count == 0
        and operation.phase == INITIAL_PHASE
    )
    if refused_at_once:
        return {"verdict": "refused", "reason": operation.reason}
    return {"verdict": "run", "reason": None}


def event_view(event: Mapping[str, Any]) -> dict[str, Any]:
    """The triggering event as the journal stored it (normalized): where it came from,
    its type, ids and time, and the payload fields that say what it is about."""
    payload = event.get("payload") if isinstance(event.get("payload"), Mapping) else {}
    assert isinstance(payload, Mapping)
    fields = {}
    for key in _KEY_FIELDS:
        value = _field(key, payload.get(key))
        if value is not None:
            fields[key] = value
    return {
        "source": event.get("source"),
        "format": event.get("format"),
        "type": event.get("event_type"),
        "message_id": event.get("message_id"),
        "request_id": event.get("request_id"),
        "at": event.get("timestamp"),
        "server_id": event.get("instance_id"),
        "project_id": event.get("project_id"),
        "publisher_id": event.get("publisher_id"),
        "fields": fields,
    }


def _field(key: str, value: Any) -> Any:
    if isinstance(value, Mapping) and key == "flavor":
        return value.get("name") or value.get("flavorid")
    if isinstance(value, Mapping) and key == "fault":
        return value.get("exception_message") or value.get("exception")
    return value


def step_view(step: Step) -> dict[str, Any]:
    detail = dict(step.detail)
    calls = detail.pop("calls", None)
    omitted = detail.pop("calls_omitted", 0)
    return {
        "seq": step.seq,
        "at": step.at.isoformat(),
        "name": step.name,
        "detail": detail,
        "nova_requests": step.nova_requests,
        "calls": list(calls) if isinstance(calls, list) else [],
        "calls_omitted": int(omitted) if isinstance(omitted, int) else 0,
    }


def operation_view(operation: Operation, steps: Sequence[Step]) -> dict[str, Any]:
    """One operation's whole chain, JSON-ready and redacted."""
    duration = None
    if operation.finished_at is not None:
        duration = round((operation.finished_at - operation.created_at).total_seconds(), 3)
    view = {
        "id": operation.id,
        "action": operation.action,
        "server": {
            "id": operation.server_ref,
            "name": operation.server_name_ref,
        },
        "project_id": operation.project_id,
        "request_id": operation.request_id,
        "event": event_view(operation.event),
        "policy": operation.policy,
        "why": operation.why,
        "mode": operation.mode,
        "params": operation.params,
        "decision": decision_of(operation),
        "status": operation.status,
        "phase": operation.phase,
        "created_at": operation.created_at.isoformat(),
        "finished_at": _iso(operation.finished_at),
        "duration_s": duration,
        "steps": [step_view(step) for step in steps],
        "outcome": operation.outcome,
        "reason": operation.reason,
        "nova_requests": operation.nova_requests,
    }
    cleaned = redact(view)
    assert isinstance(cleaned, dict)
    return cleaned


def document(views: Sequence[Mapping[str, Any]], filters: Filters) -> dict[str, Any]:
    """What ``history --json`` prints."""
    return {
        "format": FORMAT_VERSION,
        "filters": filters.as_dict(),
        "count": len(views),
        "operations": list(views),
    }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


# --- text --------------------------------------------------------------------------------


class _Style:
    """ANSI emphasis on a terminal; nothing otherwise."""

    _CODES: Final = {"bold": "1", "dim": "2", "green": "32", "red": "31", "yellow": "33"}

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, text: str, style: str) -> str:
        if not self.enabled or not text:
            return text
        return f"\033[{self._CODES[style]}m{text}\033[0m"

    def outcome(self, outcome: str | None) -> str:
        text = outcome or "(running)"
        if outcome in ("confirmed", "rescued", "unrescued", "boot_ok"):
            return self(text, "green")
        if outcome in ("failed", "timed_out", "not_rescuable", "boot_failed"):
            return self(text, "red")
        return self(text, "yellow")


def render(
    views: Sequence[Mapping[str, Any]],
    *,
    chains: bool | None = None,
    color: bool = False,
) -> str:
    """The text of ``history``: a table of the operations, then each one's chain when
    ``chains`` (default: when at most :data:`CHAIN_UP_TO` match)."""
    if not views:
        return "no operations match"
    style = _Style(color)
    show_chains = len(views) <= CHAIN_UP_TO if chains is None else chains
    parts = [_table(views, style)]
    if show_chains:
        parts.extend(_chain(view, style) for view in views)
    return "\n\n".join(parts)


def _table(views: Sequence[Mapping[str, Any]], style: _Style) -> str:
    columns = [
        *map(Column, ("CREATED (UTC)", "OPERATION", "ACTION", "SERVER", "POLICY", "OUTCOME")),
        Column("REQS", right=True),
        Column("TIME", right=True),
    ]
    rows = [
        (
            _short_time(view["created_at"]),
            str(view["id"])[:12],
            str(view["action"]),
            _server(view["server"]),
            str(view["policy"]),
            view["outcome"] or "(running)",
            str(view["nova_requests"]),
            _duration(view["duration_s"]),
        )
        for view in views
    ]

    def paint(row: int, column: int, cell: str) -> str:
        return style.outcome(views[row]["outcome"]) if column == 5 else cell

    head, newline, body = table(columns, rows, paint=paint).partition("\n")
    return style(head, "bold") + newline + body


def _chain(view: Mapping[str, Any], style: _Style) -> str:
    event = view["event"]
    decision = view["decision"]
    lines = [
        style(f"operation {view['id']}", "bold")
        + f"  {view['action']} on {_server(view['server'])}",
        f"  event     {event['source']} {event['type']}"
        + _pairs(("id", event["message_id"]), ("at", event["at"])),
    ]
    if event["fields"]:
        lines.append(f"            {_values(event['fields'])}")
    lines.append(f"  policy    {view['policy']}: {view['why']}")
    lines.append(
        f"  decision  {decision['verdict']}"
        + (f": {decision['reason']}" if decision["reason"] else "")
        + f"  (mode {view['mode']})"
    )
    steps = view["steps"]
    lines.append(f"  steps     {len(steps) or 'none'}")
    for alike in fold(steps):
        lines.extend(_step_lines(alike, style))
    duration = _duration(view["duration_s"])
    lines.append(
        f"  outcome   {style.outcome(view['outcome'])}"
        + (f": {view['reason']}" if view["reason"] else "")
    )
    lines.append(
        f"            {view['nova_requests']} Nova requests"
        + (f", {duration} from decision to outcome" if duration else f", phase {view['phase']}")
    )
    return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class StepParts:
    """A step's detail as a reader is shown it: the action's own values, the health
    gate's checks (``{check, passed, detail}``, which make ``problems`` redundant),
    and what woke the phase (``woken by notification instance.update``)."""

    values: dict[str, Any]
    checks: list[Mapping[str, Any]]
    woken: str | None


def step_parts(detail: Mapping[str, Any]) -> StepParts:
    values = dict(detail)
    woken = values.pop("woken_by", None)
    checks = values.pop("checks", None)
    if isinstance(checks, list) and checks and all(isinstance(c, Mapping) for c in checks):
        values.pop("problems", None)  # the failed checks say the same
    else:
        checks = []
    said = None
    if isinstance(woken, Mapping):
        said = "woken by " + " ".join(str(v) for v in (woken.get("by"), woken.get("event")) if v)
    return StepParts(values, checks, said)


#: What makes two steps alike (all but their number and time).
_ALIKE: Final = ("name", "detail", "nova_requests", "calls", "calls_omitted")


def fold(steps: Sequence[Mapping[str, Any]]) -> list[list[Mapping[str, Any]]]:
    """The steps in runs of consecutive steps that are alike (same name, detail, Nova
    calls), each run told once in the text: a health gate retried 61 times on a
    server that cannot pass it is one line with its count. JSON keeps every step."""
    runs: list[list[Mapping[str, Any]]] = []
    for step in steps:
        if runs and all(runs[-1][0][key] == step[key] for key in _ALIKE):
            runs[-1].append(step)
        else:
            runs.append([step])
    return runs


def _step_lines(alike: Sequence[Mapping[str, Any]], style: _Style) -> list[str]:
    step = alike[0]
    parts = step_parts(step["detail"])
    detail, checks = parts.values, parts.checks
    requests = step["nova_requests"]
    each = " each" if len(alike) > 1 else ""
    head = f"    {_clock(step['at'])}  {step['name']}" + (
        f"  [{requests} request{'s' if requests != 1 else ''}{each}]" if requests else ""
    )
    if len(alike) > 1:
        head += f"  (x{len(alike)}, first {_clock(step['at'])}, last {_clock(alike[-1]['at'])})"
    if parts.woken:
        head += style(f"  ({parts.woken})", "dim")
    lines = [head]
    if detail:
        lines.append(f"        {_values(detail)}")
    for check in checks:
        mark = style("ok  ", "green") if check.get("passed") else style("FAIL", "red")
        lines.append(f"        check {mark} {check.get('check')}: {check.get('detail')}")
    for call in step["calls"]:
        name = f"  ({call.get('call')})" if call.get("call") else ""
        text = f"{call.get('method')} {call.get('path')} {call.get('status')}{name}"
        lines.append(style(f"        {text}", "dim"))
    if step["calls_omitted"]:
        lines.append(style(f"        ... {step['calls_omitted']} more calls not listed", "dim"))
    return lines


def _server(server: Mapping[str, Any]) -> str:
    name, ident = server.get("name"), server.get("id")
    if name and ident:
        return f"{name} ({ident})"
    return str(name or ident or "-")


def _pairs(*pairs: tuple[str, Any]) -> str:
    return "".join(f"  {key} {value}" for key, value in pairs if value)


def _values(values: Mapping[str, Any]) -> str:
    return "  ".join(f"{key}={_scalar(value)}" for key, value in values.items())


def _scalar(value: Any) -> str:
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {_scalar(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_scalar(v) for v in value) + "]"
    return str(value)


def _short_time(iso: str) -> str:
    return datetime.fromisoformat(iso).astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _clock(iso: str) -> str:
    moment = datetime.fromisoformat(iso).astimezone(timezone.utc)
    return moment.strftime("%H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{rest:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
