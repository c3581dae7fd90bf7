"""Held operations through the real daemon (`nova-autopilot run`) on RabbitMQ against
the sandbox Nova: a decision awaiting approval touches nothing until
`nova-autopilot approve` releases it, `reject` ends it, silence lets it expire;
two requests for one busy server run one after the other, never overlapping."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pytest

from nova_autopilot import settings
from nova_autopilot.bus import RequestClient
from nova_autopilot.sandbox import Sandbox
from nova_autopilot.security.signing import load_keys, sign
from tests.integration import bus_support
from tests.integration.daemon_support import (
    BIN,
    DaemonWorld,
    Running,
    send,
    start_daemon,
    stop_daemon,
)
from tests.waiting import until

pytestmark = pytest.mark.integration

APPROVE = """
policies:
  - name: resize-approved
    mode: approve
    when: {source: request, event: quota.request.approved}
    do: {action: resize, params: {server: "{{ payload.server }}", flavor: "{{ payload.flavor }}"}}
    confirm: {timeout: 60s}
"""
WAIT = """
policies:
  - name: resize-in-turn
    when: {source: request, event: quota.request.approved}
    do: {action: resize, params: {server: "{{ payload.server }}", flavor: "{{ payload.flavor }}"}}
    confirm: {timeout: 60s}
    # Two approved requests in a row are both wanted: no cooldown between them.
    limits: {when_busy: wait, max_wait: 5m, cooldown: 0}
