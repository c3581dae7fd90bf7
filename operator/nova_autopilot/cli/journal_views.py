"""The commands that read the journal: ``history``, ``pending``, ``refusals``, and
``breaker`` (which also resets). A journal whose SQLite file does not exist yet is
read as empty and never created; a line on stderr names the path looked at.

Each listing has its columns here (:class:`~nova_autopilot.cli.output.Columns`,
named as in its JSON) and prints through :func:`~nova_autopilot.cli.output.emit`.
An operation or request id may be given by its start when one id starts so
(:func:`whole_operation_id`, :func:`whole_request_id`)."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

from nova_autopilot.cli.common import EXIT_OK, UsageError, load_conf
from nova_autopilot.cli.output import Columns, Listing, emit

HISTORY = Columns(
    names=(
        "id",
        "created_at",
        "finished_at",
        "action",
        "server_id",
        "server_name",
        "policy",
        "mode",
        "decision",
        "status",
        "phase",
        "outcome",
        "reason",
        "nova_requests",
        "steps",
        "duration_s",
        "request_id",
        "project_id",
    ),
    shown=(
        "id",
        "created_at",
        "action",
        "server_id",
        "server_name",
        "policy",
        "outcome",
        "nova_requests",
        "duration_s",
    ),
)
PENDING = Columns(
    names=(
        "operation_id",
        "policy",
        "action",
        "server_id",
        "server_name",
        "params",
        "why",
        "request_id",
        "created_at",
        "approval_until",
    )
)
REFUSALS = Columns(
    names=(
        "id",
        "at",
        "source",
        "queue",
        "reason",
        "detail",
        "body",
        "request_type",
        "request_id",
        "key_id",
        "message_id",
        "correlation_id",
    ),
    shown=("at", "reason", "request_type", "request_id", "key_id", "queue", "source", "detail"),
)
BREAKERS = Columns(
    names=(
        "scope",
        "state",
        "failures",
        "reason",
        "opened_at",
        "closed_at",
        "trial_operation_id",
        "updated_at",
        "version",
    ),
    shown=("scope", "state", "failures", "reason", "opened_at", "closed_at", "trial_operation_id"),
)
#: How many ids an ambiguous start lists, and how many refusals a request id's start
#: is looked for among (the newest).
_AMBIGUOUS_SHOWN, _REQUESTS_SEARCHED = 10, 10_000


@contextlib.contextmanager
def open_journal(args: argparse.Namespace, *, quiet: bool = False) -> Iterator[Any]:
    """The configured journal for reading, or None when its SQLite file does not
    exist yet (nothing happened, and a reader must not create it): unless ``quiet``,
    a line on stderr then says which file was looked for."""
    from nova_autopilot import logs
    from nova_autopilot.journal import Journal, default_url, missing_sqlite_file

    conf = load_conf(args)
    url = conf.journal.connection or default_url(conf.state_dir)
    missing = missing_sqlite_file(url)
    if missing is not None:
        if not quiet:
            print(
                f"nova-autopilot: no journal at {missing} (no daemon has written one there; "
                "[journal] connection, else [DEFAULT] state_dir, names it): nothing to show",
                file=sys.stderr,
            )
        yield None
        return
    with Journal.open(url, redact=logs.redact, migrate_schema=False) as journal:
        yield journal


def _moments(args: argparse.Namespace, *options: str) -> dict[str, datetime | None]:
    """The ``--since``/``--until`` options as times (ISO 8601, or ``2h`` ago); a usage
    error for a bad one or a ``--limit`` below 1."""
    from nova_autopilot.reports import history

    now = datetime.now(timezone.utc)
    moments = {}
    for option in options:
        text = getattr(args, option)
        try:
            moments[option] = history.parse_when(text, now=now) if text else None
        except ValueError as exc:
            raise UsageError(f"--{option}: {exc}") from None
    if args.limit < 1:
        raise UsageError(f"--limit must be at least 1, got {args.limit}")
    return moments


def _when(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value else "-"


def whole_operation_id(journal: Any, given: str, *, required: bool = False) -> str | None:
    """The id of the one operation of ``journal`` whose id is ``given`` or starts with
    it; a usage error (exit status 2) when several do. None when none does, unless
    ``required`` (then a usage error too)."""
    found = [op.id for op in journal.history(id_prefix=given, limit=_AMBIGUOUS_SHOWN + 1)]
    if given in found:
        return given
    return _one("operation", given, found, required=required, hint="pending")


def whole_request_id(journal: Any, given: str) -> str | None:
    """The request id of the refusals that ``given`` names: itself when refusals of that
    id exist, else the one id starting with it among the newest refusals; a usage
    error when several do; None when none does."""
    if journal.refusals(request_id=given, limit=1):
        return given
    ids = {
        r.request_id
        for r in journal.refusals(limit=_REQUESTS_SEARCHED)
        if r.request_id and r.request_id.startswith(given)
    }
    return _one("request", given, sorted(ids), required=False, hint="refusals")


def _one(noun: str, given: str, found: list[str], *, required: bool, hint: str) -> str | None:
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        shown = found[:_AMBIGUOUS_SHOWN]
        more = ", ..." if len(found) > len(shown) else ""
        raise UsageError(
            f"{noun} id {given!r} is ambiguous: it starts {', '.join(shown)}{more}; give more of it"
        )
    if required:
        raise UsageError(f"no {noun} {given!r} in the journal (see: nova-autopilot {hint})")
    return None


def history(args: argparse.Namespace) -> int:
    from nova_autopilot.journal import OUTCOMES, AmbiguousServer
    from nova_autopilot.reports import history as chains

    moments = _moments(args, "since", "until")
    if args.outcome and args.outcome not in OUTCOMES:
        raise UsageError(f"--outcome {args.outcome!r}: expected one of {', '.join(OUTCOMES)}")
    views = []
    operation_id = args.operation
    with open_journal(args) as journal:
        if journal is not None:
            if args.operation:
                operation_id = whole_operation_id(journal, args.operation) or args.operation
            try:
                found = journal.history(
                    server=args.server,
                    policy=args.policy,
                    since=moments["since"],
                    until=moments["until"],
                    outcome=args.outcome,
                    id_prefix=operation_id,
                    limit=args.limit,
                )
            except AmbiguousServer as exc:
                raise UsageError(f"--server {exc}") from None
            for operation in found:
                views.append(chains.operation_view(operation, journal.steps(operation.id)))
    filters = chains.Filters(
        server_id=args.server,
        policy=args.policy,
        since=moments["since"],
        until=moments["until"],
        outcome=args.outcome,
        operation_id=operation_id,
        limit=args.limit,
    )
    color = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    listing = Listing(
        columns=HISTORY,
        rows=[_history_row(view) for view in views],
        text=chains.render(views, chains=True if args.operation else None, color=color),
        document=chains.document(views, filters),
    )
    emit(listing, args)
    return EXIT_OK


def _history_row(view: dict[str, Any]) -> dict[str, Any]:
    server = view["server"]
    return {
        **{name: view[name] for name in HISTORY.names if name in view and name != "steps"},
        "server_id": server["id"],
        "server_name": server["name"],
        "decision": view["decision"]["verdict"],
        "steps": len(view["steps"]),
    }


def pending(args: argparse.Namespace) -> int:
    from nova_autopilot.engine import holds
    from nova_autopilot.journal import StateKey

    with open_journal(args) as journal:
        waiting = holds.awaiting(journal) if journal is not None else []
    found = [
        {
            "operation_id": op.id,
            "policy": op.policy,
            "action": op.action,
            "server_id": op.server_id,
            "server_name": op.server_name,
            "params": op.params,
            "why": op.why,
            "request_id": op.request_id,
            "created_at": op.created_at.isoformat(),
            "approval_until": op.state.get(StateKey.HOLD_UNTIL),
        }
        for op in waiting
    ]
    lines = [] if found else ["no operation awaits approval"]
    for item in found:
        server = item["server_id"] or item["server_name"]
        lines.append(f"{item['operation_id']}  {item['action']} {server}  policy {item['policy']}")
        lines.append(f"  params: {json.dumps(item['params'], sort_keys=True)}")
        lines.append(f"  since {item['created_at']}, expires {item['approval_until']}")
        lines.append(f"  why: {item['why']}")
    emit(Listing(columns=PENDING, rows=found, text="\n".join(lines)), args)
    return EXIT_OK


def refusals(args: argparse.Namespace) -> int:
    moments = _moments(args, "since")
    found = []
    with open_journal(args) as journal:
        request_id = args.request
        if journal is not None and request_id:
            request_id = whole_request_id(journal, request_id) or request_id
        if journal is not None:
            found = journal.refusals(
                since=moments["since"],
                reason=args.reason,
                key_id=args.key,
                request_id=request_id,
                limit=args.limit,
            )
    lines = [] if found else ["no refused request matches"]
    for r in found:
        lines.append(f"{_when(r.at)}  {r.reason}  {r.request_type or '-'} {r.request_id or '-'}")
        lines.append(f"  key: {r.key_id or '-'}  queue: {r.queue}  source: {r.source}")
        lines.append(f"  detail: {r.detail}")
    rows = [_record(r) for r in found]
    emit(Listing(columns=REFUSALS, rows=rows, text="\n".join(lines)), args)
    return EXIT_OK


def breaker(args: argparse.Namespace) -> int:
    from nova_autopilot.guards import GLOBAL, policy_scope

    scopes = None if args.breaker_command == "list" or args.all else [GLOBAL]
    if args.breaker_command == "reset" and args.policy:
        scopes = [policy_scope(args.policy)]
    found: list[Any] = []
    was_open: list[str] = []
    with open_journal(args) as journal:
        if journal is None:
            pass  # no daemon ever ran here: every breaker is closed
        elif args.breaker_command == "list":
            found = list(journal.breakers().values())
        else:
            was_open = journal.reset_breakers(scopes)
    if args.breaker_command == "list":
        rows = [_record(b) for b in found]
        emit(Listing(columns=BREAKERS, rows=rows, text=_breakers_text(found)), args)
    elif was_open:
        for scope in was_open:
            print(f"reset {scope}: closed")
    else:
        which = "no breaker is open" if scopes is None else f"{scopes[0]} is not open"
        print(f"nothing to reset: {which}")
    return EXIT_OK


def _breakers_text(found: list[Any]) -> str:
    if not found:
        return "no breaker ever opened: all closed"
    lines = []
    for b in found:
        lines.append(f"{b.scope}: {b.state}")
        if b.state != "closed":
            lines.append(f"  opened_at: {_when(b.opened_at)} after {b.failures} failures")
            lines.append(f"  last failure: {b.reason or '-'}")
        if b.trial_operation_id:
            lines.append(f"  trial operation: {b.trial_operation_id}")
        lines.append(f"  last closed: {_when(b.closed_at)}")
    return "\n".join(lines)


def _record(record: Any) -> dict[str, Any]:
    """A journal record as a row: its fields, times in ISO 8601."""
    return {
        key: value.isoformat() if isinstance(value, datetime) else value
        for key, value in dataclasses.asdict(record).items()
    }
