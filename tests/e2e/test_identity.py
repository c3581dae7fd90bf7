"""One identity per server, against the real Nova, driven as an operator drives it:
`nova-autopilot run`, `send --wait` and `history`. A resize asked for by the
server's name and one asked for by its id are about the same server: the second
meets the busy guard while the first runs, the cooldown once it is confirmed, and
`history --server` lists the same operations by name, by id and by the start of
the id."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
from openstack.compute.v2.flavor import Flavor
from openstack.compute.v2.server import Server

from nova_autopilot import settings
from nova_autopilot.bus import RequestClient
from tests.e2e.support import daemon_config, history
from tests.integration.daemon_support import Running, send, start_daemon, stop_daemon
from tests.novabox.client import NovaBox
from tests.waiting import until

pytestmark = pytest.mark.e2e

RESIZE_DELAY = 6  # seconds the hypervisor takes to move the disk: the second request comes then
POLICIES = """
policies:
  - name: resize-on-approved-quota
    when: {source: request, event: quota.request.approved}
    do: {action: resize, params: {server: "{{ payload.server }}", flavor: "{{ payload.flavor }}"}}
    confirm: {timeout: 300s}
    limits: {cooldown: 1h, when_busy: refuse}
"""


@pytest.fixture
def server(novabox: NovaBox, small: Flavor) -> Iterator[Server]:
    name = f"ident-{uuid.uuid4().hex[:6]}"
    booted = novabox.boot(
        name,
        small,
        metadata={"novabox:console": "ok", "novabox:resize_delay": str(RESIZE_DELAY)},
    )
    try:
        yield booted
    finally:
        novabox.delete(booted, timeout=120)


@pytest.fixture
def daemon(novabox: NovaBox, tmp_path: Path) -> Iterator[tuple[Path, dict[str, str], Running]]:
    conf, env = daemon_config(tmp_path, novabox, POLICIES)
    running = start_daemon(conf, env)
    try:
        yield conf, env, running
    finally:
        stop_daemon(running)


def test_by_name_and_by_id_meet_the_same_busy_guard_cooldown_and_history(
    novabox: NovaBox,
    server: Server,
    large: Flavor,
    small: Flavor,
    daemon: tuple[Path, dict[str, str], Running],
) -> None:
    conf, env, running = daemon
    first = {
        "type": "quota.request.approved",
        "id": f"ident-by-name-{uuid.uuid4().hex[:6]}",
        "timestamp": datetime.now(timezone.utc).isoformat(),
        "server": {"name": server.name},
        "flavor": large.name,
    }
    with RequestClient.from_conf(settings.load(config_files=[str(conf)])) as client:
        client.publish_request(first)
    until(lambda: running.logged("operation.started"), 60, "the resize by name started")

    code, busy = send(
        conf, env, "--unsigned", "--type", "quota.request.approved", "--server", server.id,
        "--flavor", large.name,
    )  # fmt: skip
    assert code != 0, busy
    assert busy["outcome"] == "refused"
    assert busy["reason"].startswith("busy: "), busy
    assert busy["server_id"] == server.id

    until(  # the daemon's log first: each asking of history is a process of its own
        lambda: [
            line
            for line in running.logged("operation.finished")
            if line.get("server_id") == server.id and line.get("action") == "resize"
        ],
        180,
        "the resize by name to end",
    )
    until(
        lambda: [
            o for o in history(conf, env, "--server", server.id) if o["outcome"] == "confirmed"
        ],
        180,
        "the resize by name confirmed",
    )
    assert novabox.conn.compute.get_server(server.id).flavor.name == large.name

    code, cooled = send(
        conf, env, "--unsigned", "--type", "quota.request.approved", "--server", server.id,
        "--flavor", small.name,
    )  # fmt: skip
    assert code != 0, cooled
    assert cooled["outcome"] == "refused"
    assert cooled["reason"].startswith("cooldown: "), cooled
    code, again = send(
        conf, env, "--unsigned", "--type", "quota.request.approved", "--server", server.name,
        "--flavor", small.name,
    )  # fmt: skip
    assert again["outcome"] == "refused"
    assert again["reason"].startswith("cooldown: "), again
    assert again["server_id"] == server.id
    assert novabox.conn.compute.get_server(server.id).flavor.name == large.name

    by_id = history(conf, env, "--server", server.id)
    assert [o["outcome"] for o in by_id] == ["refused", "refused", "refused", "confirmed"]
    assert {o["server"]["id"] for o in by_id} == {server.id}
    assert history(conf, env, "--server", server.name) == by_id
    assert history(conf, env, "--server", server.id[:13]) == by_id
