"""nova-autopilot run as systemd runs it: a real NOTIFY_SOCKET and WATCHDOG_USEC,
the real RabbitMQ, a journal on the real PostgreSQL.

READY=1 comes only once the consumers are attached (never while the broker
refuses them); WATCHDOG=1 pings come while the daemon works (a broker outage
included: the consumers keep reconnecting, and a restart would not end it), stop while a
handler is wedged on a journal table locked by another transaction, and come
back once the lock is gone; SIGHUP puts the policies, the signing keys and the
log level in force together, or keeps all of them when a file is broken."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from nova_autopilot import settings
from nova_autopilot.bus import RequestClient
from nova_autopilot.security import signing
from tests.databases import fresh_database, reachable
from tests.integration import bus_support, systemd_support
from tests.integration.daemon_support import POLICIES, DaemonWorld, launch, send
from tests.integration.systemd_support import Manager
from tests.waiting import until

pytestmark = [pytest.mark.integration, pytest.mark.slow]
manager = systemd_support.manager

WATCHDOG_USEC = 2_000_000  # pings every second
WEDGED_AFTER = 2
KEY_2 = "second-key-" * 3
NEW_POLICIES = POLICIES.replace(
    "name: resize-on-approved-quota", "name: resize-on-approved-quota-v2"
)


@pytest.fixture
def journal_url() -> Iterator[str]:
    with fresh_database(reachable("postgresql", what="the service test")) as url:
        yield url


def publish_signed(conf: Path, body: dict[str, Any], key_id: str, secret: str) -> None:
    with RequestClient.from_conf(settings.load(config_files=[str(conf)])) as client:
        client.publish_request(body, headers=signing.sign(body, key_id, secret))


def request(server_id: str, request_id: str) -> dict[str, Any]:
    return {"version": 1, "type": "quota.request.approved", "id": request_id,
            "timestamp": datetime.now(timezone.utc).isoformat(),
            "server": {"id": server_id}, "flavor": "m1.large", "requested_by": "test"}  # fmt: skip


def consumers(vhost: str) -> dict[str, int]:
    rows = subprocess.run(
        [bus_support.RABBITMQCTL, "-q", "list_queues", "-p", vhost, "name", "consumers"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout.split("\n")  # fmt: skip
    pairs = (row.split("\t") for row in rows if "\t" in row)
    return {name: int(count) for name, count in pairs if count.isdigit()}


def test_the_daemon_tells_systemd_the_truth_and_reloads_all_or_nothing(
    daemon_world: DaemonWorld,
    rabbit: bus_support.Rabbit,
    journal_url: str,
    manager: Manager,
) -> None:
    sandbox, conf, env = daemon_world
    root = conf.parent
    with conf.open("a") as extra:
        extra.write(
            f"[DEFAULT]\nwedged_after = {WEDGED_AFTER}\n"
            f"[journal]\nconnection = {journal_url}\n"
            "[oslo_messaging_rabbit]\nrabbit_retry_interval = 1\nrabbit_retry_backoff = 1\n"
            "rabbit_interval_max = 2\n"
        )
    env = {**env, "NOTIFY_SOCKET": manager.path, "WATCHDOG_USEC": str(WATCHDOG_USEC)}
    web = sandbox.add_server("web-1", "m1.small")
    app = sandbox.add_server("app-1", "m1.small")
    db = sandbox.add_server("db-1", "m1.small")
    api = sandbox.add_server("api-1", "m1.small")

    # Given a broker that refuses the daemon: it starts, says so, and is not READY.
    rabbit.lock_out()
    daemon = launch(conf, env)
    process = daemon.process
    env.pop("NOTIFY_SOCKET")
    env.pop("WATCHDOG_USEC")
    try:
        until(lambda: daemon.logged("bus.connect_failed"), 60, "a refused connection")
        until(lambda: any("not attached" in s for _, s in manager.statuses()), 30, "status")
        assert manager.seen("READY") == []
        assert manager.statuses()[0][1].startswith("starting")

        # When the broker lets it in: READY=1, and by then both consumers are attached.
        rabbit.let_in()
        until(lambda: manager.seen("READY"), 60, "READY=1")
        attached = consumers(rabbit.vhost)
        assert attached["nova-autopilot.requests"] == 1, attached
        assert attached["nova-autopilot"] == 1, attached  # the notification pool queue
        ready_at = manager.seen("READY")[0]
        assert manager.messages[ready_at]["STATUS"].startswith("running: 0 operations")

        # Then it pings the watchdog while it works.
        until(lambda: len(manager.seen("WATCHDOG", ready_at)) >= 2, 30, "watchdog pings")
        assert manager.seen("WATCHDOG") == manager.seen("WATCHDOG", ready_at)

        # A broker outage three times wedged_after long: the consumers keep trying to
        # get their queues back, so the watchdog still hears from the daemon (a restart
        # would not bring the broker back); the status line says why it is not ready.
        rabbit.lock_out()
        rabbit.close_all_connections()
        until(lambda: daemon.logged("bus.reconnecting"), 30, "the outage seen")
        outage_at = len(manager.messages)
        time.sleep(3 * WEDGED_AFTER)
        assert not daemon.logged("service.wedged")
        assert len(manager.seen("WATCHDOG", outage_at)) >= 2 * WEDGED_AFTER  # one a second
        assert any(
            s.startswith("running") and "consumer not attached for" in s
            for _, s in manager.statuses(outage_at)
        ), manager.statuses(outage_at)
        rabbit.let_in()
        pools = ("nova-autopilot", "nova-autopilot.requests")
        until(
            lambda: [consumers(rabbit.vhost).get(q) for q in pools] == [1, 1], 60, "attached again"
        )

        code, result = send(
            conf, env, "--type", "quota.request.approved", "--server", web.id,
            "--flavor", "m1.large", "--id", "quota-1",
        )  # fmt: skip
        assert (code, result["outcome"]) == (0, "confirmed")
        handled = re.compile(r"[1-9][0-9]* messages? handled")
        until(lambda: any(handled.search(s) for _, s in manager.statuses()), 30, "the count")

        # A journal table locked by another transaction wedges the request's handler:
        # the pings stop (systemd would restart the daemon) and resume once it is free.
        engine = sa.create_engine(journal_url)
        locker = engine.connect()
        try:
            transaction = locker.begin()
            locker.execute(sa.text("LOCK TABLE operations IN ACCESS EXCLUSIVE MODE"))
            publish_signed(conf, request(app.id, "quota-2"), "test-key", "s3cr3t-" * 4)
            until(lambda: daemon.logged("service.wedged"), 30, "the wedge noticed")
            # The status line follows the log line, at the next tick.
            until(
                lambda: any(s.startswith("WEDGED") for _, s in manager.statuses()),
                30,
                "the wedge's status line",
            )
            wedged_at = next(i for i, s in manager.statuses() if s.startswith("WEDGED"))
            assert "requests handler wedged for" in manager.messages[wedged_at]["STATUS"]
            # The status line counts the wedge's seconds: three more lines, a ping's
            # interval each at least, and not one ping among them.
            until(lambda: len(manager.statuses(wedged_at)) >= 4, 30, "the wedge lasting")
            assert manager.seen("WATCHDOG", wedged_at) == []
            transaction.rollback()
        finally:
            locker.close()
            engine.dispose()
        until(lambda: manager.seen("WATCHDOG", wedged_at), 30, "pings back")
        # Logged before that ping, but read from the daemon's output by another thread.
        until(lambda: daemon.logged("service.unwedged"), 30, "the unwedging logged")
        back = manager.seen("WATCHDOG", wedged_at)[0]
        assert manager.statuses(wedged_at)[-1][1].startswith("running")
        assert all(not s.startswith("WEDGED") for i, s in manager.statuses(back))

        # SIGHUP with a broken policy file and a new key: nothing of it is in force.
        policies = root / "policies.yaml"
        keys = root / "signing-keys.yaml"
        policies.write_text("policies:\n  - name: broken\n    when: {source: nova}\n")
        keys.write_text(f"keys:\n  test-key: {'s3cr3t-' * 4}\n  key-2: {KEY_2}\n")
        keys.chmod(0o600)
        with conf.open("a") as extra:
            extra.write("[logging]\nlevel = DEBUG\n")
        reloads = len(manager.seen("RELOADING"))
        process.send_signal(signal.SIGHUP)
        until(lambda: daemon.logged("daemon.reload_refused"), 30, "the refused reload")
        assert daemon.logged("policies.reload_refused")
        assert len(manager.seen("RELOADING")) == reloads + 1
        until(lambda: len(manager.seen("READY")) == 2, 30, "READY=1 after the reload")

        code, result = send(
            conf, env, "--type", "quota.request.approved", "--server", db.id,
            "--flavor", "m1.large", "--id", "quota-3",
        )  # fmt: skip
        assert (result["policy"], result["outcome"]) == ("resize-on-approved-quota", "confirmed")
        dead = "nova-autopilot.requests.dead"
        dead_before = rabbit.queues().get(dead, 0)
        publish_signed(conf, request(web.id, "quota-4"), "key-2", KEY_2)
        until(lambda: rabbit.queues().get(dead, 0) == dead_before + 1, 30, "key-2 refused")
        assert not [line for line in daemon.lines if line.get("level") == "debug"]

        # SIGHUP with every file good: the new policies, the new key and DEBUG together.
        policies.write_text(NEW_POLICIES)
        process.send_signal(signal.SIGHUP)
        until(lambda: daemon.logged("daemon.reloaded"), 30, "the reload")
        assert daemon.logged("daemon.reloaded")[0]["key_ids"] == ["key-2", "test-key"]
        sender = root / "sender.conf"
        sender.write_text(conf.read_text() + "[requests]\nsigning_key_id = key-2\n")
        code, result = send(
            sender, env, "--type", "quota.request.approved", "--server", api.id,
            "--flavor", "m1.large", "--id", "quota-5",
        )  # fmt: skip
        assert (result["policy"], result["outcome"]) == ("resize-on-approved-quota-v2", "confirmed")
        assert [line for line in daemon.lines if line.get("level") == "debug"]
    finally:
        daemon.process.send_signal(signal.SIGTERM)
        code = daemon.process.wait(timeout=60)
    assert code == 0, "".join(daemon.raw[-30:])
    assert "STOPPING" in manager.messages[-1]
