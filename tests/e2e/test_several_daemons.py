"""Three real `nova-autopilot run` processes against the real Nova, sharing its
RabbitMQ vhost, one Redis group and one PostgreSQL journal: 120 resize requests
for 24 servers (five each, in a mixed order), whose resizes are slowed down in
the hypervisor; one daemon killed with SIGKILL in the middle, while it has
resizes in flight. Nova's own record of each server's actions shows one resize
and one confirmation; a survivor finished each of the killed daemon's
operations; and no server ever had two operations at once: Nova's instance
actions of a server (their events' start and finish times) come one after the
other, within the one operation that made them, and the journal's spans of a
server's operations never overlap."""

from __future__ import annotations

import itertools
import json
import os
import signal
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from openstack.compute.v2.flavor import Flavor

from nova_autopilot import settings
from nova_autopilot.bus import RequestClient
from tests.integration.daemon_support import launch
from tests.integration.redis_support import RedisGroup
from tests.integration.several_support import (
    all_decided,
    in_flight,
    requests_for,
    stop_all,
)
from tests.integration.stack import clouds_yaml
from tests.novabox.client import NovaBox
from tests.waiting import until

pytestmark = pytest.mark.e2e

SERVERS = 24
RESIZE_DELAY = 8  # seconds each resize spends moving the disk: the kill comes meanwhile
BOOT_BATCH = 4  # booted together, then waited for
DAEMONS = ("e1", "e2", "e3")
VICTIM = "e2"
POLICIES = """
policies:
  - name: resize-on-approved-quota
    when: {source: request, event: quota.request.approved}
    do: {action: resize, params: {server: "{{ payload.server }}", flavor: "{{ payload.flavor }}"}}
    confirm: {timeout: 300s}
    limits: {cooldown: 1h, when_busy: refuse}
"""


@pytest.fixture
def servers(novabox: NovaBox, small: Flavor, large: Flavor) -> Iterator[tuple[list[str], str]]:
    booted = []
    try:
        for n in range(SERVERS):
            booted.append(
                novabox.boot(
                    f"several-{n}",
                    small,
                    wait=False,
                    metadata={"novabox:console": "ok", "novabox:resize_delay": str(RESIZE_DELAY)},
                )
            )
            if len(booted) % BOOT_BATCH == 0:  # 24 at once: one ended in NoValidHost
                for server in booted[-BOOT_BATCH:]:
                    novabox.wait_for_status(server, "ACTIVE", timeout=120)
        for server in booted:
            novabox.wait_for_status(server, "ACTIVE", timeout=120)
        yield [s.id for s in booted], large.name
    finally:
        novabox.delete_all(booted, timeout=120)


def configure(
    tmp_path: Path, novabox: NovaBox, group: RedisGroup, journal: str
) -> tuple[dict[str, Path], dict[str, str]]:
    clouds = clouds_yaml(tmp_path / "clouds.yaml", novabox.compute_url, name="novabox")
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
            "[guards]\nmax_concurrent_operations = 100\n"
            f"[coordination]\nbackend_url = {group.url}\ngroup = {group.group}\n"
            f"member_id = {name}\nlock_timeout = 5\nheartbeat_interval = 1\n"
            "lock_wait = 3\ntakeover_interval = 2\n"
            "[sweeps]\nenabled = false\n"
            "[logging]\nformat = json\n[metrics]\nport = 0\n"
        )
        confs[name] = conf
    return confs, {**os.environ, "OS_CLIENT_CONFIG_FILE": str(clouds)}


def nova_time(value: str) -> datetime:
    """Nova's times (``2026-11-26T02:50:01.000000``, UTC, no zone) as aware datetimes."""
    return datetime.fromisoformat(value.rstrip("Z")).replace(tzinfo=timezone.utc)


def to_the_second(moment: datetime, *, up: bool) -> datetime:
    """Nova stores its times to the second: compare the journal's at the same grain."""
    floor = moment.replace(microsecond=0)
    return floor + timedelta(seconds=1) if up and floor != moment else floor


def nova_spans(novabox: NovaBox, server_id: str) -> list[tuple[str, datetime, datetime]]:
    """Each write action Nova recorded for a server, oldest first, with the start of the
    action and the latest finish of its events (from each action's details)."""
    spans = []
    for listed in novabox.conn.compute.server_actions(server_id):
        if listed.action == "create":
            continue
        action = novabox.conn.compute.get_server_action(listed.request_id, server_id)
        events = action.events or []
        assert events, (server_id, action)
        assert all(e.finish_time for e in events), (server_id, action)
        assert all(e.result == "Success" for e in events), (server_id, action)
        finished = max(nova_time(e.finish_time) for e in events)
        spans.append((str(action.action), nova_time(action.start_time), finished))
    return sorted(spans, key=lambda span: span[1])


