"""The pace of Nova write calls: a token bucket shared by every operation, with
a fake clock; every write of the cloud edge passes it, reads never do."""

from __future__ import annotations

import inspect
import threading
from collections import Counter
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any

import pytest

from nova_autopilot.cloud import Cloud, WriteLimiter
from nova_autopilot.errors import CloudUnavailable, TemporaryError


class FakeTime:
    """A clock that moves only when someone sleeps (or the test says so)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def limiter(rate: float, burst: int, time: FakeTime) -> WriteLimiter:
    return WriteLimiter(rate, burst, clock=time.clock, sleep=time.sleep)


def test_a_burst_goes_at_once_then_writes_are_paced_at_the_rate() -> None:
    time = FakeTime()
    writes = limiter(2.0, 3, time)
    waits = [writes.acquire("resize", max_wait_s=60) for _ in range(6)]
    assert waits == [0.0, 0.0, 0.0, 0.5, 0.5, 0.5]
    assert time.now == pytest.approx(1001.5)


def test_a_quiet_spell_gives_back_the_burst_but_never_more() -> None:
    time = FakeTime()
    writes = limiter(2.0, 3, time)
    for _ in range(3):
        writes.acquire("resize", max_wait_s=60)
    time.now += 3600  # an hour without writes: still only the burst at once
    waits = [writes.acquire("confirm_resize", max_wait_s=60) for _ in range(5)]
    assert waits == [0.0, 0.0, 0.0, 0.5, 0.5]


def test_a_slow_caller_does_not_wait_at_all() -> None:
    time = FakeTime()
    writes = limiter(1.0, 1, time)
    for _ in range(4):
        assert writes.acquire("lock", max_wait_s=60) == 0.0
        time.now += 1.0
    assert time.slept == []


def test_a_write_that_would_wait_too_long_fails_as_temporary_and_reserves_nothing() -> None:
    time = FakeTime()
    writes = limiter(0.1, 1, time)  # one write every 10 s
    writes.acquire("resize", max_wait_s=60)
    with pytest.raises(CloudUnavailable) as caught:
        writes.acquire("rescue", max_wait_s=5)
    assert isinstance(caught.value, TemporaryError)
    assert "would wait 10.0 s, more than the 5 s allowed" in str(caught.value)
    # The refused call took no turn: the next caller's turn is still 10 s after the first.
    assert writes.acquire("rescue", max_wait_s=60) == pytest.approx(10.0)


def test_concurrent_callers_each_get_their_own_turn() -> None:
    time = FakeTime()
    lock = threading.Lock()
    waits: list[float] = []
    writes = WriteLimiter(4.0, 2, clock=time.clock, sleep=lambda s: None)  # the clock stands still

    def caller() -> None:
        for _ in range(50):
            wait = writes.acquire("resize", max_wait_s=1000)
            with lock:
                waits.append(wait)

    threads = [threading.Thread(target=caller) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(waits) == 400
    # Two turns at once, then one every 0.25 s: no turn was handed out twice.
    expected = [0.0, 0.0] + [0.25 * k for k in range(1, 399)]
    assert sorted(waits) == pytest.approx(expected)
    assert writes.calls == 400


def test_bad_rates_and_bursts_are_refused() -> None:
    with pytest.raises(ValueError, match="rate must be positive"):
        WriteLimiter(0, 1)
    with pytest.raises(ValueError, match="burst must be at least 1"):
        WriteLimiter(1.0, 0)


# -- the cloud edge: every write passes the limiter, no read does ------------------

WRITES = {
    "resize": ("s-1", "f-1"),
    "confirm_resize": ("s-1",),
    "revert_resize": ("s-1",),
    "rescue": ("s-1",),
    "unrescue": ("s-1",),
    "lock": ("s-1",),
    "unlock": ("s-1",),
    "set_compute_quota": ("p-1",),
    "create_server": (),
    "reboot": ("s-1",),
    "delete_server": ("s-1",),
}
WRITE_KWARGS: dict[str, dict[str, Any]] = {
    "create_server": {"name": "n", "flavor_id": "f-1", "image_id": "i-1", "network": "none"},
    "rescue": {"admin_pass": "pw"},
    "lock": {"reason": "op-1"},
    "set_compute_quota": {"cores": 4, "ram": 4096},
}
READS = {
    "server": ("s-1",),
    "find_server": ({"id": "s-1"},),
    "changed_since": (None,),
    "servers_in": (("ERROR",),),
    "flavor": ("f-1",),
    "console_output": ("s-1",),
    "actions": ("s-1",),
    "ping": (),
    "compute_quota": ("p-1",),
    "flavors": (),
    "images": (),
    "image": ("i-1",),
    "networks": (),
    "servers_named": ("demo-",),
}
NOT_CALLS = {"check", "close", "connect", "from_endpoint"}


class _Anything:
    """An openstacksdk resource stand-in: every attribute exists."""

    def __getattr__(self, name: str) -> Any:
        return 1 if name in ("cores", "ram") else None

    def to_dict(self, computed: bool = True) -> dict[str, Any]:
        return {}


class FakeCompute:
    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            if name in ("servers", "server_actions", "images", "networks"):
                return []
            if name == "flavors":
                return [SimpleNamespace(id="f-1", name="small", vcpus=1, ram=512, disk=1)]
            if name == "get_server_console_output":
                return {"output": ""}
            return _Anything()

        return call


class FakeConnection:
    def __init__(self) -> None:
        self.compute = FakeCompute()
        self.network = FakeCompute()
        self.session = object()


class CountingLimiter(WriteLimiter):
    def __init__(self) -> None:
        super().__init__(1000.0, 1000)
        self.seen: list[str] = []

    def acquire(self, call: str, *, max_wait_s: float) -> float:
        self.seen.append(call)
        return super().acquire(call, max_wait_s=max_wait_s)


def test_every_public_call_of_the_cloud_edge_is_known_as_a_read_or_a_write() -> None:
    public = {name for name, _ in inspect.getmembers(Cloud, callable) if not name.startswith("_")}
    assert public - NOT_CALLS == set(WRITES) | set(READS)


@pytest.mark.parametrize("name", sorted(WRITES))
def test_every_write_waits_for_its_turn(name: str) -> None:
    writes = CountingLimiter()
    cloud = Cloud(FakeConnection(), writes=writes)  # type: ignore[arg-type]
    getattr(cloud, name)(*WRITES[name], **WRITE_KWARGS.get(name, {}))
    assert len(writes.seen) == 1


@pytest.mark.parametrize("name", sorted(READS))
def test_reads_are_not_limited(name: str) -> None:
    writes = CountingLimiter()
    cloud = Cloud(FakeConnection(), writes=writes)  # type: ignore[arg-type]
    args = tuple(datetime.now(timezone.utc) if a is None else a for a in READS[name])
    getattr(cloud, name)(*args)
    assert writes.seen == []
