"""`send --wait` through a long operation, on the real RabbitMQ and the real daemon
process: one progress line per phase as the operation enters it, then the result.

The daemon and the command line run with a heartbeat of 2 s (RabbitMQ drops a
connection that misses two), and the sandbox Nova is slowed down 60 times, so the
resize lasts longer than six heartbeat time-outs: the same as a six-minute operation
with the default 60 s heartbeat (which is what `send --wait` once did not survive),
in a fraction of its time.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest

from nova_autopilot.sandbox import Durations, Sandbox
from tests.integration import bus_support
from tests.integration.conftest import daemon_world_on
from tests.integration.daemon_support import BIN, start_daemon, stop_daemon

pytestmark = [pytest.mark.integration, pytest.mark.slow]
rabbit = bus_support.rabbit
HEARTBEAT_S = 2
SLOWER = 60
LINE = re.compile(r"^  \+(?P<elapsed>\d+\.\d)s  resize (?P<op>[0-9a-f]{32}): (?P<phase>\w+)$")


def test_send_wait_shows_each_phase_and_the_result_of_an_operation_outlasting_heartbeats(
    rabbit: bus_support.Rabbit, tmp_path: Path
) -> None:
    sandbox = Sandbox(
        transport_url=rabbit.transport_url, durations=Durations().scaled(SLOWER)
    ).start()
    heartbeat = (
        f"[oslo_messaging_rabbit]\nheartbeat_timeout_threshold = {HEARTBEAT_S}\n"
        "heartbeat_rate = 2\n"
    )
    with daemon_world_on(rabbit, tmp_path, sandbox, heartbeat) as (sandbox, conf, env):
        server = sandbox.add_server("web-1", "m1.small")
        daemon = start_daemon(conf, env)
        try:
            started = time.monotonic()
            done = subprocess.run(
                [
                    str(BIN / "nova-autopilot"),
                    "--config-file",
                    str(conf),
                    "send",
                    "--type",
                    "quota.request.approved",
                    "--server",
                    server.id,
                    "--flavor",
                    "m1.large",
                    "--wait",
                    "--timeout",
                    "120",
                ],
                env=env,
                capture_output=True,
                text=True,
                check=False,
                timeout=180,
            )
            took = time.monotonic() - started
        finally:
            stop_daemon(daemon)

    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("resize confirmed: ok"), done.stdout
    assert "Traceback" not in done.stdout + done.stderr
    progress = [LINE.match(line) for line in done.stderr.splitlines()]
    assert all(progress), done.stderr
    phases = [m["phase"] for m in progress if m]
    assert phases == ["request", "wait_verify", "gate", "confirm", "verify"]
    assert len({m["op"] for m in progress if m}) == 1
    elapsed = [float(m["elapsed"]) for m in progress if m]
    assert elapsed == sorted(elapsed)  # told as they came, with the time since sending
    assert took > 6 * HEARTBEAT_S  # the operation outlasted six heartbeat time-outs
    for trouble in ("bus.connection_lost", "bus.result_publish_failed", "bus.reconnecting"):
        assert not daemon.logged(trouble), daemon.logged(trouble)