def test_three_daemons_on_the_real_nova_finish_a_dead_ones_operations(
    novabox: NovaBox,
    servers: tuple[list[str], str],
    redis_group: RedisGroup,
    postgresql_journal: str,
    tmp_path: Path,
) -> None:
    server_ids, flavor = servers
    confs, env = configure(tmp_path, novabox, redis_group, postgresql_journal)
    began = time.monotonic()
    daemons = {name: launch(confs[name], env) for name in DAEMONS}
    try:
        for name, daemon in daemons.items():
            until(lambda d=daemon: d.logged("daemon.started"), 120, f"{name} started")
        bodies = requests_for(server_ids, flavor=flavor, prefix="e2e-several", seed=11)
        half = len(bodies) // 2
        victim = daemons[VICTIM]
        with RequestClient.from_conf(settings.load(config_files=[str(confs["e1"])])) as client:
            for body in bodies[:half]:
                client.publish_request(body)
            until(lambda: len(in_flight(victim)) >= 2, 120, f"{VICTIM} with resizes in flight")
            victim.process.send_signal(signal.SIGKILL)
            victim.process.wait(timeout=30)
            killed_at, killed_wall = time.monotonic(), datetime.now(timezone.utc)
            victim.reader.join(timeout=30)  # every line it wrote before it died
            orphans = in_flight(victim)
            for body in bodies[half:]:
                client.publish_request(body)

        ops = all_decided(postgresql_journal, len(bodies), timeout=600)
        finished = time.monotonic()
    finally:
        stop_all(daemons)
    stopped = {name: d.process.returncode for name, d in daemons.items() if name != VICTIM}
    assert stopped == {"e1": 0, "e3": 0}, stopped

    odd = {
        o["id"]: (o["server_id"], o["owner"], o["outcome"], o["reason"])
        for o in ops
        if o["outcome"] not in ("confirmed", "refused")
    }
    if odd:  # what every daemon said about them
        ids = set(odd) | {found[0] for found in odd.values()}
        for name, daemon in daemons.items():
            for raw in daemon.raw:
                if any(i in raw for i in ids):
                    print(name, raw.strip()[:800])

    # One resize per server, confirmed; the other requests refused, calling nothing.
    outcomes = Counter(o["outcome"] for o in ops)
    assert outcomes == {"confirmed": SERVERS, "refused": len(bodies) - SERVERS}, odd
    confirmed = {o["server_id"]: o for o in ops if o["outcome"] == "confirmed"}
    assert sorted(confirmed) == sorted(server_ids)
    refusals = Counter(str(o["reason"]).split(":")[0] for o in ops if o["outcome"] == "refused")
    assert set(refusals) <= {"busy", "cooldown"}, refusals
    assert all(o["nova_requests"] == 0 for o in ops if o["outcome"] == "refused")

    # The killed daemon's operations in flight were finished by a survivor, once each.
    assert orphans
    by_id = {o["id"]: o for o in ops}
    for op_id in orphans:
        assert by_id[op_id]["outcome"] == "confirmed", by_id[op_id]
        assert by_id[op_id]["owner"] in {"e1", "e3"}, by_id[op_id]
    for op in ops:
        if op["owner"] == VICTIM:  # finished by the victim before it died
            assert op["finished_at"] <= killed_wall, op
    taken = [
        line
        for d in daemons.values()
        if d is not victim
        for line in d.logged("operation.taken_over")
    ]
    taken_ids = [line["operation_id"] for line in taken]
    assert len(taken_ids) == len(set(taken_ids)), taken_ids  # each resumed once
    assert orphans <= set(taken_ids)

    # Nova's own record: one resize and one confirmation per server, each action's
    # events all finished before the next action started, both within the one
    # operation that made them. No server ever had two operations at once.
    for server_id in server_ids:
        spans = nova_spans(novabox, server_id)
        assert [name for name, _, _ in spans] == ["resize", "confirmResize"], spans
        for (_, _, ended), (_, began_next, _) in itertools.pairwise(spans):
            assert ended <= began_next, (server_id, spans)
        op = confirmed[server_id]
        assert to_the_second(op["created_at"], up=False) <= spans[0][1], (op, spans)
        assert spans[-1][2] <= to_the_second(op["finished_at"], up=True), (op, spans)
        assert novabox.conn.compute.get_server(server_id).flavor.name == flavor
    for server_id in server_ids:  # and in the journal
        ran = sorted(
            (o["created_at"], o["finished_at"])
            for o in ops
            if o["server_id"] == server_id and o["outcome"] != "refused"
        )
        for (_, end), (start_, _) in itertools.pairwise(ran):
            assert end <= start_, (server_id, ran)
    print(
        "\nseveral daemons on the real Nova: "
        + json.dumps(
            {
                "servers": SERVERS,
                "requests": len(bodies),
                "killed": VICTIM,
                "its_operations_in_flight": len(orphans),
                "taken_over": len(taken),
                "refusals": dict(refusals),
                "all_done_after_s": round(finished - began, 1),
                "after_the_kill_s": round(finished - killed_at, 1),
            }
        )
    )
