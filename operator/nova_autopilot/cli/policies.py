"""The policy author's commands: ``check`` the policies, ``explain`` one event,
``replay`` a recorded stream, ``sweep --dry-run`` on the cloud now. They show what
the policies would decide and never act."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from typing import Any

from nova_autopilot.cli.common import (
    EXIT_INVALID,
    EXIT_OK,
    OS_CLOUD,
    UsageError,
    given,
    load_conf,
    override,
    policies_path,
    print_json,
    read_input,
)
from nova_autopilot.errors import BadMessage, PolicyError, SettingsError
from nova_autopilot.events import parse_message
from nova_autopilot.policies import load_policies, workbench


def check(args: argparse.Namespace) -> int:
    """The configuration (misspelt sections and options, bad values), with
    ``--start`` what ``run`` reads at start, and the policies (with their event
    types): every problem on a line of its own on stderr, exit status 1."""
    problems: list[str] = []
    conf = _checked_conf(args, problems)
    if args.start:
        problems += _start_problems(conf, given(args, "os_cloud", OS_CLOUD))
    path = str(args.policies or conf.policies.path)
    try:
        policies = load_policies(path, strict=True)
    except PolicyError as exc:
        problems.append(str(exc))
        policies = None
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return EXIT_INVALID
    assert policies is not None
    enabled = sum(1 for p in policies.policies if p.enabled)
    print(f"{path}: {len(policies)} policies valid ({enabled} enabled)")
    return EXIT_OK


def _checked_conf(args: argparse.Namespace, problems: list[str]) -> Any:
    """The configuration ``run`` would read; its problems go into ``problems``. An
    unreadable file is wrong usage (exit status 2), as for every command."""
    from nova_autopilot.settings.loading import check as check_settings

    try:
        conf, found = check_settings(config_files=args.config_file, config_dirs=args.config_dir)
    except SettingsError as exc:
        raise UsageError(str(exc)) from None
    problems += [str(problem) for problem in found]
    try:
        override(conf, args)
    except UsageError as exc:  # a broker URL run could not use: one more mistake
        problems.append(str(exc))
    return conf


def _start_problems(conf: Any, cloud_given: tuple[str, str] | None) -> list[str]:
    """What ``Daemon.from_conf`` refuses, read with the same loaders; the cloud's
    problem is said of ``--os-cloud`` or ``$OS_CLOUD`` when one named it."""
    from nova_autopilot.security.authorization import AuthorizationError, load_grants
    from nova_autopilot.security.signing import KeyFileError, load_keys

    problems = []
    requests = conf.requests
    if requests.require_signatures:
        try:
            load_keys(requests.signing_keys_file)
        except KeyFileError as exc:
            problems.append(f"[requests] signing_keys_file: {exc}")
    elif requests.authorization_file:
        problems.append(
            "[requests] authorization_file needs require_signatures: without a "
            "signature no request has a key to authorise"
        )
    if requests.authorization_file:
        try:
            load_grants(requests.authorization_file)
        except AuthorizationError as exc:
            problems.append(f"[requests] authorization_file: {exc}")
    from nova_autopilot.cloud.client import config_problem  # openstacksdk is heavy: only here

    cloud = config_problem(conf.cloud.cloud or None, conf.cloud.region_name or None)
    if cloud is not None:
        problems.append(f"{'[cloud] cloud' if cloud_given is None else cloud_given[1]}: {cloud}")
    return problems


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
