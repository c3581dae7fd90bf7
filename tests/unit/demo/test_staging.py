"""``nova-autopilot demo --cloud``: its options, how they are checked against a cloud,
and the cloud stage's servers (booted, named, metadata, removed). The sandbox stage
runs in test_cli's demo test; the real cloud in tests/e2e/test_demo_cloud.py."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from nova_autopilot.cli import main
from nova_autopilot.cloud import FlavorInfo, ImageInfo, NetworkInfo, ServerState
from nova_autopilot.demo import flows as demo
from nova_autopilot.demo.staging import (
    NAME_PREFIX,
    CloudStage,
    SandboxStage,
    StageError,
    UsageError,
    choose,
    parse_metadata,
)
from nova_autopilot.errors import CloudUnavailable, NotFound, Rejected

CIRROS = ImageInfo("img-c", "cirros-0.6.2", "ACTIVE")
UBUNTU = ImageInfo("img-u", "ubuntu-24.04", "ACTIVE", min_disk=10, min_ram=1024)
TINY = FlavorInfo("f1", "m1.tiny", 1, 512, 1)
SMALL = FlavorInfo("f2", "m1.small", 1, 2048, 20)
MEDIUM = FlavorInfo("f3", "m1.medium", 2, 4096, 40)
NO_DISK = FlavorInfo("f4", "m1.nodisk", 4, 8192, 0)


@dataclass
class FakeDiscovery:
    listed_images: list[ImageInfo] = field(default_factory=lambda: [CIRROS, UBUNTU])
    listed_flavors: list[FlavorInfo] = field(default_factory=lambda: [MEDIUM, TINY, SMALL])
    listed_networks: list[NetworkInfo] | None = field(
        default_factory=lambda: [NetworkInfo("n1", "private"), NetworkInfo("n0", "public", True)]
    )

    def images(self) -> list[ImageInfo]:
        return self.listed_images

    def image(self, ref: str) -> ImageInfo:
        for image in self.listed_images:
            if ref in (image.id, image.name):
                return image
        raise NotFound(f"image {ref} not found", status=404, call="find_image")

    def flavors(self) -> list[FlavorInfo]:
        return self.listed_flavors

    def networks(self) -> list[NetworkInfo] | None:
        return self.listed_networks


# -- the command line -----------------------------------------------------------------


def test_cloud_without_a_broker_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--cloud", "prod"]) == 2
    err = capsys.readouterr().err
    assert "--cloud needs --broker" in err
    assert "not on the in-process broker" in err


def test_cloud_options_without_cloud_are_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["demo", "--image", "cirros", "--resize-flavor", "m1.large"]) == 2
    assert "--image, --resize-flavor: only with --cloud" in capsys.readouterr().err


def test_an_unknown_cloud_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text("clouds:\n  other:\n    auth_type: none\n")
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(clouds))
    assert main(["demo", "--cloud", "nowhere", "--broker", "rabbit://127.0.0.1:1/x"]) == 2
    assert "nowhere" in capsys.readouterr().err


def test_bad_fault_metadata_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["demo", "--cloud", "c", "--broker", "rabbit://h/v", "--fail-reboot-metadata", "x"])
    assert code == 2
    assert "--fail-reboot-metadata 'x': expected KEY=VALUE" in capsys.readouterr().err


def test_metadata_is_one_key_and_everything_after_the_first_equals_sign() -> None:
    assert parse_metadata("--m", "novabox:fail=reboot,power_on") == {
        "novabox:fail": "reboot,power_on"
    }
    assert parse_metadata("--m", "k=a=b") == {"k": "a=b"}
    with pytest.raises(UsageError, match="expected KEY=VALUE"):
        parse_metadata("--m", "=value")
    with pytest.raises(UsageError, match="255"):
        parse_metadata("--m", "k=" + "v" * 256)


def test_the_options_pick_the_stage() -> None:
    assert isinstance(demo.make_stage(broker=None, cloud=None), SandboxStage)
    stage = demo.make_stage(broker="rabbit://h/v", cloud=demo.CloudOptions("prod", image="x"))
    assert isinstance(stage, CloudStage)
    assert stage.options["image"] == "x"
    with pytest.raises(UsageError, match="--cloud needs --broker"):
        demo.make_stage(broker=None, cloud=demo.CloudOptions("prod"))


# -- choosing the image, the flavors and the network ------------------------------------


def test_discovery_picks_cirros_its_smallest_flavor_the_next_one_and_the_only_network() -> None:
    chosen = choose(FakeDiscovery())
    assert chosen.image == CIRROS
    assert (chosen.flavor, chosen.resize_flavor) == (TINY, SMALL)
    assert (chosen.network, chosen.network_label) == ("n1", "private")
    assert chosen.describe() == "image cirros-0.6.2, flavor m1.tiny -> m1.small, network private"


def test_the_flavors_fit_the_image() -> None:
    chosen = choose(FakeDiscovery(), image="ubuntu-24.04")
    assert (chosen.flavor, chosen.resize_flavor) == (SMALL, MEDIUM)
    with pytest.raises(UsageError, match=r"too small for image ubuntu-24\.04"):
        choose(FakeDiscovery(), image="img-u", flavor="m1.tiny")


def test_an_only_image_is_taken_and_many_without_cirros_must_be_named() -> None:
    assert choose(FakeDiscovery(listed_images=[UBUNTU])).image == UBUNTU
    other = ImageInfo("img-d", "debian-12", "ACTIVE")
    with pytest.raises(UsageError, match=r"2 images: choose one with --image \(ubuntu-24.04, deb"):
        choose(FakeDiscovery(listed_images=[UBUNTU, other]))
    with pytest.raises(UsageError, match="no active image"):
        choose(FakeDiscovery(listed_images=[ImageInfo("q", "queued", "QUEUED")]))


def test_a_named_image_must_exist_and_be_active() -> None:
    with pytest.raises(UsageError, match="--image 'fedora': the cloud has no such image"):
        choose(FakeDiscovery(), image="fedora")
    queued = ImageInfo("q", "queued", "QUEUED")
    with pytest.raises(UsageError, match="is QUEUED, not ACTIVE"):
        choose(FakeDiscovery(listed_images=[queued]), image="q")


def test_named_flavors_are_found_by_name_or_id_and_checked_for_the_resize() -> None:
    chosen = choose(FakeDiscovery(), flavor="f2", resize_flavor="m1.medium")
    assert (chosen.flavor, chosen.resize_flavor) == (SMALL, MEDIUM)
    with pytest.raises(UsageError, match=r"--flavor 'm1.huge': .*no such flavor.*m1.tiny"):
        choose(FakeDiscovery(), flavor="m1.huge")
    with pytest.raises(UsageError, match="the flavor the servers boot with"):
        choose(FakeDiscovery(), flavor="m1.small", resize_flavor="m1.small")
    with pytest.raises(UsageError, match=r"disk \(1 GB\) is smaller than m1.small's \(20 GB\)"):
        choose(FakeDiscovery(), flavor="m1.small", resize_flavor="m1.tiny")
    flavors = [TINY, NO_DISK]
    with pytest.raises(UsageError, match="disk 0"):
        choose(FakeDiscovery(listed_flavors=flavors), resize_flavor="m1.nodisk")
    with pytest.raises(UsageError, match=r"no flavor to resize m1\.tiny to: give --resize-flavor"):
        choose(FakeDiscovery(listed_flavors=flavors))
    with pytest.raises(UsageError, match="no flavor"):
        choose(FakeDiscovery(listed_flavors=[]))


def test_the_network_is_named_none_auto_or_discovered() -> None:
    assert choose(FakeDiscovery(), network="none").network == "none"
    assert choose(FakeDiscovery(), network="auto").network == "auto"
    assert choose(FakeDiscovery(), network="n1").network == "n1"
    no_service = FakeDiscovery(listed_networks=None)
    assert choose(no_service).network == "none"
    assert "no network service" in choose(no_service).network_label
    assert choose(FakeDiscovery(listed_networks=[])).network == "none"
    with pytest.raises(UsageError, match="no network service; use --network none"):
        choose(no_service, network="private")
    with pytest.raises(UsageError, match="--network 'lan': the cloud has no such network"):
        choose(FakeDiscovery(), network="lan")
    two = FakeDiscovery(listed_networks=[NetworkInfo("a", "lan"), NetworkInfo("b", "dmz")])
    with pytest.raises(UsageError, match=r"2 networks: choose one with --network \(lan, dmz\)"):
        choose(two)


# -- the cloud stage --------------------------------------------------------------------


@dataclass
class FakeCloud(FakeDiscovery):
    """Servers that boot (or fail, by metadata) and go when deleted, on the next read."""

    servers: dict[str, dict[str, Any]] = field(default_factory=dict)
    created: list[dict[str, Any]] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    undeletable: set[str] = field(default_factory=set)
    closed: bool = False
    _ids: Any = field(default_factory=lambda: (f"id-{n}" for n in itertools.count(1)))

    def check(self) -> None:
        return None

    def create_server(self, **kwargs: Any) -> str:
        server_id: str = next(self._ids)
        self.created.append(kwargs)
        failed = kwargs["metadata"].get("fail") == "spawn"
        self.servers[server_id] = {"name": kwargs["name"], "status": "BUILD", "failed": failed}
        return server_id

    def server(self, server_id: str) -> ServerState:
        server = self.servers.get(server_id)
        if server is None:
            raise NotFound("gone", status=404, call="get_server")
        if server["status"] == "BUILD":
            server["status"] = "ERROR" if server["failed"] else "ACTIVE"
            return ServerState(server_id, server["name"], "BUILD", "building", "spawning",
                               None, None, "m1.tiny")  # fmt: skip
        if server["status"] == "DELETING" and server_id not in self.undeletable:
            del self.servers[server_id]
            return ServerState(server_id, server["name"], "DELETED", "deleted", None,
                               None, "2026-11-25T00:00:00Z", "m1.tiny")  # fmt: skip
        launched = None if server["failed"] else "2026-11-25T00:00:00Z"
        status = server["status"] if server["status"] != "DELETING" else "ACTIVE"
        return ServerState(server_id, server["name"], status, status.lower(), None, None,
                           launched, "m1.tiny")  # fmt: skip

    def servers_named(self, prefix: str) -> list[ServerState]:
        return [self.server(i) for i, s in self.servers.items() if s["name"].startswith(prefix)]

    def delete_server(self, server_id: str) -> None:
        self.deleted.append(server_id)
        if server_id in self.servers:
            self.servers[server_id]["status"] = "DELETING"

    def reboot(self, server_id: str, *, hard: bool = True) -> None:
        self.servers[server_id]["status"] = "ERROR"

    def close(self) -> None:
        self.closed = True


def cloud_stage(fake: FakeCloud, **options: Any) -> CloudStage:
    stage = CloudStage(
        cloud_name="prod",
        broker="rabbit://h/v",
        options=options,
        connect=lambda name, writes: fake,  # type: ignore[arg-type,return-value]
        poll_s=0.0,
        boot_timeout_s=5.0,
        delete_timeout_s=1.0,
    )
    stage.start()
    return stage


def test_without_fault_metadata_the_failed_boots_cannot_be_staged() -> None:
    stage = cloud_stage(FakeCloud())
    assert stage.cannot("healthy") is None
    assert stage.cannot("unhealthy") is None
    assert "--fail-reboot-metadata" in (stage.cannot("failing-reboot") or "")
    assert "--fail-spawn-metadata" in (stage.cannot("failing-spawn") or "")
    with pytest.raises(StageError, match="db-1: a real cloud cannot be told"):
        stage.boot({"db-1": "failing-reboot"})
    assert stage.where == (
        "cloud 'prod' (image cirros-0.6.2, flavor m1.tiny -> m1.small, network private)"
    )
    assert stage.resize_flavor == "m1.small"


def test_the_stage_boots_named_tagged_servers_and_removes_them_all() -> None:
    fake = FakeCloud()
    stage = cloud_stage(fake, fail_reboot={"fail": "reboot"}, fail_spawn={"fail": "spawn"})
    assert stage.cannot("failing-reboot") is None
    staged = stage.boot(
        {"web-1": "healthy", "web-2": "unhealthy", "db-1": "failing-reboot", "b-1": "failing-spawn"}
    )
    names = [c["name"] for c in fake.created]
    assert names == [f"{stage.prefix}{n}" for n in ("web-1", "web-2", "db-1", "b-1")]
    assert all(name.startswith(NAME_PREFIX) for name in names)
    assert {c["image_id"] for c in fake.created} == {"img-c"}
    assert {c["flavor_id"] for c in fake.created} == {"f1"}
    assert {c["network"] for c in fake.created} == {"n1"}
    assert [c["metadata"] for c in fake.created] == [
        {"nova-autopilot-demo": stage.run},
        {"nova-autopilot-demo": stage.run},
        {"nova-autopilot-demo": stage.run, "fail": "reboot"},
        {"nova-autopilot-demo": stage.run, "fail": "spawn"},
    ]
    assert dict(staged["web-2"].parameters) == {"check": "service"}
    assert dict(staged["web-1"].parameters) == {}
    assert "port 9" in staged["web-2"].note
    stage.break_boot(staged["db-1"])
    # A server whose creation was cut short is found by its name and removed too.
    fake.servers["id-99"] = {"name": f"{stage.prefix}lost", "status": "ACTIVE", "failed": False}
    fake.servers["id-other"] = {"name": "someone-else", "status": "ACTIVE", "failed": False}
    assert stage.close() == []
    assert sorted(fake.deleted) == ["id-1", "id-2", "id-3", "id-4", "id-99"]
    assert list(fake.servers) == ["id-other"]
    assert fake.closed


def test_what_cannot_be_removed_is_reported() -> None:
    fake = FakeCloud()
    stage = cloud_stage(fake)
    stage.boot({"web-1": "healthy"})
    fake.undeletable.add("id-1")
    left = stage.close()
    assert left == [f"{stage.prefix}web-1 (id-1) is still there"]


def test_a_server_that_does_not_boot_stops_the_staging() -> None:
    class Broken(FakeCloud):
        def create_server(self, **kwargs: Any) -> str:
            server_id = super().create_server(**kwargs)
            self.servers[server_id]["failed"] = True  # it goes to ERROR
            return server_id

    fake = Broken()
    stage = cloud_stage(fake)
    with pytest.raises(StageError, match="web-1 went to ERROR"):
        stage.boot({"web-1": "healthy"})
    assert stage.close() == []
    assert fake.deleted == ["id-1"]


def test_a_cloud_that_is_unknown_or_unreachable_is_reported() -> None:
    def unknown(name: str, writes: Any) -> Any:
        raise Rejected(f"cannot configure cloud {name!r}: not found", call="connect")

    stage = CloudStage(cloud_name="x", broker="rabbit://h/v", options={}, connect=unknown)
    with pytest.raises(UsageError, match="--cloud: cannot configure cloud 'x'"):
        stage.start()
    assert stage.close() == []

    class Down(FakeCloud):
        def check(self) -> None:
            raise CloudUnavailable("connection refused", call="discover")

    down = CloudStage(
        cloud_name="x", broker="rabbit://h/v", options={}, connect=lambda name, writes: Down()
    )  # type: ignore[arg-type,return-value]
    with pytest.raises(CloudUnavailable):
        down.start()


def test_the_daemon_listens_on_the_clouds_broker_in_queues_of_its_own() -> None:
    from nova_autopilot.bus.connection import register_oslo_options
    from nova_autopilot.bus.topology import notification_queue_names
    from nova_autopilot.settings import build_conf

    stage = cloud_stage(FakeCloud())
    conf = build_conf()
    conf(args=[], default_config_files=[])
    register_oslo_options(conf)
    stage.configure(conf)
    assert conf.transport_url == "rabbit://h/v"
    assert conf.requests.broker_url.startswith("kombu+memory://")
    pool = f"{NAME_PREFIX}{stage.run}"
    assert notification_queue_names(conf) == (
        pool,
        f"{pool}.retry.5s",
        f"{pool}.retry.30s",
        f"{pool}.retry.120s",
        f"{pool}.dead",
    )


# -- the verdict -------------------------------------------------------------------------


def verdict(
    outcomes: Mapping[str, tuple[str, str | None]], skipped: Mapping[str, str]
) -> tuple[int, str]:
    lines: list[str] = []
    code = demo._verdict(demo.Show(lines.append), dict(outcomes), skipped)
    return code, "\n".join(lines)


def test_skipped_flows_do_not_fail_the_demo_but_one_flow_must_run() -> None:
    ran = {"web-1": ("resize", "confirmed"), "web-2": ("resize", "reverted")}
    skipped = dict.fromkeys(("db-1 rescue", "db-1 unrescue", "build-1"), "cannot")
    code, text = verdict(ran, skipped)
    assert code == 0
    assert "db-1 rescue      skipped: cannot" in text
    assert "every flow ended as expected (3 skipped)" in text
    code, text = verdict({}, dict.fromkeys(demo.FLOWS, "cannot"))
    assert code == 1
    assert "no flow could be staged here" in text
    assert verdict({**ran, "web-2": ("resize", "confirmed")}, skipped)[0] == 1
    assert verdict(ran, {})[0] == 1  # the flows that should have run have no outcome


def test_without_a_journal_there_is_no_history_to_print(tmp_path: Path) -> None:
    lines: list[str] = []
    demo._history(demo.Show(lines.append), f"sqlite:///{tmp_path / 'journal.sqlite'}")
    assert lines == []
