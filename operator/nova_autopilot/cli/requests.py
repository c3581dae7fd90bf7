"""The commands that ask the daemon over the bus: ``send`` an operator request,
``approve`` or ``reject`` an operation awaiting approval. Each request is checked
as the daemon would check it, signed with the configured key (unsigned only with
``--unsigned``), published, and with ``--wait`` its answer printed (docs/requests.md).
``approve`` and ``reject`` take the start of an operation id, as ``history
--operation`` does, resolved in the configured journal when there is one."""

from __future__ import annotations

import argparse
import re
import sys
import time
import uuid
from datetime import datetime, timezone
from typing import Any

from nova_autopilot.cli.common import (
    EXIT_INVALID,
    EXIT_OK,
    NoAnswer,
    UsageError,
    load_conf,
    print_json,
)
from nova_autopilot.errors import BadMessage

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
                raise UsageError(f"--param {item!r}: expected KEY=VALUE")
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


def send(args: argparse.Namespace) -> int:
    return _publish(args, request_body(args))


def decide(args: argparse.Namespace) -> int:
    args.operation_id = _whole_operation_id(args)
    return _publish(args, decision_body(args))


def _whole_operation_id(args: argparse.Namespace) -> str:
    """The operation ``args.operation_id`` starts, found in the configured journal;
    as given when there is no journal here to look in (the daemon's is elsewhere)."""
    from nova_autopilot.cli.journal_views import open_journal, whole_operation_id

    given = str(args.operation_id)
    with open_journal(args, quiet=True) as journal:
        if journal is None:
            return given
        return whole_operation_id(journal, given, required=True) or given


def _succeeded(result: dict[str, Any]) -> bool:
    outcome = result.get("outcome")
    if result.get("decision") == "reject":
        return outcome == "rejected"
    if result.get("decision") == "approve":
        return outcome is None or outcome in SUCCESS  # running, or already done
    return outcome in SUCCESS or outcome == "awaiting_approval"


def _publish(args: argparse.Namespace, body: dict[str, Any]) -> int:
    """Check, sign and publish one request; with ``--wait``, print its answer."""
    from nova_autopilot.events import parse_message
    from nova_autopilot.security import signing

    try:
        parse_message(body, expect="request")  # refuse here what the daemon would refuse
    except BadMessage as exc:
        raise UsageError(f"invalid request: {exc.detail}") from None
    conf = load_conf(args, required=True)
    headers = {}
    key_id = conf.requests.signing_key_id
    if key_id:
        keys = signing.load_keys(conf.requests.signing_keys_file)
        if key_id not in keys:
            raise UsageError(f"no key {key_id!r} in {conf.requests.signing_keys_file}")
        headers = signing.sign(body, key_id, keys[key_id])
    elif not args.unsigned:
        raise UsageError(
            "no signing key: set [requests] signing_key_id (and signing_keys_file); the "
            "daemon dead-letters an unsigned request without an answer. --unsigned sends "
            "it anyway (for a daemon that does not verify signatures); nothing was sent"
        )
    if args.wait and args.timeout <= 0:
        raise UsageError(f"--timeout must be more than 0, got {args.timeout:g}")
    from nova_autopilot.bus import RequestClient

    with RequestClient.from_conf(conf) as client:
        reply_to = client.reply_queue() if args.wait else None
        correlation = client.publish_request(body, reply_to=reply_to, headers=headers)
        if not args.wait:
            print(f"sent {body['type']} {body['id']}")
            return EXIT_OK
        sent_at = time.monotonic()

        def progress(update: Any) -> None:
            """One line per phase the operation enters, with the time since sending."""
            body = update.body if isinstance(update.body, dict) else {}
            elapsed = time.monotonic() - sent_at
            print(
                f"  +{elapsed:.1f}s  {body.get('action', '?')} {body.get('operation_id', '')}: "
                f"{body.get('phase', '?')}",
                file=sys.stderr,
                flush=True,
            )

        try:
            reply = client.wait_for_reply(correlation, timeout=args.timeout, on_progress=progress)
        except TimeoutError:
            raise NoAnswer(
                f"no answer to {body['type']} {body['id']} within {args.timeout:g} s: the "
                "daemon may be down or busy (nova-autopilot status), or it refused the request "
                "before checking who sent it (unsigned, expired, unknown key or bad signature: "
                "dead-lettered without an answer, by design); see nova-autopilot refusals "
                f"--request {body['id']}"
            ) from None
    result = reply.body if isinstance(reply.body, dict) else {"result": reply.body}
    if args.json:
        print_json(result)
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
