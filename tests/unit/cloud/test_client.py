"""The cloud edge and the pace of its writes: every write call waits for its
turn under the write limiter, no read ever does."""

from __future__ import annotations

import inspect
from collections import Counter
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any

import pytest

from nova_autopilot.cloud.client import Cloud
from nova_autopilot.cloud.pacing import WriteLimiter

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
            if name == "get_endpoint_data":
                return None  # no microversion: openstacksdk's default
            if name == "get":  # a raw list call
                return SimpleNamespace(status_code=200, json=lambda: {"servers": []})
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


def test_a_name_several_servers_share_is_ambiguous_not_a_plain_rejection() -> None:
    from openstack import exceptions as sdk_exc

    from nova_autopilot.cloud.client import _translate
    from nova_autopilot.errors import Ambiguous, NotFound, Rejected

    duplicate = sdk_exc.DuplicateResource("More than one Server exists with the name 'web-1'.")
    assert isinstance(_translate("find_server", duplicate), Ambiguous)
    assert isinstance(_translate("find_server", duplicate), Rejected)  # still a 4xx-like refusal
    missing = sdk_exc.NotFoundException("No Server found for web-9")
    assert isinstance(_translate("find_server", missing), NotFound)
