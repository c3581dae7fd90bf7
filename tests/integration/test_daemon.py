"""nova-autopilot run, the real daemon process, on the real RabbitMQ against the
sandbox Nova: requests sent with `nova-autopilot send` are carried out once
and answered; Nova's notifications trigger a rescue; SIGTERM stops it cleanly."""

from __future__ import annotations

import signal
import subprocess
from datetime import datetime, timezone

import openstack
import pytest

from nova_autopilot.bus import RequestClient
from tests.integration import bus_support
from tests.integration.daemon_support import BIN, DaemonWorld, send, start_daemon
from tests.waiting import until

pytestmark = pytest.mark.integration


def test_the_daemon_resizes_on_request_answers_once_rescues_on_nova_events_and_stops(
    daemon_world: DaemonWorld, rabbit: bus_support.Rabbit
) -> None:
    sandbox, conf, env = daemon_world
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
