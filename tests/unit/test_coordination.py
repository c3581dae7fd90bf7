"""The coordination module without a backend (one daemon alone), and what it hands
to tooz; the group's behaviour on the real Redis is in tests/integration."""

from __future__ import annotations

import threading
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest

from nova_autopilot import settings
from nova_autopilot.coordination import Coordinator, _ToozLock, backend_url
from nova_autopilot.daemon.wiring import Daemon
from nova_autopilot.engine.locks import ServerLocks
from nova_autopilot.errors import AutopilotError


def test_alone_it_leads_its_group_of_one() -> None:
    alone = Coordinator(member_id="me")
    alone.start()
    assert alone.single
    assert alone.is_leader()
    assert alone.members() == {"me"}
    alone.stop()


def test_alone_its_locks_exclude_the_other_threads() -> None:
    alone = Coordinator()
    lock = alone.lock("server:1")
    assert lock.acquire(False)
    other: list[bool] = []
    thread = threading.Thread(target=lambda: other.append(alone.lock("server:1").acquire(0.05)))
    thread.start()
    thread.join()
    assert other == [False]
    assert alone.lock("server:2").acquire(False)
    lock.release()
    assert alone.lock("server:1").acquire(False)


def test_the_member_id_defaults_to_host_and_pid() -> None:
    import os
    import socket

    assert Coordinator().member_id == f"{socket.gethostname()}-{os.getpid()}"


def test_the_backend_url_gets_the_timeouts_and_on_redis_the_group_as_namespace() -> None:
    """On Redis also the socket's timeouts (redis-py waits 30 s for an answer)."""
    url = backend_url("redis://127.0.0.1:6379?db=2", group="cloud-a", lock_timeout=20)
    options = dict(parse_qsl(urlsplit(url).query))
    assert options == {
        "db": "2",
        "lock_timeout": "20",
        "membership_timeout": "20",
        "namespace": "cloud-a",
        "socket_connect_timeout": "2",
        "socket_timeout": "5",
    }
    mine = backend_url("redis://h:6379?socket_timeout=30", group="g", lock_timeout=20)
    assert dict(parse_qsl(urlsplit(mine).query))["socket_timeout"] == "30"  # the URL's own
    etcd = backend_url("etcd3+http://10.0.0.1:2379?lock_timeout=5", group="g", lock_timeout=20)
    assert dict(parse_qsl(urlsplit(etcd).query)) == {
        "lock_timeout": "5",
        "membership_timeout": "20",
    }


def test_single_server_locks_are_the_process_own() -> None:
    locks = ServerLocks(coordinator=Coordinator())
    with locks.held(["s1", None]) as elsewhere:
        assert elsewhere == frozenset()
        assert locks.keep("s1")
    assert locks.take("s1")
    locks.drop("s1")
    assert locks.owned() == 0


def test_a_coordinated_daemon_refuses_a_sqlite_journal(tmp_path: Path) -> None:
    policies = tmp_path / "policies.yaml"
    policies.write_text("policies: []\n")
    conf = settings.load(
        config_files=[],
        config_dirs=[str(tmp_path)],
        overrides={
            "DEFAULT": {"state_dir": str(tmp_path)},
            "policies": {"path": str(policies)},
            "requests": {"require_signatures": False},
            "coordination": {"backend_url": "redis://127.0.0.1:6379"},
        },
    )
    with pytest.raises(AutopilotError, match="PostgreSQL or MariaDB"):
        Daemon.from_conf(conf)


class _ExpiringLock:
    """A Redis or etcd lock: refreshed by its heartbeat, which says whether it is held."""

    def __init__(self, held: bool) -> None:
        self.held = held

    def heartbeat(self) -> bool:
        return self.held


class _SessionLock:
    """A ZooKeeper lock: no heartbeat of its own, held while the session lives."""

    def __init__(self, owner: bool) -> None:
        self.owner = owner

    def is_still_owner(self) -> bool:
        return self.owner


class _BrokenLock:
    def heartbeat(self) -> bool:
        raise RuntimeError("backend gone")


@pytest.mark.parametrize(
    ("lock", "held"),
    [
        (_ExpiringLock(True), True),
        (_ExpiringLock(False), False),
        (_SessionLock(True), True),
        (_SessionLock(False), False),
        (_BrokenLock(), False),
    ],
)
def test_a_lock_is_refreshed_the_way_its_driver_keeps_locks(lock: object, held: bool) -> None:
    assert _ToozLock(lock, RuntimeError).refresh() is held
