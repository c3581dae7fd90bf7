"""nova-autopilot run, the real daemon process, on the real RabbitMQ against the
sandbox Nova: requests sent with `nova-autopilot send` are carried out once
and answered; Nova's notifications trigger a rescue; SIGTERM stops it cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import openstack
import pytest

from nova_autopilot.bus import RequestClient
from nova_autopilot.sandbox import Sandbox
from tests.integration import bus_support
from tests.integration.stack import clouds_yaml, until

rabbit = bus_support.rabbit
pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent
POLICIES = """
policies:
  - name: resize-on-approved-quota
    when: {source: request, event: quota.request.approved}
    do: {action: resize, params: {server: "{{ payload.server }}", flavor: "{{ payload.flavor }}"}}
    confirm: {timeout: 60s, gate: [{console: {contains: "login:"}}], gate_timeout: 10s}
  - name: rescue-failed-boot
    when:
      source: nova
      event: instance.update
      match:
        - {field: payload.state_update.state, equals: error}
        - {field: payload.state_update.old_state, not_equals: error}
        - {field: payload.launched_at, exists: true}
    do: {action: rescue, params: {server: {id: "{{ instance_id }}"}}}
    confirm: {timeout: 60s}
"""


class Running:
    """The daemon process and everything it printed (JSON log lines)."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.raw.append(line)
            try:
                self.lines.append(json.loads(line))
            except ValueError:
                continue

    def logged(self, event: str) -> list[dict[str, Any]]:
        return [line for line in list(self.lines) if line.get("event") == event]


@pytest.fixture
def world(
    rabbit: bus_support.Rabbit, tmp_path: Path
) -> Iterator[tuple[Sandbox, Path, dict[str, str]]]:
    sandbox = Sandbox(transport_url=rabbit.transport_url).start()
    sandbox.add_flavor("m1.small")
    sandbox.add_flavor("m1.large", vcpus=2, ram=256)
    clouds = clouds_yaml(tmp_path / "clouds.yaml", sandbox.url)
    (tmp_path / "policies.yaml").write_text(POLICIES)
    keys = tmp_path / "signing-keys.yaml"
    keys.write_text("keys:\n  test-key: " + "s3cr3t-" * 4 + "\n")
    keys.chmod(0o600)
    conf = tmp_path / "nova-autopilot.conf"
    conf.write_text(
        f"[DEFAULT]\ntransport_url = {rabbit.transport_url}\nstate_dir = {tmp_path / 'state'}\n"
        "stop_timeout = 20\n"
        f"[policies]\npath = {tmp_path / 'policies.yaml'}\n"
        "[cloud]\ncloud = sandbox\npoll_interval = 2\n"
        f"[requests]\nsigning_keys_file = {keys}\nsigning_key_id = test-key\n"
        "[logging]\nformat = json\n[metrics]\nport = 0\n"
    )
    env = {**os.environ, "OS_CLIENT_CONFIG_FILE": str(clouds)}
    try:
        yield sandbox, conf, env
    finally:
        sandbox.stop()


