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

import pytest

from nova_autopilot.coordination import CoordinationError, Coordinator
from tests.integration import private_redis as private_redis_module
from tests.integration.private_redis import PrivateRedis
from tests.waiting import until

pytestmark = [pytest.mark.integration, pytest.mark.slow]
private_redis = private_redis_module.private_redis
LOCK_TIMEOUT = 5


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
        with pytest.raises(CoordinationError):  # the backend's own error, as ours
            members[0].members()
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
    finally:
        for c in members:
            c.stop()
