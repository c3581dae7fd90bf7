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

import signal
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import pytest

from nova_autopilot import settings
from nova_autopilot.bus import RequestClient
from nova_autopilot.sandbox import Durations, Sandbox
from tests.integration import bus_support
from tests.integration.daemon_support import Running, launch
from tests.integration.redis_support import RedisGroup
from tests.integration.several_support import (
    all_decided,
    configure,
    each_server_resized_once,
    in_flight,
    requests_for,
    stop_all,
)
from tests.integration.stack import add_flavors
from tests.waiting import until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SERVERS = 200
BYSTANDERS = 5  # servers nobody asks anything about: Nova must see no write for them
DAEMONS = ("d1", "d2", "d3")
VICTIM = "d2"
LOCK_TIMEOUT = 5


def test_three_daemons_share_a_cloud_and_survive_the_loss_of_one(
    rabbit: bus_support.Rabbit, redis_group: RedisGroup, postgresql_journal: str, tmp_path: Path
) -> None:
    sandbox = Sandbox(transport_url=rabbit.transport_url, durations=Durations().scaled(20)).start()
    daemons: dict[str, Running] = {}
    try:
        add_flavors(sandbox)
        servers = [sandbox.add_server(f"web-{n}", "m1.small").id for n in range(SERVERS)]
        bystanders = [sandbox.add_server(f"db-{n}", "m1.small").id for n in range(BYSTANDERS)]
        confs, env = configure(
            tmp_path,
            DAEMONS,
            rabbit=rabbit,
            coordination=(redis_group.url, redis_group.group),
            journal=postgresql_journal,
            sandbox=sandbox,
            lock_timeout=LOCK_TIMEOUT,
        )
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
            until(lambda: len(in_flight(victim)) >= 5, 90, f"{VICTIM} with operations in flight")
            victim.process.send_signal(signal.SIGKILL)
            victim.process.wait(timeout=30)
            killed_at, killed_wall = time.monotonic(), datetime.now(timezone.utc)
            victim.reader.join(timeout=30)  # every line it wrote before it died
            orphans = in_flight(victim)
            for body in bodies[half:]:
                client.publish_request(body)

        ops = all_decided(postgresql_journal, len(bodies))
        finished = time.monotonic()
        takeovers = [
            (name, line)
            for name, d in daemons.items()
            if name != VICTIM
            for line in d.logged("operation.taken_over")
        ]
        taken = {line["operation_id"]: (name, line) for name, line in takeovers}
    finally:
        stop_all(daemons)
        sandbox.stop()
    stopped = {name: d.process.returncode for name, d in daemons.items() if name != VICTIM}
    assert stopped == {"d1": 0, "d3": 0}, stopped  # SIGTERM: locks and leases given back
    assert all(d.logged("coordination.left") for n, d in daemons.items() if n != VICTIM)

    outcomes, refusals = each_server_resized_once(sandbox, ops, servers, bystanders, daemons)
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

    print(
        f"\nseveral daemons: {len(DAEMONS)} daemons, {SERVERS} servers, {len(bodies)} requests; "
        f"{outcomes['confirmed']} resized once each, {outcomes['refused']} refused "
        f"({dict(refusals)}); {VICTIM} killed with {len(orphans)} operations in flight, "
        f"{len(adopted)} of them taken over ({len(taken)} in all, by "
        f"{dict(Counter(name for name, _ in taken.values()))}); "
        f"all done {finished - began:.1f}s after the start, {finished - killed_at:.1f}s "
        "after the kill"
    )