def start_daemon(conf: Path, env: dict[str, str]) -> Running:
    process = subprocess.Popen(
        [str(BIN / "nova-autopilot"), "--config-file", str(conf), "run"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    daemon = Running(process)
    until(lambda: daemon.logged("daemon.started") or process.poll() is not None, 60, "start")
    assert process.poll() is None, "".join(daemon.raw)
    assert daemon.logged("daemon.started")[0]["ready"] is True
    return daemon


def send(conf: Path, env: dict[str, str], *args: str) -> tuple[int, dict[str, Any]]:
    done = subprocess.run(
        [
            str(BIN / "nova-autopilot"),
            "--config-file",
            str(conf),
            "send",
            *args,
            "--wait",
            "--json",
            "--timeout",
            "60",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=90,
    )
    assert done.stdout, done.stderr
    return done.returncode, json.loads(done.stdout)


def test_the_daemon_resizes_on_request_answers_once_rescues_on_nova_events_and_stops(
    world: tuple[Sandbox, Path, dict[str, str]], rabbit: bus_support.Rabbit
) -> None:
    sandbox, conf, env = world
    rabbit_queues = rabbit.queues
    web = sandbox.add_server("web-1", "m1.small")
    db = sandbox.add_server("db-1", "m1.small")
    daemon = start_daemon(conf, env)
    request = (
        "--type", "quota.request.approved", "--server", web.id, "--flavor", "m1.large",
        "--id", "quota-1", "--approved-by", "bob",
        "--timestamp", datetime.now(timezone.utc).isoformat(),
    )  # fmt: skip
    try:
        code, result = send(conf, env, *request)
        assert (code, result["outcome"]) == (0, "confirmed")
        assert sandbox.server(web.id).flavor.name == "m1.large"

        # Sent again unchanged, a new publish: refused as replayed, saying what the first did.
        code, again = send(conf, env, *request)
        assert (code, again["outcome"], again["refused"]) == (1, "refused", "replayed")
        assert "resize: confirmed" in again["reason"]
        dead = f"{'nova-autopilot.requests'}.dead"
        until(lambda: rabbit_queues().get(dead) == 1, 30, "the copy dead-lettered")
        resizes = sum(n for k, n in sandbox.request_counts().items() if k.endswith(" resize"))
        assert resizes == 1

        # A launched server fails to boot: Nova's own notifications trigger the rescue.
        sandbox.fail(db.id, "reboot")
        conn = openstack.connect(
            auth_type="admin_token",
            auth={"endpoint": sandbox.url, "token": "admin:admin"},
            compute_endpoint_override=sandbox.url,
        )
        conn.compute.reboot_server(db.id, "HARD")
        until(lambda: daemon.logged("rescue.rescued"), 60, "the rescue")
        assert sandbox.server(db.id).vm_state == "rescued"

        # A request without a signature is dead-lettered with its reason, never run.
        from nova_autopilot import settings

        with RequestClient.from_conf(settings.load(config_files=[str(conf)])) as client:
            client.publish_request(
                {"type": "server.repair.done", "id": "forged-1", "server": {"id": db.id},
                 "timestamp": datetime.now(timezone.utc).isoformat()}
            )  # fmt: skip
        until(lambda: rabbit_queues().get(dead) == 2, 30, "the forged request dead-lettered")
        # The id of a processed request, reused for another request: refused as replayed.
        signed = subprocess.run(
            [str(BIN / "nova-autopilot"), "--config-file", str(conf), "send", "--type",
             "quota.request.approved", "--server", web.id, "--flavor", "m1.small",
             "--id", "quota-1"],
            env=env, capture_output=True, text=True, check=True, timeout=60,
        )  # fmt: skip
        assert signed.returncode == 0
        until(lambda: rabbit_queues().get(dead) == 3, 30, "the replayed request dead-lettered")
        assert daemon.logged("intake.dead_lettered")[-1]["reason"] == "replayed"
        assert sandbox.server(web.id).flavor.name == "m1.large"
        assert sandbox.server(db.id).vm_state == "rescued"
    finally:
        daemon.process.send_signal(signal.SIGTERM)
        code = daemon.process.wait(timeout=40)
    assert code == 0, "".join(daemon.raw[-30:])
    assert daemon.logged("daemon.stopped")
    secrets = [line for line in daemon.raw if "admin_password" in line and '"***"' not in line]
    assert secrets == []


def test_the_demo_runs_on_the_real_rabbitmq_when_given_a_broker(
    rabbit: bus_support.Rabbit, capsys: pytest.CaptureFixture[str]
) -> None:
    from nova_autopilot.cli import main

    assert main(["demo", "--broker", rabbit.transport_url]) == 0
    assert "demo: every flow ended as expected" in capsys.readouterr().out
