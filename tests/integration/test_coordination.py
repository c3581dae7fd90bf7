"""The coordination module on the real Redis: its locks exclude across processes,
expire once their holder stops heartbeating, the leader changes when the leader
leaves or dies, and the per-server locks of the engine follow them."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from typing import ClassVar

import pytest
from structlog.testing import capture_logs

from nova_autopilot.coordination import Coordinator
from nova_autopilot.engine.locks import ServerBusyElsewhere, ServerLocks
from tests.integration import redis_support
from tests.integration.redis_support import RedisGroup
from tests.waiting import until

redis_group = redis_support.redis_group
pytestmark = pytest.mark.integration

LOCK_TIMEOUT = 2
HEARTBEAT = 0.5


def member(place: RedisGroup, name: str) -> Coordinator:
    return Coordinator(
        backend_url=place.url,
        member_id=name,
        group=place.group,
        lock_timeout=LOCK_TIMEOUT,
        heartbeat_s=HEARTBEAT,
    )


@pytest.fixture
def started(redis_group: RedisGroup) -> Iterator[list[Coordinator]]:
    members: list[Coordinator] = []
    yield members
    for c in members:
        c.stop()
    for holder in Holder.alive:
        holder.kill()
    Holder.alive.clear()


def start(members: list[Coordinator], c: Coordinator) -> Coordinator:
    c.start()
    members.append(c)
    return c


class Holder:
    """Another process that joins the group and takes a lock: SIGKILL stops its heart."""

    alive: ClassVar[list[Holder]] = []

    def __init__(self, place: RedisGroup, name: str, lock: str | None) -> None:
        script = textwrap.dedent(
            f"""
            import sys, time
            from nova_autopilot.coordination import Coordinator
            c = Coordinator(backend_url={place.url!r}, member_id={name!r},
                            group={place.group!r}, lock_timeout={LOCK_TIMEOUT},
                            heartbeat_s={HEARTBEAT})
            c.start()
            lock = {lock!r}
            if lock is not None:
                assert c.lock(lock).acquire(False)
            print("leader" if c.is_leader() else "member", flush=True)
            time.sleep(3600)
            """
        )
        self.process = subprocess.Popen(
            [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True
        )
        Holder.alive.append(self)
        assert self.process.stdout is not None
        self.role = ""
        while self.role not in ("leader", "member"):  # after its log lines
            line = self.process.stdout.readline()
            assert line, "the holder ended"
            self.role = line.strip()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)


def test_locks_exclude_and_are_released(
    redis_group: RedisGroup, started: list[Coordinator]
) -> None:
    a = start(started, member(redis_group, "a"))
    b = start(started, member(redis_group, "b"))
    held = a.lock("server:1")
    assert held.acquire(False)
    assert not b.lock("server:1").acquire(False)
    assert not a.lock("server:1").acquire(False)  # a second handle of the same lock
    assert b.lock("server:2").acquire(False)  # another name is another lock
    held.release()
    assert b.lock("server:1").acquire(1.0)
    assert all(k.startswith(redis_group.group.encode()) for k in redis_group.namespaced_keys())


def test_a_held_lock_outlives_its_timeout_while_its_holder_heartbeats(
    redis_group: RedisGroup, started: list[Coordinator]
) -> None:
    a = start(started, member(redis_group, "a"))
    b = start(started, member(redis_group, "b"))
    assert a.lock("server:1").acquire(False)
    time.sleep(LOCK_TIMEOUT * 2)
    assert not b.lock("server:1").acquire(False)


def test_a_lock_expires_when_its_holder_dies(
    redis_group: RedisGroup, started: list[Coordinator]
) -> None:
    holder = Holder(redis_group, "dying", "server:1")
    b = start(started, member(redis_group, "b"))
    assert not b.lock("server:1").acquire(False)
    assert "dying" in b.members()
    holder.kill()
    assert b.lock("server:1").acquire(LOCK_TIMEOUT * 5)
    until(lambda: b.members() == {"b"}, timeout=LOCK_TIMEOUT * 5, what="the dead member gone")


def test_the_leader_changes_when_the_leader_leaves(
    redis_group: RedisGroup, started: list[Coordinator]
) -> None:
    a = member(redis_group, "a")
    a.start()
    b = start(started, member(redis_group, "b"))
    assert a.is_leader()
    assert not b.is_leader()
    assert b.members() == {"a", "b"}
    a.stop()
    until(b.is_leader, timeout=LOCK_TIMEOUT * 5, what="b leads")
    assert b.members() == {"b"}


def test_the_leader_changes_when_the_leader_dies(
    redis_group: RedisGroup, started: list[Coordinator]
) -> None:
    changes: list[bool] = []
    holder = Holder(redis_group, "dying", None)
    assert holder.role == "leader"
    b = Coordinator(
        backend_url=redis_group.url,
        member_id="b",
        group=redis_group.group,
        lock_timeout=LOCK_TIMEOUT,
        heartbeat_s=HEARTBEAT,
        on_leader=changes.append,
    )
    start(started, b)
    assert not b.is_leader()
    holder.kill()
    until(b.is_leader, timeout=LOCK_TIMEOUT * 5, what="b leads")
    # The callback is told just after the role changes: wait for it, then for nothing more.
    until(lambda: changes != [], timeout=LOCK_TIMEOUT * 5, what="b told it leads")
    assert changes == [True]


def test_server_locks_are_the_groups(redis_group: RedisGroup, started: list[Coordinator]) -> None:
    a = start(started, member(redis_group, "a"))
    b = start(started, member(redis_group, "b"))
    occupied: set[str] = set()
    here = ServerLocks(coordinator=a, occupied=occupied.__contains__, wait_s=0.5)
    there = ServerLocks(coordinator=b, occupied=occupied.__contains__, wait_s=0.5)
    with here.held(["s1"]) as elsewhere:
        assert elsewhere == frozenset()
        assert here.keep("s1")  # an operation runs: the lock stays after deciding
    assert here.owned() == 1
    with pytest.raises(ServerBusyElsewhere), there.held(["s1"]):  # nothing in the journal yet
        pass
    occupied.add("s1")  # a's operation is in the journal: b decides (busy) without it
    with there.held(["s1", "s2"]) as elsewhere:
        assert elsewhere == frozenset({"s1"})
        assert not there.keep("s1")
    assert not there.take("s1")
    here.drop("s1")
    assert here.owned() == 0
    assert there.take("s1")
    assert not there.take("s1")  # already its own
    there.drop("s1")


def test_a_lock_the_backend_lost_is_let_go_with_one_warning(
    redis_group: RedisGroup, started: list[Coordinator], caplog: pytest.LogCaptureFixture
) -> None:
    """A Redis restarted empty forgets every lock: releasing one then is no error of
    the daemon's. It says so once, by the lock's name, and tooz's own error line (the
    lock's repr) does not reach the log."""
    a = start(started, member(redis_group, "a"))
    lock = a.lock("server:1")
    assert lock.acquire(False)
    for key in redis_group.namespaced_keys():  # what a restart without persistence does
        redis_group.client.delete(key)
    with capture_logs() as logs, caplog.at_level(logging.DEBUG, logger="tooz"):
        lock.release()
    assert [(e["event"], e["lock"]) for e in logs] == [("coordination.lock_lost", "server:1")]
    assert not [r for r in caplog.records if r.name.startswith("tooz")], caplog.records
    assert start(started, member(redis_group, "b")).lock("server:1").acquire(False)
