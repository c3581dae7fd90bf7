"""Three real `nova-autopilot run` processes share one cloud: one RabbitMQ vhost, one
Redis group, one PostgreSQL journal, the sandbox Nova over HTTP with its
notifications on the vhost. 1,000 operator requests for 200 servers, five each
(a resize to m1.large, one per server: the busy guard and the cooldown refuse the
rest), and five servers nobody asks anything about; one daemon is killed with
SIGKILL in the middle. Every server is resized exactly once (the sandbox counts
every write call per server, refused ones too: exactly one resize and one
confirmation each, none to the five others), the dead daemon's unfinished
operations are finished by the others, and no server ever has two operations at
once (the journal's spans of a server's operations never overlap, and Nova's
calls for it come one after the other within its one operation)."""

from __future__ import annotations

import itertools
import os
import signal
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from nova_autopilot import settings
from nova_autopilot.bus import RequestClient
from nova_autopilot.sandbox import Durations, Sandbox
from tests.integration import bus_support
from tests.integration.daemon_support import Running, launch
from tests.integration.redis_support import RedisGroup
from tests.integration.several_support import operations, requests_for
from tests.integration.stack import add_flavors, clouds_yaml
from tests.waiting import until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SERVERS = 200
BYSTANDERS = 5  # servers nobody asks anything about: Nova must see no write for them
DAEMONS = ("d1", "d2", "d3")
VICTIM = "d2"
LOCK_TIMEOUT = 5
POLICIES = """
policies:
  - name: resize-on-approved-quota
    when: {source: request, event: quota.request.approved}
    do: {action: resize, params: {server: "{{ payload.server }}", flavor: "{{ payload.flavor }}"}}
    confirm: {timeout: 120s}
    limits: {cooldown: 1h, when_busy: refuse}
"""
#: Nova's write actions, as the sandbox names its instance actions.
WRITES = {"resize", "confirmResize", "revertResize", "rescue", "unrescue", "lock", "unlock"}


def configure(
    tmp_path: Path, rabbit: bus_support.Rabbit, group: RedisGroup, journal: str, sandbox: Sandbox
) -> tuple[dict[str, Path], dict[str, str]]:
    clouds = clouds_yaml(tmp_path / "clouds.yaml", sandbox.url)
    (tmp_path / "policies.yaml").write_text(POLICIES)
    confs = {}
    for name in DAEMONS:
        conf = tmp_path / f"{name}.conf"
        conf.write_text(
            f"[DEFAULT]\ntransport_url = {rabbit.transport_url}\n"
            f"state_dir = {tmp_path / name}\nstop_timeout = 20\n"
            f"[policies]\npath = {tmp_path / 'policies.yaml'}\n"
            "[cloud]\ncloud = sandbox\npoll_interval = 2\nworkers = 4\n"
            "[requests]\nrequire_signatures = false\n"
            f"[journal]\nconnection = {journal}\n"
            "[guards]\nmax_concurrent_operations = 1000\nnova_write_rate = 100\n"
            "nova_write_burst = 20\n"
            "[notifications]\nretry_delays = 1,2,4,8,16\n"
            f"[coordination]\nbackend_url = {group.url}\ngroup = {group.group}\n"
            f"member_id = {name}\nlock_timeout = {LOCK_TIMEOUT}\nheartbeat_interval = 1\n"
            "lock_wait = 3\ntakeover_interval = 2\n"
            "[logging]\nformat = json\n[metrics]\nport = 0\n"
        )
        confs[name] = conf
    return confs, {**os.environ, "OS_CLIENT_CONFIG_FILE": str(clouds)}


