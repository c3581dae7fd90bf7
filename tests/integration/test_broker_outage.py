"""Two minutes without the broker, under systemd's watchdog (a row of "Faults
survived, measured"): `nova-autopilot run` with its default settings, as systemd runs
it under the shipped unit, its RabbitMQ node (tests/integration/private_rabbit.py, a
node of the module's own: the machine's shared broker is never stopped) stopped for
two minutes. A broker outage makes the daemon not ready, never wedged: a restart
would not bring the broker back (docs/service.md, docs/reliability.md)."""

from __future__ import annotations

import itertools
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from nova_autopilot.sandbox import Sandbox
from tests.integration import private_rabbit as private_rabbit_module
from tests.integration import systemd_support
from tests.integration.conftest import daemon_world_on
from tests.integration.daemon_support import send, start_daemon, stop_daemon
from tests.integration.private_rabbit import PrivateRabbit
from tests.integration.systemd_support import Manager
from tests.waiting import until

#: Seconds without the broker.
OUTAGE_S = 120

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow(OUTAGE_S + 15),
    # A node of the module's own, apart from test_broker_restart.py's: the two
    # modules run side by side.
    pytest.mark.xdist_group("private-rabbit-outage"),
]
private_rabbit = private_rabbit_module.private_rabbit
manager = systemd_support.manager

#: The shipped unit's WatchdogSec (systemd/nova-autopilot.service): systemd restarts
#: a daemon that sends no WATCHDOG=1 for that long.
WATCHDOG_SEC = 30


def test_a_two_minute_broker_outage_does_not_get_the_daemon_restarted_by_its_watchdog(
    private_rabbit: PrivateRabbit, tmp_path: Path, manager: Manager
) -> None:
    """`nova-autopilot run` with its default settings, as systemd runs it under the
    shipped unit (WATCHDOG_USEC of WatchdogSec=30s), its RabbitMQ node stopped
    (``stop_app``) for two minutes: it keeps pinging the watchdog all along, is not
    ready meanwhile and says why, never says it is wedged, attaches again by itself
    once the node is back, and decides the next request."""
    node = private_rabbit
    sandbox = Sandbox(transport_url=node.transport_url).start()
    with daemon_world_on(node, tmp_path, sandbox) as (sandbox, conf, env):
        server = sandbox.add_server("web-1", "m1.small")
        env = {
            **env,
            "NOTIFY_SOCKET": manager.path,
            "WATCHDOG_USEC": str(WATCHDOG_SEC * 1_000_000),
        }
        daemon = start_daemon(conf, env)
        try:
            until(lambda: manager.seen("READY"), 30, "READY=1")
            node.stop_app()
            down_wall = datetime.now(timezone.utc).isoformat()
            down_at, down_s = len(manager.messages), time.monotonic()
            time.sleep(OUTAGE_S)
            up_s = time.monotonic()
            during = list(manager.messages[down_at:])
            pinged = [
                t
                for t, m in zip(manager.arrived[down_at:], during, strict=False)
                if "WATCHDOG" in m
            ]
            node.start_app()
            back_at = time.monotonic()
            until(lambda: len(daemon.logged("bus.reconnected")) >= 2, 90, "both consumers back")
            attached_after = time.monotonic() - back_at
            env = {k: v for k, v in env.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
            code, result = send(
                conf, env, "--type", "quota.request.approved", "--server", server.id,
                "--flavor", "m1.large", "--id", "after-the-outage",
            )  # fmt: skip
            assert daemon.process.poll() is None
        finally:
            stop_daemon(daemon)
    # Every WatchdogSec/2 a ping (15 s): eight in two minutes, never WatchdogSec
    # without one (systemd would have restarted the daemon).
    gaps = [b - a for a, b in itertools.pairwise([down_s, *pinged, up_s])]
    assert len(pinged) >= OUTAGE_S // (WATCHDOG_SEC // 2) - 1, during
    assert max(gaps) < WATCHDOG_SEC, gaps
    wedges = [(line["timestamp"], line.get("problems")) for line in daemon.logged("service.wedged")]
    assert not wedges, (down_wall, wedges)
    statuses = [m["STATUS"] for m in during if "STATUS" in m]
    assert any("consumer not attached for" in s for s in statuses), statuses
    assert (code, result["outcome"]) == (0, "confirmed"), result
    print(
        f"\ntwo minutes without the broker: {len(pinged)} watchdog pings, at most "
        f"{max(gaps):.1f} s apart, no wedge; both "
        f"consumers attached {attached_after:.1f} s after the node was back"
    )
