"""``nova-autopilot status``: what the running daemon says about itself.

It asks the daemon's ``/status`` endpoint (``[metrics] bind_host`` and
``port``). When the daemon does not answer, it says so and still lists the
operations the journal holds unfinished (``[journal] connection``): those the
daemon resumes at its next start.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from nova_autopilot.errors import PermanentError
from nova_autopilot.journal import Journal, default_url, missing_sqlite_file
from nova_autopilot.reports.table import Column, table

__all__ = ["DaemonSilent", "ask", "endpoint", "render", "render_journal", "unfinished"]

_ANY_ADDRESS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}  # any address: ask loopback


class DaemonSilent(Exception):
    """The daemon cannot be asked, or did not answer; the message says why."""


def endpoint(conf: Any) -> str:
    """The URL of the daemon's ``/status`` from the configuration."""
    metrics = conf.metrics
    if not metrics.enabled:
        raise DaemonSilent("the daemon serves no endpoints ([metrics] enabled = false)")
    if int(metrics.port) == 0:
        raise DaemonSilent(
            "the daemon's port is chosen at its start ([metrics] port = 0); "
            "its log says which (endpoints.listening)"
        )
    host = _ANY_ADDRESS.get(metrics.bind_host, metrics.bind_host)
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{int(metrics.port)}/status"


def ask(url: str, *, timeout: float = 5.0) -> dict[str, Any]:
    """The daemon's status document."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            document = json.loads(response.read().decode("utf-8"))
    except urllib.error.HTTPError as exc:
        raise DaemonSilent(f"{url} answered {exc.code} {exc.reason}") from None
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DaemonSilent(f"no answer from {url}: {reason}") from None
    if not isinstance(document, dict):
        raise DaemonSilent(f"{url} answered something that is not a status document")
    return document


def unfinished(journal_url: str, *, now: datetime | None = None) -> list[dict[str, Any]]:
    """The journal's unfinished operations, oldest first, shaped like ``/status``'s."""
    at = now or datetime.now(timezone.utc)
    missing = missing_sqlite_file(journal_url)
    if missing is not None:  # nothing to list, and nothing to create
        raise PermanentError(f"there is no journal at {missing}")
    with Journal.open(journal_url, migrate_schema=False) as journal:
        operations = journal.unfinished()
    return [
        {
            "operation_id": op.id,
            "action": op.action,
            "server_id": op.server_ref or op.server_name,
            "phase": op.phase,
            "policy": op.policy,
            "started_at": op.created_at.isoformat(),
            "age_s": round((at - op.created_at).total_seconds(), 3),
        }
        for op in operations
    ]


def journal_url(conf: Any) -> str:
    return str(conf.journal.connection or default_url(conf.state_dir))


# --- rendering --------------------------------------------------------------------------


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Plain aligned columns under a header."""
    columns = [Column(h.upper()) for h in headers]
    return table(columns, [[_cell(v) for v in row] for row in rows])


def _age(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)):
        return "-"
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _operations(operations: Sequence[Mapping[str, Any]]) -> str:
    if not operations:
        return "no operation in flight"
    return _table(
        ["operation", "action", "server", "phase", "age"],
        [
            [
                o.get("operation_id"),
                o.get("action"),
                o.get("server_id"),
                o.get("phase"),
                _age(o.get("age_s")),
            ]
            for o in operations
        ],
    )


def _counts(rows: Sequence[Mapping[str, Any]], first: str, second: str) -> str:
    return _table(
        [first, second, "count"], [[r.get(first), r.get(second), r.get("count")] for r in rows]
    )


def _sweeps(sweeps: Mapping[str, Any]) -> str:
    last = sweeps["last"]
    if last.get("skipped"):
        what = f"skipped ({last['skipped']})"
    elif last.get("error"):
        what = f"failed: {last['error']}"
    else:
        what = (
            f"{last.get('servers')} servers, {last.get('events')} events, "
            f"{last.get('operations')} operations, {last.get('nova_requests')} Nova requests "
            f"in {last.get('duration_s')} s"
        )
    return (
        f"  {sweeps.get('sweeps')} sweeps every {sweeps.get('interval_s'):g} s; "
        f"the last at {last.get('at')}: {what}"
    )


def render(document: Mapping[str, Any]) -> str:
    """The status document as readable sections."""
    out: list[str] = []
    about = document.get("daemon") or {}
    out.append(
        f"nova-autopilot {about.get('version', '?')} (pid {about.get('pid', '?')}), "
        f"up {_age(about.get('uptime_s'))}, {about.get('policies', '?')} policies"
        + (", global dry-run" if about.get("dry_run") else "")
    )
    ready = document.get("readiness") or {}
    if ready.get("ready"):
        out.append("ready")
    else:
        out.append("NOT READY")
        out += [
            f"  {part}: {problem}"
            for part, problem in sorted((ready.get("problems") or {}).items())
        ]
    out.append("\nOperations in flight")
    out.append(_operations(document.get("operations") or []))
    consumers = document.get("consumers") or []
    out.append("\nConsumers")
    out.append(
        _table(
            ["consumer", "up", "queue", "reconnects", "last error"],
            [
                [
                    c.get("name"),
                    c.get("up"),
                    c.get("queue"),
                    c.get("reconnects"),
                    c.get("last_error"),
                ]
                for c in consumers
            ],
        )
    )
    breakers = document.get("breakers")
    if isinstance(breakers, Mapping) and breakers:
        out.append("\nCircuit breakers")
        out.append(_table(["scope", "state"], sorted(breakers.items())))
    sweeps = document.get("sweeps")
    if isinstance(sweeps, Mapping) and sweeps.get("last"):
        out.append("\nSweeps")
        out.append(_sweeps(sweeps))
    counters = document.get("counters") or {}
    for title, key, first, second in (
        ("Decisions", "decisions", "policy", "outcome"),
        ("Operations finished", "operations_finished", "action", "outcome"),
        ("Nova requests", "nova_requests", "call", "status"),
    ):
        rows = counters.get(key) or []
        if rows:
            out.append(f"\n{title}")
            out.append(_counts(rows, first, second))
    refusals = counters.get("guard_refusals") or {}
    if refusals:
        out.append("\nGuard refusals")
        out.append(_table(["guard", "count"], sorted(refusals.items())))
    return "\n".join(out)


def render_journal(reason: str, operations: Sequence[Mapping[str, Any]]) -> str:
    """What is shown when the daemon does not answer."""
    return "\n".join(
        [
            f"the daemon does not answer: {reason}",
            "\nUnfinished operations in the journal (resumed at the daemon's next start)",
            _operations(operations).replace("no operation in flight", "none"),
        ]
    )
