"""The ``nova-autopilot`` command.

Exit status: 0 success, 1 the thing checked is wrong (invalid policies, a
malformed event, an unexpected demo outcome), 2 wrong usage or unreadable
input.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import getpass
import json
import os
import re
import sys
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from nova_autopilot import __version__, demo, logs, settings, signing, workbench
from nova_autopilot.errors import AutopilotError, BadMessage, PolicyError
from nova_autopilot.events import parse_message
from nova_autopilot.policies import PolicySet, load_policies

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = demo.EXIT_INTERRUPTED  # 128 + SIGINT, as a shell reports Ctrl-C


class _UsageError(Exception):
    pass


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nova-autopilot",
        description="Event-driven, confirmed operations on OpenStack Nova.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--config-file",
        action="append",
        default=[],
        metavar="FILE",
        help="an oslo.config file (repeatable; default: /etc/nova-autopilot/nova-autopilot.conf)",
    )
    parser.add_argument(
        "--config-dir",
        action="append",
        default=[],
        metavar="DIR",
        help="a directory of *.conf files read after the config files (repeatable)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def policies_option(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--policies",
            metavar="PATH",
            help="a policy file or directory (default: [policies] path of the configuration)",
        )

    check = commands.add_parser("check", help="validate policies; print every mistake")
    policies_option(check)

    explain = commands.add_parser(
        "explain", help="show how one event is normalized and why each policy fires or not"
    )
    policies_option(explain)
    explain.add_argument("--event", required=True, metavar="FILE", help="the message ('-': stdin)")
    explain.add_argument("--json", action="store_true", help="print JSON for scripts")

    replay = commands.add_parser(
        "replay", help="run a recorded stream (one message a line) through the policies"
    )
    policies_option(replay)
    replay.add_argument("stream", metavar="STREAM.jsonl", help="the stream ('-': stdin)")
    replay.add_argument("--json", action="store_true", help="print JSON for scripts")
    replay.add_argument(
        "--against", metavar="PATH", help="other policies: show what changes (backtesting)"
    )

    sweep = commands.add_parser(
        "sweep",
        help="look at Nova's server states now, as the daemon's sweep does, and show "
        "what the policies would decide",
        description="One sweep now with the configured cloud: every event it would emit, "
        "explained. Only --dry-run exists: the daemon's own sweeps decide and act "
        "(docs/sweeps.md).",
    )
    policies_option(sweep)
    sweep.add_argument(
        "--dry-run", action="store_true", required=True, help="decide, record and do nothing"
    )
    sweep.add_argument("--json", action="store_true", help="print JSON for scripts")

    demo_cmd = commands.add_parser(
        "demo",
        help="run the daemon through its flows: against an embedded Nova (no broker, no "
        "cloud needed), or against a real cloud with --cloud",
        description="Run the real daemon through the product's flows and print the history: "
        "an approved resize confirmed, a resize whose health gate fails reverted, a failed "
        "boot rescued then unrescued, a never-launched server left alone. Without --cloud "
        "it runs against an embedded Nova. With --cloud it boots its servers on that cloud "
        "(their names start with nova-autopilot-demo-), listens to the cloud's "
        "notifications on --broker, and deletes every server it booted at the end, also "
        "after a failure or Ctrl-C. A flow that cannot be staged on the cloud is skipped "
        "with the reason. Exit status 0 when every flow that ran ended as expected.",
    )
    demo_cmd.add_argument(
        "--broker",
        metavar="URL",
        help="a RabbitMQ transport URL (rabbit://user:pass@host:5672/vhost). Without "
        "--cloud: used instead of the in-process broker (give the demo a vhost of its own). "
        "With --cloud (required there): where that cloud's Nova publishes its "
        "notifications, the transport_url of its nova.conf",
    )
    demo_cmd.add_argument(
        "--cloud",
        metavar="NAME",
        help="a cloud of clouds.yaml (openstacksdk's usual lookup: OS_CLIENT_CONFIG_FILE, "
        "./clouds.yaml, ~/.config/openstack/, /etc/openstack/) to run the demo against",
    )
    cloud_only = demo_cmd.add_argument_group(
        "with --cloud", "what the demo boots; found on the cloud when not given"
    )
    cloud_only.add_argument(
        "--image",
        metavar="ID|NAME",
        help="image of the servers (default: the only, or a cirros, image)",
    )
    cloud_only.add_argument(
        "--flavor",
        metavar="ID|NAME",
        help="flavor the servers boot with (default: the smallest that fits the image)",
    )
    cloud_only.add_argument(
        "--resize-flavor",
        metavar="ID|NAME",
        help="flavor the resize flows ask for (default: the next larger one)",
    )
    cloud_only.add_argument(
        "--network",
        metavar="ID|NAME",
        help="network of the servers, or 'none' or 'auto' (default: the project's only "
        "network; 'none' when the cloud has no network service)",
    )
    cloud_only.add_argument(
        "--fail-reboot-metadata",
        metavar="KEY=VALUE",
        help="server metadata that makes this cloud's compute driver fail the server's "
        "reboots (a test cloud; novabox: novabox:fail=reboot). Without it the rescue "
        "flows are skipped: a real cloud cannot be told to fail a boot",
    )
    cloud_only.add_argument(
        "--fail-spawn-metadata",
        metavar="KEY=VALUE",
        help="server metadata that makes this cloud's compute driver fail the first boot "
        "(novabox: novabox:fail=spawn). Without it the never-launched flow is skipped",
    )

    commands.add_parser("run", help="run the daemon (as the systemd service does)")

    history = commands.add_parser(
        "history", help="what the daemon did and why: operations from the journal, step by step"
    )
    history.add_argument("--server", metavar="ID", help="only operations on this server")
    history.add_argument("--policy", metavar="NAME", help="only operations of this policy")
    history.add_argument(
        "--since", metavar="WHEN", help="created at or after: ISO 8601, or an age (30m, 2h, 7d)"
    )
    history.add_argument("--until", metavar="WHEN", help="created before (same forms as --since)")
    history.add_argument("--outcome", metavar="X", help="only this outcome (confirmed, refused...)")
    history.add_argument(
        "--operation", metavar="ID", help="one operation (its id, or the start of it), whole"
    )
    history.add_argument("--limit", type=int, default=20, metavar="N", help="at most N (20)")
    history.add_argument("--json", action="store_true", help="print JSON for scripts")

    breaker = commands.add_parser(
        "breaker", help="show or reset the circuit breakers (docs/guards.md)"
    )
    breaker_commands = breaker.add_subparsers(dest="breaker_command", required=True)
    listing = breaker_commands.add_parser("list", help="every breaker that ever opened")
    listing.add_argument("--json", action="store_true", help="print JSON for scripts")
    reset = breaker_commands.add_parser(
        "reset", help="close breakers now; the daemons see it at their next decision"
    )
    which = reset.add_mutually_exclusive_group(required=True)
    which.add_argument("--policy", metavar="NAME", help="the breaker of one policy")
    which.add_argument("--global", dest="global_", action="store_true", help="the global one")
    which.add_argument("--all", action="store_true", help="every breaker")

    refusals = commands.add_parser(
        "refusals", help="the requests refused before any decision (docs/security.md)"
    )
    refusals.add_argument("--since", metavar="WHEN", help="refused after (ISO 8601, or 2h, 7d...)")
    refusals.add_argument("--reason", metavar="R", help="only this reason (bad_signature...)")
    refusals.add_argument("--key", metavar="KEY_ID", help="only requests that claimed this key")
    refusals.add_argument("--request", metavar="ID", help="only this request id")
    refusals.add_argument("--limit", type=int, default=20, metavar="N", help="at most N (20)")
    refusals.add_argument("--json", action="store_true", help="print JSON for scripts")

    send = commands.add_parser("send", help="publish an operator request (docs/requests.md)")
    send.add_argument("--type", required=True, help="request type, e.g. quota.request.approved")
    send.add_argument("--server", required=True, help="server id or name")
    send.add_argument("--flavor", help="the wanted flavor")
    send.add_argument("--id", help="request id (default: a new one); the de-duplication key")
    send.add_argument(
        "--timestamp",
        help="the request's creation time, ISO-8601 (default: now); resending a request "
        "unchanged (same --id, --timestamp and fields) gets the first answer",
    )
    send.add_argument("--project", help="the server's project id")
    send.add_argument("--requested-by", default=getpass.getuser(), help="who asks")
    send.add_argument("--approved-by", help="who approved")
    send.add_argument("--reason", help="free text, recorded with the operation")
    send.add_argument(
        "--param", action="append", default=[], metavar="KEY=VALUE", help="a parameter"
    )
    send.add_argument("--wait", action="store_true", help="wait for the result and print it")
    send.add_argument("--timeout", type=float, default=900.0, help="seconds --wait waits")
    send.add_argument("--json", action="store_true", help="print the result as JSON")

    status = commands.add_parser(
        "status", help="ask the running daemon how it is; the journal's operations if it is down"
    )
    status.add_argument("--json", action="store_true", help="print JSON for scripts")
    status.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for an answer")

    for verb, what in (("approve", "let it run"), ("reject", "end it, rejected")):
        decide = commands.add_parser(
            verb, help=f"answer an operation awaiting approval: {what} (a signed request)"
        )
        decide.add_argument("operation_id", metavar="OPERATION_ID", help="see `pending`")
        decide.add_argument("--reason", help="why; recorded with the operation")
        decide.add_argument("--by", default=getpass.getuser(), help="who decides (approved_by)")
        decide.add_argument("--id", help="request id (default: a new one)")
        decide.add_argument("--wait", action="store_true", help="wait for the answer, print it")
        decide.add_argument("--timeout", type=float, default=60.0, help="seconds --wait waits")
        decide.add_argument("--json", action="store_true", help="print the answer as JSON")

    pending = commands.add_parser(
        "pending", help="list the operations awaiting approval, from the journal"
    )
    pending.add_argument("--json", action="store_true", help="print JSON for scripts")
    return parser


def _read(path: str) -> str:
    try:
        return sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _UsageError(f"cannot read {path}: {exc}") from None


def _policies_path(args: argparse.Namespace) -> str:
    if args.policies:
        return str(args.policies)
    return str(_conf(args).policies.path)


def _load(path: str) -> PolicySet:
    return load_policies(path)


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True, default=str))


def _conf(args: argparse.Namespace) -> Any:
    try:
        return settings.load(config_files=args.config_file, config_dirs=args.config_dir)
    except settings.SettingsError as exc:
        raise _UsageError(str(exc)) from None


def _run(args: argparse.Namespace) -> int:
    conf = _conf(args)
    logs.configure(level=conf.logging.level, fmt=conf.logging.format)
    from nova_autopilot.daemon import Daemon  # the daemon's imports are heavy: only here

    return Daemon.from_conf(conf).run()


_UUID = re.compile(r"^[0-9a-fA-F]{8}-?([0-9a-fA-F]{4}-?){3}[0-9a-fA-F]{12}$")
SUCCESS = ("confirmed", "reverted", "rescued", "unrescued", "dry_run")


def request_body(args: argparse.Namespace) -> dict[str, Any]:
    """The request ``send`` publishes, from its options."""
    server = {"id": args.server} if _UUID.match(args.server) else {"name": args.server}
    body: dict[str, Any] = {
        "version": 1,
        "type": args.type,
        "id": args.id or f"req-{uuid.uuid4().hex}",
        "timestamp": args.timestamp or datetime.now(timezone.utc).isoformat(),
        "server": server,
        "requested_by": args.requested_by,
    }
    optional = {
        "flavor": args.flavor,
        "project_id": args.project,
        "approved_by": args.approved_by,
        "reason": args.reason,
    }
    body.update({k: v for k, v in optional.items() if v})
    if args.param:
        params = {}
        for item in args.param:
            key, sep, value = item.partition("=")
            if not sep:
                raise _UsageError(f"--param {item!r}: expected KEY=VALUE")
            params[key] = value
        body["parameters"] = params
    return body


def decision_body(args: argparse.Namespace) -> dict[str, Any]:
    """The request ``approve`` or ``reject`` publishes."""
    body: dict[str, Any] = {
        "version": 1,
        "type": f"operation.{args.command}",
        "id": args.id or f"{args.command}-{uuid.uuid4().hex}",
        "timestamp": datetime.now(timezone.utc).isoformat(),
        "operation_id": args.operation_id,
        "approved_by": args.by,
    }
    if args.reason:
        body["reason"] = args.reason
    return body


def _send(args: argparse.Namespace) -> int:
    return _publish(args, request_body(args))


def _decide(args: argparse.Namespace) -> int:
    return _publish(args, decision_body(args))


def _succeeded(result: dict[str, Any]) -> bool:
    outcome = result.get("outcome")
    if result.get("decision") == "reject":
        return outcome == "rejected"
    if result.get("decision") == "approve":
        return outcome is None or outcome in SUCCESS  # running, or already done
    return outcome in SUCCESS or outcome == "awaiting_approval"


def _publish(args: argparse.Namespace, body: dict[str, Any]) -> int:
    """Check, sign and publish one request; with ``--wait``, print its answer."""
    try:
        parse_message(body, expect="request")  # refuse here what the daemon would refuse
    except BadMessage as exc:
        raise _UsageError(f"invalid request: {exc.detail}") from None
    conf = _conf(args)
    headers = {}
    key_id = conf.requests.signing_key_id
    if key_id:
        keys = signing.load_keys(conf.requests.signing_keys_file)
        if key_id not in keys:
            raise _UsageError(f"no key {key_id!r} in {conf.requests.signing_keys_file}")
        headers = signing.sign(body, key_id, keys[key_id])
    from nova_autopilot.bus import RequestClient

    with RequestClient.from_conf(conf) as client:
        reply_to = client.reply_queue() if args.wait else None
        correlation = client.publish_request(body, reply_to=reply_to, headers=headers)
        if not args.wait:
            print(f"sent {body['type']} {body['id']}")
            return EXIT_OK
        reply = client.wait_for_reply(correlation, timeout=args.timeout)
    result = reply.body if isinstance(reply.body, dict) else {"result": reply.body}
    if args.json:
        _print_json(result)
    else:
        outcome = result.get("outcome") or "running"
        what = result.get("action") or result.get("type")  # a refused request has no action
        print(f"{what} {outcome}: {result.get('reason') or 'ok'}")
        for key in ("operation_id", "server_id", "nova_requests"):
            print(f"  {key}: {result.get(key)}")
        for key in ("decision", "by", "approval_until"):
            if key in result:
                print(f"  {key}: {result[key]}")
        for key, value in (result.get("secrets") or {}).items():
            print(f"  {key}: {value}")
        if result.get("outcome") == "awaiting_approval":
            print(f"  answer with: nova-autopilot approve|reject {result.get('operation_id')}")
    return EXIT_OK if _succeeded(result) else EXIT_INVALID


@contextlib.contextmanager
def _journal(args: argparse.Namespace) -> Iterator[Any]:
    """The configured journal for reading, or None when its SQLite file does not
    exist yet (nothing happened, and a reader must not create it)."""
    from nova_autopilot.journal import Journal, default_url, missing_sqlite_file

    conf = _conf(args)
    url = conf.journal.connection or default_url(conf.state_dir)
    if missing_sqlite_file(url) is not None:
        yield None
        return
    with Journal.open(url, redact=logs.redact, migrate_schema=False) as journal:
        yield journal


def _pending(args: argparse.Namespace) -> int:
    from nova_autopilot import holds

    with _journal(args) as journal:
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
            "approval_until": op.state.get(holds.UNTIL),
        }
        for op in waiting
    ]
    if args.json:
        _print_json(found)
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


def _moments(args: argparse.Namespace, *options: str) -> dict[str, datetime | None]:
    """The ``--since``/``--until`` options as times (ISO 8601, or ``2h`` ago); a usage
    error for a bad one or a ``--limit`` below 1."""
    from nova_autopilot import history

    now = datetime.now(timezone.utc)
    moments = {}
    for option in options:
        text = getattr(args, option)
        try:
            moments[option] = history.parse_when(text, now=now) if text else None
        except ValueError as exc:
            raise _UsageError(f"--{option}: {exc}") from None
    if args.limit < 1:
        raise _UsageError(f"--limit must be at least 1, got {args.limit}")
    return moments


def _refusals(args: argparse.Namespace) -> int:
    moments = _moments(args, "since")
    with _journal(args) as journal:
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
        _print_json([dataclasses.asdict(r) for r in found])
        return EXIT_OK
    if not found:
        print("no refused request matches")
    for r in found:
        print(f"{_when(r.at)}  {r.reason}  {r.request_type or '-'} {r.request_id or '-'}")
        print(f"  key: {r.key_id or '-'}  queue: {r.queue}  source: {r.source}")
        print(f"  detail: {r.detail}")
    return EXIT_OK


def _history(args: argparse.Namespace) -> int:
    from nova_autopilot import history
    from nova_autopilot.journal import OUTCOMES

    moments = _moments(args, "since", "until")
    if args.outcome and args.outcome not in OUTCOMES:
        raise _UsageError(f"--outcome {args.outcome!r}: expected one of {', '.join(OUTCOMES)}")
    filters = history.Filters(
        server_id=args.server,
        policy=args.policy,
        since=moments["since"],
        until=moments["until"],
        outcome=args.outcome,
        operation_id=args.operation,
        limit=args.limit,
    )
    views = []
    with _journal(args) as journal:
        if journal is not None:
            for operation in journal.history(
                server_id=filters.server_id,
                policy=filters.policy,
                since=filters.since,
                until=filters.until,
                outcome=filters.outcome,
                id_prefix=filters.operation_id,
                limit=filters.limit,
            ):
                views.append(history.operation_view(operation, journal.steps(operation.id)))
    if args.json:
        _print_json(history.document(views, filters))
    else:
        color = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
        print(history.render(views, chains=True if args.operation else None, color=color))
    return EXIT_OK


def _status(args: argparse.Namespace) -> int:
    from nova_autopilot import status

    conf = _conf(args)
    try:
        document = status.ask(status.endpoint(conf), timeout=args.timeout)
    except status.DaemonSilent as silent:
        try:
            operations: list[dict[str, Any]] | None = status.unfinished(status.journal_url(conf))
            unreadable = None
        except (AutopilotError, ValueError) as exc:
            operations, unreadable = None, f"cannot read the journal: {exc}"
        if args.json:
            _print_json(
                {
                    "answered": False,
                    "error": str(silent),
                    "journal": {"unfinished": operations, "error": unreadable},
                }
            )
        else:
            print(status.render_journal(str(silent), operations or []))
            if unreadable:
                print(unreadable, file=sys.stderr)
        return EXIT_INVALID
    if args.json:
        _print_json(document)
    else:
        print(status.render(document))
    return EXIT_OK


def _when(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value else "-"


def _breaker(args: argparse.Namespace) -> int:
    from nova_autopilot.guards import GLOBAL, policy_scope

    scopes = None if args.breaker_command == "list" or args.all else [GLOBAL]
    if args.breaker_command == "reset" and args.policy:
        scopes = [policy_scope(args.policy)]
    found: list[Any] = []
    was_open: list[str] = []
    with _journal(args) as journal:
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
        _print_json([dataclasses.asdict(b) for b in found])
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


def _check(args: argparse.Namespace) -> int:
    path = _policies_path(args)
    policies = _load(path)
    enabled = sum(1 for p in policies.policies if p.enabled)
    print(f"{path}: {len(policies)} policies valid ({enabled} enabled)")
    return EXIT_OK


def _explain(args: argparse.Namespace) -> int:
    policies = _load(_policies_path(args))
    text = _read(args.event)
    try:
        event = parse_message(text)
    except BadMessage as exc:
        if args.json:
            _print_json({"error": {"reason": exc.reason, "detail": exc.detail}})
        else:
            print(f"{args.event}: not an event: {exc.detail}", file=sys.stderr)
        return EXIT_INVALID
    result = workbench.explain(policies, event)
    if args.json:
        _print_json(result)
    else:
        print(workbench.render_explain(result))
    return EXIT_OK


def _replay(args: argparse.Namespace) -> int:
    policies = _load(_policies_path(args))
    other = _load(args.against) if args.against else None
    lines = list(workbench.read_stream(_read(args.stream).splitlines()))
    result = workbench.decide(policies, lines)
    if other is not None:
        result = workbench.compare(result, workbench.decide(other, lines))
        render = workbench.render_comparison
    else:
        render = workbench.render_replay
    if args.json:
        _print_json(result)
    else:
        print(render(result))
    return EXIT_OK


def _sweep(args: argparse.Namespace) -> int:
    conf = _conf(args)
    policies = _load(args.policies or str(conf.policies.path))
    from nova_autopilot.cloud import Cloud  # openstacksdk is heavy: only here
    from nova_autopilot.sweeps import look

    cloud = Cloud.connect(
        cloud=conf.cloud.cloud or None,
        region_name=conf.cloud.region_name or None,
        api_timeout=float(conf.cloud.api_timeout),
    )
    try:
        looked, events = look(cloud, policies, datetime.now(timezone.utc))
    finally:
        cloud.close()
    result = workbench.sweep(policies, looked.as_dict(), events)
    if args.json:
        _print_json(result)
    else:
        print(workbench.render_sweep(result))
    return EXIT_OK


_CLOUD_ONLY = (
    "image",
    "flavor",
    "resize_flavor",
    "network",
    "fail_reboot_metadata",
    "fail_spawn_metadata",
)


def _demo(args: argparse.Namespace) -> int:
    cloud = None
    if args.cloud:
        cloud = demo.CloudOptions(args.cloud, **{name: getattr(args, name) for name in _CLOUD_ONLY})
    else:
        given = [f"--{name.replace('_', '-')}" for name in _CLOUD_ONLY if getattr(args, name)]
        if given:
            raise _UsageError(f"{', '.join(given)}: only with --cloud")
    try:
        return demo.run(broker=args.broker, cloud=cloud)
    except demo.UsageError as exc:
        raise _UsageError(f"demo: {exc}") from None


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "check": _check,
    "explain": _explain,
    "replay": _replay,
    "sweep": _sweep,
    "demo": _demo,
    "run": _run,
    "send": _send,
    "history": _history,
    "status": _status,
    "approve": _decide,
    "reject": _decide,
    "pending": _pending,
    "breaker": _breaker,
    "refusals": _refusals,
}


def main(argv: Sequence[str] | None = None) -> int:
    # oslo.messaging's dependencies announce eventlet's deprecation on import; it is not ours.
    warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
    args = _parser().parse_args(argv)
    try:
        return int(_COMMANDS[args.command](args))
    except PolicyError as exc:
        print(exc, file=sys.stderr)
        return EXIT_INVALID
    except _UsageError as exc:
        print(f"nova-autopilot: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except AutopilotError as exc:  # a start-up problem: say it plainly, no traceback
        print(f"nova-autopilot: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except KeyboardInterrupt:  # Ctrl-C: stop quietly, with the shell's code for SIGINT
        print("nova-autopilot: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