def test_three_daemons_share_a_cloud_and_survive_the_loss_of_one(
    rabbit: bus_support.Rabbit, redis_group: RedisGroup, postgresql_journal: str, tmp_path: Path
) -> None:
    sandbox = Sandbox(transport_url=rabbit.transport_url, durations=Durations().scaled(20)).start()
    daemons: dict[str, Running] = {}
    try:
        add_flavors(sandbox)
        servers = [sandbox.add_server(f"web-{n}", "m1.small").id for n in range(SERVERS)]
        bystanders = [sandbox.add_server(f"db-{n}", "m1.small").id for n in range(BYSTANDERS)]
        confs, env = configure(tmp_path, rabbit, redis_group, postgresql_journal, sandbox)
        began = time.monotonic()
        for name in DAEMONS:
            daemons[name] = launch(confs[name], env)
        for name, daemon in daemons.items():
            until(lambda d=daemon: d.logged("daemon.started"), 90, f"{name} started")
        bodies = requests_for(servers)
        conf = settings.load(config_files=[str(confs["d1"])])
        half = len(bodies) // 2
        with RequestClient.from_conf(conf) as client:
            for body in bodies[:half]:
                client.publish_request(body)
            victim = daemons[VICTIM]

            def victim_busy() -> bool:
                started = {line["operation_id"] for line in victim.logged("operation.started")}
                ended = {line["operation_id"] for line in victim.logged("operation.finished")}
                return len(started - ended) >= 5

            until(victim_busy, 90, f"{VICTIM} with operations in flight")
            victim.process.send_signal(signal.SIGKILL)
            victim.process.wait(timeout=30)
            killed_at, killed_wall = time.monotonic(), datetime.now(timezone.utc)
            victim.reader.join(timeout=30)  # every line it wrote before it died
            started = {line["operation_id"] for line in victim.logged("operation.started")}
            ended = {line["operation_id"] for line in victim.logged("operation.finished")}
            orphans = started - ended
            for body in bodies[half:]:
                client.publish_request(body)

        deadline = time.monotonic() + 300  # a hang, even on a busy machine
        while True:  # every request decided and every operation finished
            ops = operations(postgresql_journal)
            if len(ops) == len(bodies) and all(o["outcome"] for o in ops):
                break
            assert time.monotonic() < deadline, Counter(o["outcome"] for o in ops)
            time.sleep(0.5)
        finished = time.monotonic()
        takeovers = [
            (name, line)
            for name, d in daemons.items()
            if name != VICTIM
            for line in d.logged("operation.taken_over")
        ]
        taken = {line["operation_id"]: (name, line) for name, line in takeovers}
    finally:
        for daemon in daemons.values():
            if daemon.process.poll() is None:
                daemon.process.send_signal(signal.SIGTERM)
        for daemon in daemons.values():
            daemon.process.wait(timeout=60)
        sandbox.stop()
    stopped = {name: d.process.returncode for name, d in daemons.items() if name != VICTIM}
    assert stopped == {"d1": 0, "d3": 0}, stopped  # SIGTERM: locks and leases given back
    assert all(d.logged("coordination.left") for n, d in daemons.items() if n != VICTIM)

    # Each server was resized exactly once, confirmed: Nova received exactly one resize
    # and one confirmation per server, and no other write call (a repeat refused with
    # 409 would show here although Nova records no instance action for it)...
    calls = {sid: sandbox.write_calls(sid) for sid in servers}
    actions = {
        sid: [a for a in sandbox.server(sid).actions if a.action in WRITES] for sid in servers
    }

    def expected(sid: str) -> bool:
        mine = [o for o in ops if o["server_id"] == sid]
        reasons = sorted(
            str(o["reason"]).split(":")[0] for o in mine if o["outcome"] != "confirmed"
        )
        return (
            [(c.name, c.status) for c in calls[sid]] == [("resize", 202), ("confirmResize", 204)]
            and len(mine) - len(reasons) == 1
            and set(reasons) <= {"busy", "cooldown"}
        )

    odd = {
        sid: [
            (o["id"], o["owner"], o["outcome"], o["reason"]) for o in ops if o["server_id"] == sid
        ]
        for sid in servers
        if not expected(sid)
    }
    if odd:  # what every daemon said about them
        ids = set(odd) | {o[0] for found in odd.values() for o in found}
        for name, daemon in daemons.items():
            for raw in daemon.raw:
                if any(i in raw for i in ids):
                    print(name, raw.strip()[:500])
    counts = sandbox.write_counts()
    assert sorted(counts) == sorted(servers), odd  # none to the bystanders, nor elsewhere
    assert all(c == {"confirmResize": 1, "resize": 1} for c in counts.values()), odd
    assert not odd, odd  # each answered 202 and 204
    # ... which Nova accepted and recorded as its instance actions.
    per_server = Counter(tuple(a.action for a in found) for found in actions.values())
    assert per_server == {("resize", "confirmResize"): SERVERS}
    assert all(sandbox.server(sid).flavor.name == "m1.large" for sid in servers)
    assert all(sandbox.server(sid).flavor.name == "m1.small" for sid in bystanders)
    assert all(sandbox.write_calls(sid) == [] for sid in bystanders)
    outcomes = Counter(o["outcome"] for o in ops)
    confirmed = Counter(o["server_id"] for o in ops if o["outcome"] == "confirmed")
    assert confirmed == dict.fromkeys(servers, 1)
    assert outcomes["confirmed"] == SERVERS
    assert outcomes["refused"] == len(bodies) - SERVERS, outcomes
    refusals = Counter(str(o["reason"]).split(":")[0] for o in ops if o["outcome"] == "refused")
    assert set(refusals) <= {"busy", "cooldown"}, refusals
    assert all(o["nova_requests"] == 0 for o in ops if o["outcome"] == "refused")

    # The dead daemon's unfinished operations were finished by the others: claimed in
    # the journal by a survivor (the owner changed), after the victim's claim.
    by_id = {o["id"]: o for o in ops}
    for op in ops:
        if op["owner"] == VICTIM:  # finished by the victim before it died
            assert op["finished_at"] <= killed_wall, op
    assert len(taken) == len(takeovers), takeovers  # none resumed twice
    adopted = [op_id for op_id in orphans if by_id[op_id]["owner"] != VICTIM]
    assert adopted, f"none of the victim's {len(orphans)} operations in flight was taken over"
    for op_id in adopted:
        assert by_id[op_id]["outcome"] == "confirmed", by_id[op_id]
        assert by_id[op_id]["owner"] in {"d1", "d3"}, by_id[op_id]
        taker, line = taken[op_id]
        assert (taker, line["previous_owner"]) == (by_id[op_id]["owner"], VICTIM)
    assert {o["owner"] for o in ops if o["outcome"] == "confirmed"} <= set(DAEMONS)

    # No server ever had two operations at once. In the journal, the spans of a
    # server's operations that ran (created to finished) never overlap, and the
    # refused ones called nothing at Nova...
    for sid in servers:
        spans = sorted(
            (o["created_at"], o["finished_at"])
            for o in ops
            if o["server_id"] == sid and o["outcome"] != "refused"
        )
        for (_, end), (start_, _) in itertools.pairwise(spans):
            assert end <= start_, (sid, spans)
    # ... and at Nova, by its own clock, each server's write calls came one after the
    # other, the confirmation after the resize was answered, all within the one
    # operation that made them; Nova's instance actions (to the second) agree.
    for sid in servers:
        (op,) = [o for o in ops if o["server_id"] == sid and o["outcome"] == "confirmed"]
        resize, confirm = calls[sid]
        assert resize.answered <= confirm.arrived, (sid, resize, confirm)
        confirm_answered_at = confirm.at + timedelta(seconds=confirm.answered - confirm.arrived)
        assert op["created_at"] <= resize.at, (sid, op, resize)
        assert confirm_answered_at <= op["finished_at"], (sid, op, confirm)
        resized, confirmed_action = actions[sid]
        began_at = op["created_at"].replace(microsecond=0)  # Nova's times are to the second
        assert began_at <= resized.start_time <= confirmed_action.start_time <= op["finished_at"]

    print(
        f"\nseveral daemons: {len(DAEMONS)} daemons, {SERVERS} servers, {len(bodies)} requests; "
        f"{outcomes['confirmed']} resized once each, {outcomes['refused']} refused "
        f"({dict(refusals)}); {VICTIM} killed with {len(orphans)} operations in flight, "
        f"{len(adopted)} of them taken over ({len(taken)} in all, by "
        f"{dict(Counter(name for name, _ in taken.values()))}); "
        f"all done {finished - began:.1f}s after the start, {finished - killed_at:.1f}s "
        "after the kill"
    )
