"""The command line's grammar: every command, its options and their help."""

from __future__ import annotations

import argparse
import getpass

from nova_autopilot import __version__
from nova_autopilot.cli.common import OS_CLOUD, TRANSPORT_URL
from nova_autopilot.cli.journal_views import BREAKERS, HISTORY, PENDING, REFUSALS
from nova_autopilot.cli.output import add_options as output_options
from nova_autopilot.cli.running import STATUS

_EXITS = (
    "Exit status: 0 done (or sent, without --wait), 1 refused or failed, 2 wrong usage "
    "or configuration, 3 the broker cannot be reached, 4 no answer within --timeout."
)


def _answer_options(sub: argparse.ArgumentParser, *, timeout: float) -> None:
    """``--unsigned``, ``--wait``, ``--timeout``, ``--json`` of the commands that publish."""
    sub.add_argument(
        "--unsigned",
        action="store_true",
        help="send it without a signature when no [requests] signing_key_id is set "
        "(a daemon that verifies signatures dead-letters it without an answer)",
    )
    sub.add_argument("--wait", action="store_true", help="wait for the answer and print it")
    sub.add_argument(
        "--timeout",
        type=float,
        default=timeout,
        metavar="SECONDS",
        help="how long --wait waits (default: %(default)g); no answer by then: exit "
        "status 4, see `refusals`",
    )
    sub.add_argument("--json", action="store_true", help="print the answer as JSON")


def _cloud_option(sub: argparse.ArgumentParser) -> None:
    """``--os-cloud``, the openstack CLI's, on the commands that talk to Nova."""
    sub.add_argument(
        "--os-cloud",
        metavar="NAME",
        help=f"the clouds.yaml entry to reach Nova with, instead of [cloud] cloud "
        f"(default: ${OS_CLOUD} when set)",
    )


def _broker_option(sub: argparse.ArgumentParser) -> None:
    """``--transport-url`` on the commands that talk to the broker."""
    sub.add_argument(
        "--transport-url",
        metavar="URL",
        help="the broker (rabbit://user:password@host:5672/vhost), instead of every broker "
        "URL of the configuration ([DEFAULT] and [oslo_messaging_notifications] "
        f"transport_url, [requests] broker_url) (default: ${TRANSPORT_URL} when set, "
        "which keeps a password out of the process list)",
    )


def build() -> argparse.ArgumentParser:
    """The whole tree: the global options, every command and its options."""
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

    check = commands.add_parser(
        "check", help="validate the configuration and the policies; print every mistake"
    )
    policies_option(check)
    check.add_argument(
        "--start",
        action="store_true",
        help="also check what `run` refuses at start: the signing keys file, the "
        "authorisation table and the clouds.yaml entry",
    )
    _cloud_option(check)

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
    _cloud_option(sweep)

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

    run = commands.add_parser("run", help="run the daemon (as the systemd service does)")
    _cloud_option(run)
    _broker_option(run)

    history = commands.add_parser(
        "history", help="what the daemon did and why: operations from the journal, step by step"
    )
    history.add_argument(
        "--server",
        metavar="SERVER",
        help="only operations on this server: its id, the start of its id, or its name",
    )
    history.add_argument("--policy", metavar="NAME", help="only operations of this policy")
    history.add_argument(
        "--since", metavar="WHEN", help="created at or after: ISO 8601, or an age (30m, 2h, 7d)"
    )
    history.add_argument("--until", metavar="WHEN", help="created before (same forms as --since)")
    history.add_argument("--outcome", metavar="X", help="only this outcome (confirmed, refused...)")
    history.add_argument(
        "--operation",
        metavar="ID",
        help="one operation (its id, or the start of it: one that fits several is refused), whole",
    )
    history.add_argument("--limit", type=int, default=20, metavar="N", help="at most N (20)")
    output_options(history, HISTORY)

    breaker = commands.add_parser(
        "breaker", help="show or reset the circuit breakers (docs/guards.md)"
    )
    breaker_commands = breaker.add_subparsers(dest="breaker_command", required=True)
    listing = breaker_commands.add_parser("list", help="every breaker that ever opened")
    output_options(listing, BREAKERS)
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
    refusals.add_argument(
        "--request", metavar="ID", help="only this request id (or the start of it)"
    )
    refusals.add_argument("--limit", type=int, default=20, metavar="N", help="at most N (20)")
    output_options(refusals, REFUSALS)

    send = commands.add_parser(
        "send",
        help="publish an operator request (docs/requests.md)",
        description="Check an operator request as the daemon would, sign it with [requests] "
        "signing_key_id and publish it; with --wait, print the daemon's answer. " + _EXITS,
    )
    send.add_argument("--type", required=True, help="request type, e.g. quota.request.approved")
    send.add_argument("--server", required=True, help="server id or name")
    send.add_argument("--flavor", help="the wanted flavor")
    send.add_argument("--id", help="request id (default: a new one); the de-duplication key")
    send.add_argument(
        "--timestamp",
        help="the request's creation time, ISO-8601 (default: now). A request is carried "
        "out once: sent again unchanged (same --id, --timestamp and fields) it is refused "
        "as replayed, and the answer says what the first copy led to",
    )
    send.add_argument("--project", help="the server's project id")
    send.add_argument("--requested-by", default=getpass.getuser(), help="who asks")
    send.add_argument("--approved-by", help="who approved")
    send.add_argument("--reason", help="free text, recorded with the operation")
    send.add_argument(
        "--param", action="append", default=[], metavar="KEY=VALUE", help="a parameter"
    )
    _answer_options(send, timeout=900.0)
    _broker_option(send)

    status = commands.add_parser(
        "status", help="ask the running daemon how it is; the journal's operations if it is down"
    )
    status.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for an answer")
    output_options(status, STATUS)

    for verb, what in (("approve", "let it run"), ("reject", "end it, rejected")):
        decide = commands.add_parser(
            verb,
            help=f"answer an operation awaiting approval: {what} (a signed request)",
            description=f"Answer an operation awaiting approval: {what}. Published as a "
            "request signed as `send` signs it. " + _EXITS,
        )
        decide.add_argument(
            "operation_id",
            metavar="OPERATION_ID",
            help="see `pending`; the start of it is enough when the configured journal "
            "knows one operation starting so",
        )
        decide.add_argument("--reason", help="why; recorded with the operation")
        decide.add_argument("--by", default=getpass.getuser(), help="who decides (approved_by)")
        decide.add_argument("--id", help="request id (default: a new one)")
        _answer_options(decide, timeout=60.0)
        _broker_option(decide)

    pending = commands.add_parser(
        "pending", help="list the operations awaiting approval, from the journal"
    )
    output_options(pending, PENDING)
    return parser
