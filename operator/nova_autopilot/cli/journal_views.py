"""The commands that read the journal: ``history``, ``pending``, ``refusals``, and
``breaker`` (which also resets). A journal whose SQLite file does not exist yet is
read as empty and never created; a line on stderr names the path looked at."""

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

from nova_autopilot import logs
from nova_autopilot.cli.common import EXIT_OK, UsageError, load_conf, print_json


@contextlib.contextmanager
def open_journal(args: argparse.Namespace, *, quiet: bool = False) -> Iterator[Any]:
    """The configured journal for reading, or None when its SQLite file does not
    exist yet (nothing happened, and a reader must not create it): unless ``quiet``,
    a line on stderr then says which file was looked for."""
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


def history(args: argparse.Namespace) -> int:
    from nova_autopilot.journal import OUTCOMES, AmbiguousServer
    from nova_autopilot.reports import history as chains

    moments = _moments(args, "since", "until")
    if args.outcome and args.outcome not in OUTCOMES:
        raise UsageError(f"--outcome {args.outcome!r}: expected one of {', '.join(OUTCOMES)}")
    filters = chains.Filters(
        server_id=args.server,
        policy=args.policy,
        since=moments["since"],
        until=moments["until"],
        outcome=args.outcome,
        operation_id=args.operation,
        limit=args.limit,
    )
    views = []
    with open_journal(args) as journal:
        if journal is not None:
            try:
                found = journal.history(
                    server=filters.server_id,
                    policy=filters.policy,
                    since=filters.since,
                    until=filters.until,
                    outcome=filters.outcome,
                    id_prefix=filters.operation_id,
                    limit=filters.limit,
                )
            except AmbiguousServer as exc:
                raise UsageError(f"--server {exc}") from None
            for operation in found:
                views.append(chains.operation_view(operation, journal.steps(operation.id)))
    if args.json:
        print_json(chains.document(views, filters))
    else:
        color = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
        print(chains.render(views, chains=True if args.operation else None, color=color))
    return EXIT_OK


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
    if args.json:
        print_json(found)
        return EXIT_OK
    if not found:
        print("no operation awaits approval")
    for item in found:
        server = item["server_id"] or item["server_name"]
        print(f"{item['operation_id']}  {item['action']} {server}  policy {item['policy']}")
        print(f"  params: {json.dumps(item['params'], sort_keys=True)}")
        print(f"  since {item['created_at']}, expires {item['approval_until']}")
        print(f"  why: {item['why']}")
    return EXIT_OK


def refusals(args: argparse.Namespace) -> int:
    moments = _moments(args, "since")
    with open_journal(args) as journal:
        found = (
            []
            if journal is None
            else journal.refusals(
                since=moments["since"],
                reason=args.reason,
                key_id=args.key,
                request_id=args.request,
                limit=args.limit,
            )
        )
    if args.json:
        print_json([dataclasses.asdict(r) for r in found])
        return EXIT_OK
    if not found:
        print("no refused request matches")
    for r in found:
        print(f"{_when(r.at)}  {r.reason}  {r.request_type or '-'} {r.request_id or '-'}")
        print(f"  key: {r.key_id or '-'}  queue: {r.queue}  source: {r.source}")
        print(f"  detail: {r.detail}")
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
        _print_breakers(found, as_json=args.json)
    elif was_open:
        for scope in was_open:
            print(f"reset {scope}: closed")
    else:
        which = "no breaker is open" if scopes is None else f"{scopes[0]} is not open"
        print(f"nothing to reset: {which}")
    return EXIT_OK


def _print_breakers(found: list[Any], *, as_json: bool) -> None:
    if as_json:
        print_json([dataclasses.asdict(b) for b in found])
        return
    if not found:
        print("no breaker ever opened: all closed")
    for b in found:
        print(f"{b.scope}: {b.state}")
        if b.state != "closed":
            print(f"  opened_at: {_when(b.opened_at)} after {b.failures} failures")
            print(f"  last failure: {b.reason or '-'}")
        if b.trial_operation_id:
            print(f"  trial operation: {b.trial_operation_id}")
        print(f"  last closed: {_when(b.closed_at)}")
