"""The policy author's commands: ``check`` the policies, ``explain`` one event,
``replay`` a recorded stream, ``sweep --dry-run`` on the cloud now. They show what
the policies would decide and never act."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone

from nova_autopilot.cli.common import (
    EXIT_INVALID,
    EXIT_OK,
    load_conf,
    policies_path,
    print_json,
    read_input,
)
from nova_autopilot.errors import BadMessage
from nova_autopilot.events import parse_message
from nova_autopilot.policies import load_policies, workbench


def check(args: argparse.Namespace) -> int:
    path = policies_path(args)
    policies = load_policies(path)
    enabled = sum(1 for p in policies.policies if p.enabled)
    print(f"{path}: {len(policies)} policies valid ({enabled} enabled)")
    return EXIT_OK


def explain(args: argparse.Namespace) -> int:
    policies = load_policies(policies_path(args))
    text = read_input(args.event)
    try:
        event = parse_message(text)
    except BadMessage as exc:
        if args.json:
            print_json({"error": {"reason": exc.reason, "detail": exc.detail}})
        else:
            print(f"{args.event}: not an event: {exc.detail}", file=sys.stderr)
        return EXIT_INVALID
    result = workbench.explain(policies, event)
    if args.json:
        print_json(result)
    else:
        print(workbench.render_explain(result))
    return EXIT_OK


def replay(args: argparse.Namespace) -> int:
    policies = load_policies(policies_path(args))
    other = load_policies(args.against) if args.against else None
    lines = list(workbench.read_stream(read_input(args.stream).splitlines()))
    result = workbench.decide(policies, lines)
    if other is not None:
        result = workbench.compare(result, workbench.decide(other, lines))
        render = workbench.render_comparison
    else:
        render = workbench.render_replay
    if args.json:
        print_json(result)
    else:
        print(render(result))
    return EXIT_OK


def sweep(args: argparse.Namespace) -> int:
    conf = load_conf(args)
    policies = load_policies(args.policies or str(conf.policies.path))
    from nova_autopilot.cloud import Cloud  # openstacksdk is heavy: only here
    from nova_autopilot.engine.sweeps import look

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
        print_json(result)
    else:
        print(workbench.render_sweep(result))
    return EXIT_OK
