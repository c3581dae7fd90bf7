"""Three real `nova-autopilot run` processes against the real Nova, sharing its
RabbitMQ vhost, one Redis group and one PostgreSQL journal: slow resizes of a
handful of servers, the daemon with the most of them in flight killed with
SIGKILL in the middle. Nova's own record of each server's actions shows one
resize and one confirmation, and the killed daemon's operations were finished
by a survivor."""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml

from nova_autopilot import settings
from nova_autopilot.bus import RequestClient
from tests.integration import redis_support
from tests.integration import test_several_daemons as several
from tests.integration.redis_support import RedisGroup
from tests.integration.stack import until
from tests.integration.test_daemon import Running
from tests.integration.test_several_daemons import operations, start
from tests.novabox.client import NovaBox

redis_group = redis_support.redis_group
database = several.database
pytestmark = pytest.mark.e2e

SERVERS = 4
RESIZE_DELAY = 30  # seconds each resize spends moving the disk: the kill comes meanwhile
DAEMONS = ("e1", "e2", "e3")
POLICIES = """
policies:
  - name: resize-on-approved-quota
    when: {source: request, event: quota.request.approved}
    do: {action: resize, params: {server: "{{ payload.server }}", flavor: "{{ payload.flavor }}"}}
    confirm: {timeout: 300s}
    limits: {cooldown: 1h, when_busy: refuse}
"""


@pytest.fixture
def servers(novabox: NovaBox) -> Iterator[tuple[list[str], str]]:
    small = novabox.create_flavor(ram=128)
    large = novabox.create_flavor(ram=256, vcpus=2)
    booted = [
        novabox.boot(
            f"several-{n}",
            small,
            metadata={"novabox:console": "ok", "novabox:resize_delay": str(RESIZE_DELAY)},
        )
        for n in range(SERVERS)
    ]
    try:
        yield [s.id for s in booted], large.name
    finally:
        for server in booted:
            novabox.delete(server)


def configure(
    tmp_path: Path, novabox: NovaBox, group: RedisGroup, journal: str
) -> tuple[dict[str, Path], dict[str, str]]:
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text(
        yaml.safe_dump(
            {
                "clouds": {
                    "novabox": {
                        "auth_type": "admin_token",
                        "auth": {"endpoint": novabox.compute_url, "token": "admin:admin"},
                        "compute_endpoint_override": novabox.compute_url,
                    }
                }
            }
        )
    )
    (tmp_path / "policies.yaml").write_text(POLICIES)
    pool = f"autopilot-e2e-{uuid.uuid4().hex[:8]}"
    confs = {}
    for name in DAEMONS:
        conf = tmp_path / f"{name}.conf"
        conf.write_text(
            f"[DEFAULT]\ntransport_url = {novabox.transport_url}\n"
            f"state_dir = {tmp_path / name}\nstop_timeout = 20\n"
            f"[notifications]\npool = {pool}\n"
            f"[policies]\npath = {tmp_path / 'policies.yaml'}\n"
            "[cloud]\ncloud = novabox\npoll_interval = 3\n"
            "[requests]\nrequire_signatures = false\n"
            f"[journal]\nconnection = {journal}\n"
            "[guards]\nnova_write_rate = 20\n"
            f"[coordination]\nbackend_url = {group.url}\ngroup = {group.group}\n"
            f"member_id = {name}\nlock_timeout = 5\nheartbeat_interval = 1\n"
            "lock_wait = 3\ntakeover_interval = 2\n"
            "[sweeps]\nenabled = false\n"
            "[logging]\nformat = json\n[metrics]\nport = 0\n"
        )
        confs[name] = conf
    return confs, {**os.environ, "OS_CLIENT_CONFIG_FILE": str(clouds)}


def in_flight(daemon: Running) -> set[str]:
    started = {line["operation_id"] for line in daemon.logged("operation.started")}
    return started - {line["operation_id"] for line in daemon.logged("operation.finished")}


def test_three_daemons_on_the_real_nova_finish_a_dead_ones_operations(
    novabox: NovaBox,
    servers: tuple[list[str], str],
    redis_group: RedisGroup,
    database: str,
    tmp_path: Path,
) -> None:
    server_ids, flavor = servers
    confs, env = configure(tmp_path, novabox, redis_group, database)
    daemons = {name: start(confs[name], env) for name in DAEMONS}
    try:
        for name, daemon in daemons.items():
            until(lambda d=daemon: d.logged("daemon.started"), 120, f"{name} started")
        with RequestClient.from_conf(settings.load(config_files=[str(confs["e1"])])) as client:
            for server_id in server_ids:
                for n in range(2):  # twice each: the second is refused
                    client.publish_request(
                        {
                            "version": 1,
                            "type": "quota.request.approved",
                            "id": f"e2e-several-{server_id}-{n}",
                            "timestamp": datetime.now(timezone.utc).isoformat(),
                            "server": {"id": server_id},
                            "flavor": flavor,
                            "approved_by": "bob",
                        }
                    )
        until(
            lambda: sum(len(d.logged("operation.started")) for d in daemons.values()) == SERVERS,
            120,
            "every server's resize started",
        )
        victim_name = max(DAEMONS, key=lambda n: len(in_flight(daemons[n])))
        victim = daemons[victim_name]
        victim.process.send_signal(signal.SIGKILL)
        victim.process.wait(timeout=30)
        victim.reader.join(timeout=30)
        orphans = in_flight(victim)
        assert orphans

        deadline = time.monotonic() + 300
        while True:
            ops = operations(database)
            if len(ops) == 2 * SERVERS and all(o["outcome"] for o in ops):
                break
            assert time.monotonic() < deadline, ops
            time.sleep(1)
    finally:
        for daemon in daemons.values():
            if daemon.process.poll() is None:
                daemon.process.send_signal(signal.SIGTERM)
        for daemon in daemons.values():
            daemon.process.wait(timeout=60)

    by_id = {o["id"]: o for o in ops}
    for op_id in orphans:
        assert by_id[op_id]["outcome"] == "confirmed", by_id[op_id]
        assert by_id[op_id]["owner"] not in (None, victim_name), by_id[op_id]
    assert sorted(o["server_id"] for o in ops if o["outcome"] == "confirmed") == sorted(server_ids)
    writes = {}
    for server_id in server_ids:
        actions = [a.action for a in novabox.conn.compute.server_actions(server_id)]
        writes[server_id] = sorted(a for a in actions if a != "create")
        assert writes[server_id] == ["confirmResize", "resize"], actions
        assert novabox.conn.compute.get_server(server_id).flavor.name == flavor
    taken = [
        line
        for d in daemons.values()
        if d is not victim
        for line in d.logged("operation.taken_over")
    ]
    taken_ids = [line["operation_id"] for line in taken]
    assert len(taken_ids) == len(set(taken_ids)), taken_ids  # each resumed once
    assert orphans <= set(taken_ids)
    print(
        "\nseveral daemons on the real Nova: "
        + json.dumps(
            {
                "servers": SERVERS,
                "killed": victim_name,
                "its_operations_in_flight": len(orphans),
                "taken_over": len(taken),
                "outcomes": sorted(str(o["outcome"]) for o in ops),
            }
        )
    )
