"""The coordination backend (Redis, through tooz) restarted empty under the daemons'
coordinators (a row of "Faults survived, measured"): a Redis without persistence
comes back with no group, no member and no lock. The coordinators, heartbeating
all along, join the group again and elect a leader, so the group's members (what
the takeover of a dead daemon's operations and /status read) are all seen again.
Before, the group stayed gone for good, and the first read of the members while
Redis was down let redis-py's own ConnectionError out of tooz and ended the daemon.

The Redis is a private one (tests/integration/private_redis.py): the machine's
shared Redis is never touched.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest

from nova_autopilot import settings
from nova_autopilot.bus import RequestClient
from nova_autopilot.coordination import CoordinationError, Coordinator
from nova_autopilot.sandbox import Durations, Sandbox
from tests.integration import bus_support
from tests.integration import private_redis as private_redis_module
from tests.integration.daemon_support import Running, endpoints, get, launch
from tests.integration.private_redis import PrivateRedis
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
private_redis = private_redis_module.private_redis
LOCK_TIMEOUT = 5
SERVERS = 40
DAEMONS = ("d1", "d2")
#: Longer than the locks' and the members' timeout: they all expire meanwhile.
OUTAGE_S = 8.0
#: A request refused for its lock comes back within a second or two of the backend's
#: return (and the sum, 26 s, outlives the outage: nothing is dead-lettered).
RETRY_DELAYS = "1,1,1,1,2,2,2,3,5,8"


def test_members_are_seen_again_after_the_backend_is_down_then_back_empty(
    private_redis: PrivateRedis,
) -> None:
    members = [
        Coordinator(
            backend_url=private_redis.url,
            member_id=name,
            group="outage",
            lock_timeout=LOCK_TIMEOUT,
            heartbeat_s=0.5,
        )
        for name in ("m1", "m2")
    ]
    try:
        for c in members:
            c.start()
        assert members[0].members() == {"m1", "m2"}
        private_redis.stop()
        asked = time.monotonic()
        with pytest.raises(CoordinationError):  # the backend's own error, as ours
            members[0].members()
        # At its first failure: redis-py's tries with pauses under tooz's fifteen
        # held the call for about a minute.
        assert time.monotonic() - asked < 10
        until(lambda: members[0].problem() is not None, 10, "a heartbeat that failed")
        private_redis.start()
        # The heartbeats go on: a leader is elected again on the empty server, and
        # each member joins the group it finds gone.
        until(lambda: any(c.is_leader() for c in members), 30, "a leader again")

        def seen() -> frozenset[str] | str:
            try:
                return members[0].members()
            except CoordinationError as exc:
                return str(exc)

        until(lambda: seen() == {"m1", "m2"}, 30, "both members in the group again")
        assert [c.problem() for c in members] == [None, None]
    finally:
        for c in members:
            c.stop()


def test_daemons_decide_nothing_they_cannot_lock_while_the_backend_is_down(
    rabbit: bus_support.Rabbit,
    private_redis: PrivateRedis,
    postgresql_journal: str,
    tmp_path: Path,
) -> None:
    """Two real daemons on one cloud, a stream of resize requests (five per server),
    Redis stopped for OUTAGE_S while operations run and while half the requests come
    in, then started again empty. Nothing starts while the locks are out of reach,
    nothing is lost, every server is resized exactly once and never has two
    operations at once, and neither daemon stops or stops being alive."""
    sandbox = Sandbox(transport_url=rabbit.transport_url, durations=Durations().scaled(20)).start()
    daemons: dict[str, Running] = {}
    try:
        add_flavors(sandbox)
        servers = [sandbox.add_server(f"web-{n}", "m1.small").id for n in range(SERVERS)]
        bystanders = [sandbox.add_server("db-0", "m1.small").id]
        confs, env = configure(
            tmp_path,
            DAEMONS,
            rabbit=rabbit,
            coordination=(private_redis.url, f"outage-{uuid.uuid4().hex[:8]}"),
            journal=postgresql_journal,
            sandbox=sandbox,
            lock_timeout=LOCK_TIMEOUT,
            retry_delays=RETRY_DELAYS,
        )
        for name in DAEMONS:
            daemons[name] = launch(confs[name], env)
        for name, daemon in daemons.items():
            until(lambda d=daemon: d.logged("daemon.started"), 90, f"{name} started")
        bodies = requests_for(servers)
        conf = settings.load(config_files=[str(confs[DAEMONS[0]])])
        half = len(bodies) // 2
        with RequestClient.from_conf(conf) as client:
            for body in bodies[:half]:
                client.publish_request(body)
            until(
                lambda: sum(len(in_flight(d)) for d in daemons.values()) >= 3,
                60,
                "operations in flight",
            )
            private_redis.stop()
            down_at = datetime.now(timezone.utc)
            for body in bodies[half:]:
                client.publish_request(body)
        time.sleep(OUTAGE_S)
        # Alive all along: each main loop turned (a call to the backend fails at once
        # instead of holding the loop for a minute), each process still there.
        alive = {name: get(f"{endpoints(d)}/healthz")[0] for name, d in daemons.items()}
        # ... and not ready, saying why.
        unready = {name: get(f"{endpoints(d)}/readyz") for name, d in daemons.items()}
        back_at = datetime.now(timezone.utc)  # it may answer before start() returns
        private_redis.start()
        ops = all_decided(postgresql_journal, len(bodies))
        done_at = datetime.now(timezone.utc)
        for d in daemons.values():
            until(lambda d=d: get(f"{endpoints(d)}/readyz")[0] == 200, 10, "ready again")
        queues = rabbit.queues()
    finally:
        stop_all(daemons)
        sandbox.stop()
    assert alive == dict.fromkeys(DAEMONS, 200), alive
    for name, (status, answer) in unready.items():
        assert status == 503, (name, answer)
        assert set(answer["problems"]) == {"coordination"}, (name, answer)
        assert "did not take the last heartbeat" in answer["problems"]["coordination"]
    assert {name: d.process.returncode for name, d in daemons.items()} == dict.fromkeys(DAEMONS, 0)
    outcomes, refusals = each_server_resized_once(sandbox, ops, servers, bystanders, daemons)
    # No operation started while the locks were out of reach: a decision that
    # cannot take its server's lock is not made (the message comes back later).
    # A refusal may be decided under a lock this daemon already held for the
    # operation that runs there, and refuse it busy.
    started_meanwhile = [
        o for o in ops if o["outcome"] != "refused" and down_at < o["created_at"] < back_at
    ]
    if started_meanwhile:  # what every daemon said about them
        for name, daemon in daemons.items():
            for raw in daemon.raw:
                if any(o["id"] in raw or o["server_id"] in raw for o in started_meanwhile):
                    print(name, raw.strip()[:400])
    assert not started_meanwhile, (
        down_at,
        back_at,
        [(o["created_at"], o["id"]) for o in started_meanwhile],
    )
    # Nothing lost, nothing dead-lettered: every queue of the daemons' empty (Nova's
    # own, versioned_notifications.info, is nobody's here).
    ours = {name: n for name, n in queues.items() if name.startswith("nova-autopilot")}
    assert "nova-autopilot.requests.dead" in ours, queues
    assert set(ours.values()) == {0}, queues
    assert not any(d.logged("intake.dead_lettered") for d in daemons.values())
    # The daemons said what happened, and joined the group again by themselves.
    for name, daemon in daemons.items():
        assert daemon.logged("coordination.heartbeat_failed"), name
        assert daemon.logged("coordination.rejoined"), name
    after = sorted(o["created_at"] for o in ops if o["created_at"] > back_at)
    print(
        f"\ncoordination outage: {len(DAEMONS)} daemons, {len(servers)} servers, "
        f"{len(bodies)} requests, Redis down {OUTAGE_S:.0f} s with {half} requests "
        f"published meanwhile; {outcomes['confirmed']} resized once each, "
        f"{outcomes['refused']} refused ({dict(refusals)}); first operation "
        f"{(after[0] - back_at).total_seconds():.1f} s after Redis was back, all done "
        f"{(done_at - back_at).total_seconds():.1f} s after"
    )
