"""The status page: what the daemon does now and did in the last hour, at ``GET /``.

Plain HTML rendered on the server, read-only, with inline CSS and no script: the
readiness and its problems, the operations in flight with their phase and age,
the held operations (queued behind their server's operation, awaiting an
operator's approval), the circuit breakers, the consumers, and every operation
of the last hour with its chain of steps (as ``nova-autopilot history`` shows it,
redacted). Every value passes through :func:`html.escape`. ``docs/metrics.md``
shows it.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Final

from nova_autopilot.errors import AutopilotError
from nova_autopilot.journal import HELD_PHASES, Journal
from nova_autopilot.reports.history import operation_view, step_parts

__all__ = ["StatusPage"]

#: How far back the page's history looks, and how many operations it shows at most.
WINDOW: Final = timedelta(hours=1)
LIMIT: Final = 50
#: The page reloads itself this often (a meta refresh, no script).
REFRESH_S: Final = 15

_CSS: Final = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#1d2630;background:#fafbfc}
h1{font-size:1.4em;margin:0 0 .2em}h2{font-size:1.1em;margin:1.4em 0 .4em}
table{border-collapse:collapse;margin:.2em 0 .6em}
th,td{border:1px solid #d5dbe1;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#eef1f4}code{font-size:.95em}
.ok{color:#17633a;font-weight:600}.bad{color:#b3261e;font-weight:600}
.warn{color:#8a5a00;font-weight:600}.muted{color:#66727e}
ol.steps{margin:.2em 0 .2em 1.2em;padding:0}ol.steps li{margin:.1em 0}
"""
_PASSED: Final = '<span class="ok">ok</span>'
_FAILED: Final = '<span class="bad">FAIL</span>'
_BAD_OUTCOMES: Final = {"failed", "timed_out", "reverted", "refused", "expired", "rejected"}
_STATES: Final = {"closed": "ok", "half_open": "warn", "half-open": "warn", "open": "bad"}


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _age(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], empty: str) -> str:
    """A table of cells already escaped (and marked up); ``empty`` when there is no row."""
    body = ["<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows]
    if not body:
        return f'<p class="muted">{_e(empty)}</p>'
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _outcome(outcome: str | None) -> str:
    if outcome is None:
        return '<span class="warn">unfinished</span>'
    css = "bad" if outcome in _BAD_OUTCOMES else "ok"
    return f'<span class="{css} outcome">{_e(outcome)}</span>'


def _readiness(readiness: Any) -> str:
    if not isinstance(readiness, Mapping) or "ready" not in readiness:
        return f'<p class="bad">readiness unknown: {_e(readiness)}</p>'
    if readiness["ready"]:
        return '<p>Readiness: <span class="ok" id="readiness">ready</span></p>'
    problems = "".join(
        f"<li><b>{_e(part)}</b>: {_e(what)}</li>"
        for part, what in sorted(dict(readiness.get("problems", {})).items())
    )
    return f'<p>Readiness: <span class="bad" id="readiness">not ready</span></p><ul>{problems}</ul>'


def _in_flight(operations: Any) -> str:
    if not isinstance(operations, list):
        return f'<p class="bad">{_e(operations)}</p>'
    rows = [
        (
            f"<code>{_e(op['operation_id'])}</code>",
            _e(op["action"]),
            f"<code>{_e(op['server_id'])}</code>",
            f'<span class="phase">{_e(op["phase"])}</span>',
            "yes" if op.get("waiting") else "no",
            _e(op.get("attempts")),
            _e(_age(op.get("age_s"))),
        )
        for op in operations
    ]
    headers = ("operation", "action", "server", "phase", "waiting for Nova", "retries", "age")
    return _table(headers, rows, "No operation in flight.")


def _breakers(breakers: Any) -> str:
    if not isinstance(breakers, Mapping) or "error" in breakers:
        return f'<p class="bad">{_e(breakers)}</p>'
    rows = [
        (_e(scope), f'<span class="{_STATES.get(str(state), "warn")}">{_e(state)}</span>')
        for scope, state in sorted(breakers.items())
    ]
    return _table(("scope", "state"), rows, "No breaker.")


def _consumers(consumers: Any) -> str:
    if not isinstance(consumers, list):
        return f'<p class="bad">{_e(consumers)}</p>'
    rows = [
        (
            _e(c["name"]),
            _e(c["queue"]),
            '<span class="ok">up</span>' if c.get("up") else '<span class="bad">down</span>',
            _e(c.get("reconnects")),
            _e(c.get("last_error")),
        )
        for c in consumers
    ]
    return _table(("consumer", "queue", "state", "reconnects", "last error"), rows, "No consumer.")


def _step(step: Mapping[str, Any]) -> str:
    parts = step_parts(step["detail"])
    detail = ", ".join(f"{_e(k)}={_e(v)}" for k, v in sorted(parts.values.items()))
    woken = f' <span class="muted">({_e(parts.woken)})</span>' if parts.woken else ""
    calls = f' <span class="muted">({_e(step["nova_requests"])} Nova requests)</span>'
    checks = "".join(
        f"<br>check {_PASSED if c.get('passed') else _FAILED} "
        f"{_e(c.get('check'))}: {_e(c.get('detail'))}"
        for c in parts.checks
    )
    return (
        f'<li><span class="muted">{_e(step["at"][11:19])}</span> '
        f'<b class="step">{_e(step["name"])}</b>{woken} {detail}'
        f"{calls if step['nova_requests'] else ''}{checks}</li>"
    )


def _history(views: Sequence[Mapping[str, Any]]) -> str:
    if not views:
        return '<p class="muted">No operation in the last hour.</p>'
    parts = []
    for view in views:
        server = view["server"]
        name = f" ({_e(server['name'])})" if server.get("name") else ""
        duration = "" if view["duration_s"] is None else f", {_e(_age(view['duration_s']))}"
        reason = f'<div class="muted">{_e(view["reason"])}</div>' if view.get("reason") else ""
        steps = "".join(_step(step) for step in view["steps"])
        parts.append(
            f'<div class="operation" id="op-{_e(view["id"])}">'
            f'<span class="muted">{_e(view["created_at"][11:19])}</span> '
            f"<code>{_e(view['id'])}</code> <b>{_e(view['action'])}</b> of "
            f"<code>{_e(server.get('id'))}</code>{name}, policy {_e(view['policy'])}, "
            f"phase {_e(view['phase'])}: {_outcome(view['outcome'])}{duration}{reason}"
            f'<ol class="steps">{steps}</ol></div>'
        )
    return "".join(parts)


class StatusPage:
    """Renders ``GET /`` from the status document and the journal.

    ::

        page = StatusPage(status=daemon.status, journal=journal, clock=utc_now)
        body = page.render()      # bytes of text/html
    """

    def __init__(
        self,
        *,
        status: Callable[[], Mapping[str, Any]],
        journal: Journal,
        clock: Callable[[], datetime],
        window: timedelta = WINDOW,
        limit: int = LIMIT,
    ) -> None:
        self._status = status
        self._journal = journal
        self._clock = clock
        self._window = window
        self._limit = limit

    def render(self) -> bytes:
        now = self._clock()
        document = self._status()
        about = document.get("daemon", {})
        sections = [
            _readiness(document.get("readiness")),
            "<h2>Operations in flight</h2>",
            _in_flight(document.get("operations")),
            "<h2>Held operations</h2>",
            self._held(now),
            "<h2>Circuit breakers</h2>",
            _breakers(document.get("breakers")),
            "<h2>Consumers</h2>",
            _consumers(document.get("consumers")),
            "<h2>The last hour</h2>",
            self._last_hour(now),
        ]
        title = f"nova-autopilot {_e(about.get('version'))}"
        started = f"up {_e(_age(about.get('uptime_s')))}, pid {_e(about.get('pid'))}"
        page = (
            "<!DOCTYPE html>\n"
            f'<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
            f'<meta http-equiv="refresh" content="{REFRESH_S}">'
            f"<style>{_CSS}</style></head><body>"
            f'<h1>{title}</h1><p class="muted">{started}; '
            f"{_e(about.get('policies'))} policies{'; dry run' if about.get('dry_run') else ''}; "
            f"shown at {_e(now.isoformat(timespec='seconds'))}</p>"
            + "".join(sections)
            + "</body></html>\n"
        )
        return page.encode("utf-8")

    def _held(self, now: datetime) -> str:
        try:
            held = [op for op in self._journal.unfinished() if op.phase in HELD_PHASES]
        except AutopilotError as exc:
            return f'<p class="bad">the journal cannot be read: {_e(exc)}</p>'
        rows = [
            (
                f"<code>{_e(op.id)}</code>",
                _e(op.action),
                f"<code>{_e(op.server_ref)}</code>",
                _e(op.policy),
                f'<span class="phase">{_e(op.phase)}</span>',
                _e(_age((now - op.created_at).total_seconds())),
                _e(op.deadline_at.isoformat(timespec="seconds") if op.deadline_at else ""),
            )
            for op in held
        ]
        headers = ("operation", "action", "server", "policy", "phase", "age", "until")
        return _table(headers, rows, "No operation held.")

    def _last_hour(self, now: datetime) -> str:
        try:
            operations = self._journal.history(since=now - self._window, limit=self._limit)
            views = [operation_view(op, self._journal.steps(op.id)) for op in operations]
        except AutopilotError as exc:
            return f'<p class="bad">the journal cannot be read: {_e(exc)}</p>'
        return _history(views)