"""


def command(conf: Path, env: dict[str, str], *args: str) -> tuple[int, str]:
    done = subprocess.run(
        [str(BIN / "nova-autopilot"), "--config-file", str(conf), *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=90,
    )
    return done.returncode, done.stdout + done.stderr


def writes_on(sandbox: Sandbox, server_id: str) -> list[str]:
    """The instance actions Nova recorded for a server, after its creation."""
    return [a.action for a in sandbox.server(server_id).actions if a.action != "create"]


def outcome_of(daemon: Running, op_id: str) -> str | None:
    for line in list(daemon.lines):
        if line.get("operation_id") == op_id and line.get("event") == "operation.finished":
            return str(line.get("outcome"))
    return None


def approval_timeout(conf: Path, seconds: int) -> None:
    with conf.open("a") as extra:
        extra.write(f"[guards]\napproval_timeout = {seconds}\n")


def test_decisions_await_approval_and_run_only_once_approved(
    daemon_world: DaemonWorld, rabbit: bus_support.Rabbit
) -> None:
    sandbox, conf, env = daemon_world
    (conf.parent / "policies.yaml").write_text(APPROVE)
    # Long enough for the commands below on a loaded machine; expiry has its own test.
    approval_timeout(conf, 300)
    web, db = (sandbox.add_server(name, "m1.small") for name in ("web-1", "db-1"))
    daemon = start_daemon(conf, env)
    try:
        # A decision for web-1 awaits approval: announced with its plan, Nova untouched.
        code, awaiting = send(
            conf, env, "--type", "quota.request.approved", "--server", web.id,
            "--flavor", "m1.large",
        )  # fmt: skip
        assert (code, awaiting["outcome"]) == (0, "awaiting_approval")
        assert awaiting["plan"]["params"]["flavor"] == "m1.large"
        op_id = awaiting["operation_id"]
        code, listed = command(conf, env, "pending", "--json")
        assert code == 0
        assert [p["operation_id"] for p in json.loads(listed)] == [op_id]
        assert writes_on(sandbox, web.id) == []

        # `approve` releases it: the resize runs and is confirmed.
        code, answer = command(conf, env, "approve", op_id, "--reason", "OPS-7", "--wait", "--json")
        assert code == 0, answer
        assert json.loads(answer)["decision"] == "approve"
        until(lambda: outcome_of(daemon, op_id), 60, "the approved resize to end")
        assert outcome_of(daemon, op_id) == "confirmed"
        assert sandbox.server(web.id).flavor.name == "m1.large"
        assert writes_on(sandbox, web.id) == ["resize", "confirmResize"]

        # `reject` ends another one without a Nova write.
        code, rejected = send(
            conf, env, "--type", "quota.request.approved", "--server", db.id, "--flavor", "m1.large"
        )  # fmt: skip
        code, answer = command(conf, env, "reject", rejected["operation_id"], "--wait", "--json")
        assert (code, json.loads(answer)["outcome"]) == (0, "rejected"), answer
        # An answer to an operation that has ended is dead-lettered with its reason.
        code, late = command(conf, env, "approve", rejected["operation_id"])
        assert code == 0, late
        dead = "nova-autopilot.requests.dead"
        until(lambda: rabbit.queues().get(dead) == 1, 30, "the late approval dead-lettered")
        assert writes_on(sandbox, db.id) == []
        code, listed = command(conf, env, "pending", "--json")
        assert json.loads(listed) == []
    finally:
        stop_daemon(daemon)


def test_a_decision_nobody_answers_expires_without_touching_nova(daemon_world: DaemonWorld) -> None:
    sandbox, conf, env = daemon_world
    (conf.parent / "policies.yaml").write_text(APPROVE)
    approval_timeout(conf, 3)
    app = sandbox.add_server("app-1", "m1.small")
    daemon = start_daemon(conf, env)
    try:
        code, ignored = send(
            conf, env, "--type", "quota.request.approved", "--server", app.id,
            "--flavor", "m1.large",
        )  # fmt: skip
        assert (code, ignored["outcome"]) == (0, "awaiting_approval")
        until(lambda: outcome_of_expired(daemon, ignored["operation_id"]), 60, "the expiry")
        assert writes_on(sandbox, app.id) == []
        code, listed = command(conf, env, "pending", "--json")
        assert json.loads(listed) == []
    finally:
        stop_daemon(daemon)


def outcome_of_expired(daemon: Running, op_id: str) -> bool:
    return any(line.get("operation_id") == op_id for line in daemon.logged("resize.expired"))


def test_two_requests_for_one_server_run_in_turn_never_overlapping(
    daemon_world: DaemonWorld,
) -> None:
    sandbox, conf, env = daemon_world
    (conf.parent / "policies.yaml").write_text(WAIT)
    sandbox.add_flavor("m1.xlarge", vcpus=4, ram=512)
    web = sandbox.add_server("web-1", "m1.small")
    daemon = start_daemon(conf, env)
    try:
        keys = load_keys(conf.parent / "signing-keys.yaml")
        with RequestClient.from_conf(settings.load(config_files=[str(conf)])) as client:
            for flavor, request_id in (("m1.large", "turn-1"), ("m1.xlarge", "turn-2")):
                body = {
                    "type": "quota.request.approved",
                    "id": request_id,
                    "timestamp": datetime.now(timezone.utc).isoformat(),
                    "server": {"id": web.id},
                    "flavor": flavor,
                }
                client.publish_request(body, headers=sign(body, "test-key", keys["test-key"]))
        until(lambda: len(daemon.logged("resize.confirmed")) == 2, 90, "both resizes")
    finally:
        stop_daemon(daemon)
    assert [line["event"] for line in daemon.lines if line.get("event") == "operation.queued"]
    assert sandbox.server(web.id).flavor.name == "m1.xlarge"
    actions = [a for a in sandbox.server(web.id).actions if a.action != "create"]
    assert [a.action for a in actions] == ["resize", "confirmResize", "resize", "confirmResize"]
    first_done = max(e.finish_time for e in actions[1].events if e.finish_time is not None)
    assert actions[2].start_time >= first_done  # the second began after the first was over


def test_a_restarted_daemon_keeps_a_decision_awaiting_approval(daemon_world: DaemonWorld) -> None:
    sandbox, conf, env = daemon_world
    (conf.parent / "policies.yaml").write_text(APPROVE)
    web = sandbox.add_server("web-1", "m1.small")
    daemon = start_daemon(conf, env)
    try:
        code, awaiting = send(
            conf, env, "--type", "quota.request.approved", "--server", web.id,
            "--flavor", "m1.large",
        )  # fmt: skip
        assert (code, awaiting["outcome"]) == (0, "awaiting_approval")
    finally:
        stop_daemon(daemon)
    op_id = awaiting["operation_id"]
    daemon = start_daemon(conf, env)
    try:
        assert daemon.logged("operations.resumed")[0]["held"] == 1
        code, listed = command(conf, env, "pending", "--json")
        assert [p["operation_id"] for p in json.loads(listed)] == [op_id]
        assert writes_on(sandbox, web.id) == []
        code, answer = command(conf, env, "approve", op_id, "--wait", "--json")
        assert code == 0, answer
        until(lambda: outcome_of(daemon, op_id), 60, "the approved resize to end")
        assert outcome_of(daemon, op_id) == "confirmed"
        assert writes_on(sandbox, web.id) == ["resize", "confirmResize"]
    finally:
        stop_daemon(daemon)
