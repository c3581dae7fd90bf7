"""The real daemon sweeps: a launched server went to ERROR while nobody listened
(no notification will come), the daemon's first sweep has it rescued through the
guards and the journal, `history` shows the sweep as its source, and the next
sweep decides nothing more."""

from __future__ import annotations

import json
import signal
import subprocess

import pytest

from tests.integration.daemon_support import BIN, DaemonWorld, start_daemon
from tests.waiting import until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

POLICIES = """
policies:
  - name: rescue-what-the-events-missed
    when:
      source: sweep
      event: sweep.server.error
      match: {field: payload.launched_at, exists: true}
    do: {action: rescue, params: {server: {id: "{{ instance_id }}"}}}
    confirm: {timeout: 60s}
    limits: {budget: {max: 3, per: 1h}}
"""


def test_the_daemons_sweep_rescues_a_server_whose_notifications_were_lost(
    daemon_world: DaemonWorld,
) -> None:
    sandbox, conf, env = daemon_world
    (conf.parent / "policies.yaml").write_text(POLICIES)
    with conf.open("a") as extra:
        extra.write("[sweeps]\ninterval = 10\n")
    broken = sandbox.add_server("db-1", "m1.small", state="ERROR")  # sends no notification
    daemon = start_daemon(conf, env)
    try:
        until(lambda: daemon.logged("rescue.rescued"), 60, "the rescue")
        assert sandbox.server(broken.id).vm_state == "rescued"
        first = daemon.logged("sweep.done")[0]
        assert (first["statuses"], first["events"], first["operations"]) == (["ERROR"], 1, 1)
        assert first["nova_requests"] == 1
        until(lambda: len(daemon.logged("sweep.done")) >= 2, 60, "the next sweep")
        second = daemon.logged("sweep.done")[1]
        assert (second["events"], second["operations"]) == (0, 0)

        shown = subprocess.run(
            [str(BIN / "nova-autopilot"), "--config-file", str(conf), "history", "--json",
             "--server", broken.id],
            env=env, capture_output=True, text=True, check=True, timeout=60,
        )  # fmt: skip
        (operation,) = json.loads(shown.stdout)["operations"]
        assert operation["event"]["source"] == "sweep"
        assert operation["event"]["type"] == "sweep.server.error"
        assert operation["outcome"] == "rescued"
    finally:
        daemon.process.send_signal(signal.SIGTERM)
        code = daemon.process.wait(timeout=40)
    assert code == 0, "".join(daemon.raw[-30:])
