"""Staging the demo's conditions: its servers, and how each of them fails.

The demo plays the same flows wherever it runs; what differs is how each
flow's condition is brought about. A :class:`Stage` boots the demo's
servers, each of one kind:

``healthy``         it boots and stays well: its resize is confirmed;
``unhealthy``       its health gate fails after a resize: the resize is reverted;
``failing-reboot``  it boots, then its reboots fail: Nova puts it in ERROR after
                    it had launched, so it is rescued (and later unrescued);
``failing-spawn``   its first boot fails: ERROR, never launched, left alone.

:class:`SandboxStage` stages every kind in the embedded Nova through its
fault interface. :class:`CloudStage` stages, on a real cloud, what can be
staged honestly: a healthy server is any server; an unhealthy one is a
server whose resize request asks for a health gate the demo's guests cannot
pass (a TCP service on a port where nothing listens, see
``seed/demo-cloud-policies.yaml``); a failed boot exists only where the
cloud's compute driver can be asked for one through server metadata (a test
cloud with a fault-injecting driver, such as ``scripts/novabox``). A kind a
stage cannot bring about is refused with the reason (:meth:`Stage.cannot`),
and the demo skips its flow.
"""

from __future__ import annotations

import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Literal, Protocol

from nova_autopilot.cloud import (
    Cloud,
    FlavorInfo,
    ImageInfo,
    NetworkInfo,
    ServerState,
    WriteLimiter,
)
from nova_autopilot.errors import CloudError, NotFound, Rejected

Kind = Literal["healthy", "unhealthy", "failing-reboot", "failing-spawn"]
KINDS: tuple[Kind, ...] = ("healthy", "unhealthy", "failing-reboot", "failing-spawn")

#: The image the embedded Nova boots (and Nova's own test image service offers).
SANDBOX_IMAGE = "155d900f-4e14-4e4c-a73d-069cbf4541e6"
#: Every server the demo boots on a real cloud has a name that starts so.
NAME_PREFIX = "nova-autopilot-demo-"
#: The request parameter that selects the service check (demo-cloud-policies.yaml).
SERVICE_CHECK = {"check": "service"}
SERVICE_PORT = 9


class UsageError(ValueError):
    """The demo's options cannot work on this cloud; the message says what to give."""


class StageError(RuntimeError):
    """Staging went wrong at run time: a server did not boot, or did not fail."""


def seed_text(name: str) -> str:
    return resources.files("nova_autopilot.demo").joinpath("seed", name).read_text("utf-8")


@dataclass(frozen=True)
class Staged:
    """A server the stage booted for a flow."""

    name: str
    """The flow's name for it (``web-1``); on a cloud its real name is longer."""
    id: str
    kind: Kind
    note: str
    """What was staged, in words, for the demo's output."""
    parameters: Mapping[str, str] = field(default_factory=dict)
    """Request parameters its resize request must carry."""


class Stage(ABC):
    """Where the demo's servers live and how their conditions are brought about."""

    #: Where the demo runs, for its output.
    where: str
    #: The policy file the demo's daemon runs with (in ``nova_autopilot/demo/seed``).
    policy_file: str
    #: The flavor the resize flows ask for.
    resize_flavor: str
    #: How long one flow may take before the demo gives up on it.
    step_timeout_s: float
    #: True when the daemon's notification queues live on a broker shared with
    #: others, so the demo gives them names of its own and deletes them at the end.
    shares_the_broker: bool = False

    @abstractmethod
    def cannot(self, kind: Kind) -> str | None:
        """Why a server of this kind cannot be staged here (None: it can)."""

    @abstractmethod
    def start(self) -> None:
        """Bring up what the stage needs (the embedded Nova, a connection)."""

    @abstractmethod
    def configure(self, conf: Any) -> None:
        """Point the daemon's configuration at the stage's brokers."""

    @abstractmethod
    def daemon_cloud(self, *, writes: WriteLimiter) -> Cloud:
        """A Cloud of the daemon's own, its writes paced by ``writes`` (the daemon closes it)."""

    @abstractmethod
    def boot(self, wanted: Mapping[str, Kind]) -> dict[str, Staged]:
        """Boot one server per name, all at once; return when each is ACTIVE
        (ERROR for ``failing-spawn``). Raises :class:`StageError`."""

    @abstractmethod
    def break_boot(self, server: Staged) -> None:
        """Reboot a ``failing-reboot`` server: its boot fails, Nova says ERROR."""

    @abstractmethod
    def close(self) -> list[str]:
        """Remove everything the stage created; what could not be removed."""


# -- the embedded Nova -----------------------------------------------------------------


class SandboxStage(Stage):
    """The embedded sandbox Nova; its fault interface stages every kind."""

    step_timeout_s = 30.0
    policy_file = "demo-policies.yaml"

    def __init__(self, *, broker: str | None) -> None:
        self.transport = broker or f"kombu+memory:///{uuid.uuid4().hex}"
        self.sandbox: Any = None
        self.cloud: Cloud | None = None
        self.resize_flavor = "m1.large"
        self.where = "the embedded Nova"

    def cannot(self, kind: Kind) -> str | None:
        return None

    def start(self) -> None:
        from nova_autopilot.sandbox import Sandbox

        self.sandbox = Sandbox(transport_url=self.transport).start()
        self.sandbox.add_flavor("m1.small", vcpus=1, ram=512)
        self.sandbox.add_flavor("m1.large", vcpus=2, ram=2048)
        self.cloud = Cloud.from_endpoint(self.sandbox.url)
        self.where = f"the embedded Nova at {self.sandbox.url}"

    def configure(self, conf: Any) -> None:
        conf.set_override("transport_url", self.transport)

    def daemon_cloud(self, *, writes: WriteLimiter) -> Cloud:
        return Cloud.from_endpoint(self.sandbox.url, writes=writes)

    def boot(self, wanted: Mapping[str, Kind]) -> dict[str, Staged]:
        from nova_autopilot.sandbox.faults import ServerFaults

        assert self.cloud is not None
        staged = {}
        for name, kind in wanted.items():
            if kind == "failing-spawn":
                # Through the API, so that Nova's notifications tell the daemon.
                server_id = self.cloud.create_server(
                    name=f"fail-spawn-{name}",
                    flavor_id=self.sandbox.flavor("m1.small").id,
                    image_id=SANDBOX_IMAGE,
                    network="none",
                )
                self.sandbox.wait_for_status(server_id, "ERROR", timeout=self.step_timeout_s)
                staged[name] = Staged(name, server_id, kind, "its first boot fails")
                continue
            server = self.sandbox.add_server(name, "m1.small")
            if kind == "unhealthy":
                self.sandbox.faults.add_server(server.id, ServerFaults(console="panic"))
                note = "its console will show a kernel panic"
            elif kind == "failing-reboot":
                note = "its next reboot will fail"
            else:
                note = "a healthy guest"
            staged[name] = Staged(name, server.id, kind, note)
        return staged

    def break_boot(self, server: Staged) -> None:
        assert self.cloud is not None
        self.sandbox.fail(server.id, "reboot")
        self.cloud.reboot(server.id, hard=True)

    def close(self) -> list[str]:
        if self.cloud is not None:
            self.cloud.close()
        if self.sandbox is not None:
            self.sandbox.stop()
        return []


# -- a real cloud ------------------------------------------------------------------------


class Discovery(Protocol):
    """What choosing the demo's image, flavors and network asks of a cloud."""

    def images(self) -> list[ImageInfo]: ...
    def image(self, ref: str) -> ImageInfo: ...
    def flavors(self) -> list[FlavorInfo]: ...
    def networks(self) -> list[NetworkInfo] | None: ...


@dataclass(frozen=True)
class CloudChoices:
    """What the demo boots on a real cloud, checked against it."""

    image: ImageInfo
    flavor: FlavorInfo
    resize_flavor: FlavorInfo
    network: str
    """A network id, ``none`` or ``auto`` (Nova's own choice)."""
    network_label: str
    fail_reboot: Mapping[str, str] = field(default_factory=dict)
    fail_spawn: Mapping[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        return (
            f"image {self.image.name or self.image.id}, flavor {self.flavor.name} -> "
            f"{self.resize_flavor.name}, network {self.network_label}"
        )


def parse_metadata(option: str, text: str) -> dict[str, str]:
    """``KEY=VALUE`` as one server metadata item (the value may hold ``=`` and ``,``)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise UsageError(f"{option} {text!r}: expected KEY=VALUE, e.g. novabox:fail=reboot")
    if len(key) > 255 or len(value) > 255:
        raise UsageError(f"{option} {text!r}: Nova allows at most 255 characters a side")
    return {key.strip(): value}


def _names(items: Sequence[Any], limit: int = 8) -> str:
    shown = ", ".join(str(getattr(i, "name", "") or i.id) for i in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _size(flavor: FlavorInfo) -> tuple[int, int, int]:
    return (flavor.ram or 0, flavor.vcpus or 0, flavor.disk or 0)


def _fits(flavor: FlavorInfo, image: ImageInfo) -> bool:
    disk_ok = not flavor.disk or flavor.disk >= image.min_disk  # disk 0: the image's size
    return disk_ok and (flavor.ram or 0) >= image.min_ram


def _grows_into(small: FlavorInfo, large: FlavorInfo) -> str | None:
    """Why Nova would refuse to resize from ``small`` to ``large`` (None: it accepts)."""
    if small.id == large.id:
        return "it is the flavor the servers boot with"
    if (small.disk or 0) and not large.disk:
        return "Nova does not resize to a flavor of disk 0 from one with a disk"
    if (large.disk or 0) < (small.disk or 0):
        return f"its disk ({large.disk} GB) is smaller than {small.name}'s ({small.disk} GB)"
    return None


def _choose_image(cloud: Discovery, ref: str | None) -> ImageInfo:
    if ref:
        try:
            image = cloud.image(ref)
        except NotFound:
            raise UsageError(f"--image {ref!r}: the cloud has no such image") from None
        if image.status and image.status.upper() != "ACTIVE":
            raise UsageError(f"--image {ref!r}: the image is {image.status}, not ACTIVE")
        return image
    active = [i for i in cloud.images() if (i.status or "ACTIVE").upper() == "ACTIVE"]
    if len(active) == 1:
        return active[0]
    cirros = sorted((i for i in active if "cirros" in i.name.lower()), key=lambda i: i.name)
    if cirros:
        return cirros[0]
    if not active:
        raise UsageError("the cloud has no active image: give one with --image")
    raise UsageError(
        f"the cloud has {len(active)} images: choose one with --image ({_names(active)})"
    )


def _find_flavor(option: str, ref: str, flavors: list[FlavorInfo]) -> FlavorInfo:
    found = next((f for f in flavors if f.id == ref), None) or next(
        (f for f in flavors if f.name == ref), None
    )
    if found is None:
        raise UsageError(
            f"{option} {ref!r}: the cloud has no such flavor (it has {_names(flavors)})"
        )
    return found


def _choose_flavors(
    cloud: Discovery, image: ImageInfo, flavor: str | None, resize_flavor: str | None
) -> tuple[FlavorInfo, FlavorInfo]:
    flavors = sorted(cloud.flavors(), key=_size)
    if not flavors:
        raise UsageError("the cloud offers no flavor to this project")
    if flavor:
        small = _find_flavor("--flavor", flavor, flavors)
        if not _fits(small, image):
            raise UsageError(
                f"--flavor {flavor!r} is too small for image {image.name or image.id} "
                f"(it needs {image.min_ram} MB of RAM and {image.min_disk} GB of disk)"
            )
    else:
        fitting = [f for f in flavors if _fits(f, image)]
        if not fitting:
            raise UsageError(f"no flavor fits image {image.name or image.id}: give --flavor")
        small = fitting[0]
    if resize_flavor:
        large = _find_flavor("--resize-flavor", resize_flavor, flavors)
        why = _grows_into(small, large)
        if why:
            raise UsageError(f"--resize-flavor {resize_flavor!r}: {why}")
        return small, large
    larger = [f for f in flavors if _size(f) > _size(small) and _grows_into(small, f) is None]
    if not larger:
        raise UsageError(f"no flavor to resize {small.name} to: give --resize-flavor")
    return small, larger[0]


def _choose_network(cloud: Discovery, ref: str | None) -> tuple[str, str]:
    if ref in ("none", "auto"):
        return ref, ref
    networks = cloud.networks()
    if ref:
        if networks is None:
            raise UsageError(
                f"--network {ref!r}: the cloud has no network service; use --network none"
            )
        found = next((n for n in networks if ref in (n.id, n.name)), None)
        if found is None:
            raise UsageError(f"--network {ref!r}: the cloud has no such network")
        return found.id, found.name or found.id
    if networks is None:
        return "none", "none (the cloud has no network service)"
    private = [n for n in networks if not n.external]
    if not private:
        return "none", "none (the project has no network of its own)"
    if len(private) == 1:
        return private[0].id, private[0].name or private[0].id
    raise UsageError(
        f"the project sees {len(private)} networks: choose one with --network "
        f"({_names(private)}), or --network none"
    )


def choose(
    cloud: Discovery,
    *,
    image: str | None = None,
    flavor: str | None = None,
    resize_flavor: str | None = None,
    network: str | None = None,
    fail_reboot: Mapping[str, str] | None = None,
    fail_spawn: Mapping[str, str] | None = None,
) -> CloudChoices:
    """Check the options against the cloud, discovering those not given:
    an only (or cirros) image, the smallest flavor that fits it, the next
    larger one for the resize, the project's only network. Raises
    :class:`UsageError` with what to give instead."""
    chosen_image = _choose_image(cloud, image)
    small, large = _choose_flavors(cloud, chosen_image, flavor, resize_flavor)
    network_id, label = _choose_network(cloud, network)
    return CloudChoices(
        image=chosen_image,
        flavor=small,
        resize_flavor=large,
        network=network_id,
        network_label=label,
        fail_reboot=dict(fail_reboot or {}),
        fail_spawn=dict(fail_spawn or {}),
    )


#: How long a server may take to boot, and to be deleted, on a real cloud.
BOOT_TIMEOUT_S = 300.0
DELETE_TIMEOUT_S = 120.0
POLL_S = 1.0


class CloudStage(Stage):
    """A real cloud (a clouds.yaml entry), its notifications on ``broker``."""

    policy_file = "demo-cloud-policies.yaml"
    step_timeout_s = 600.0
    shares_the_broker = True

    def __init__(
        self,
        *,
        cloud_name: str,
        broker: str,
        options: Mapping[str, Any],
        connect: Callable[[str, WriteLimiter | None], Cloud] | None = None,
        poll_s: float = POLL_S,
        boot_timeout_s: float = BOOT_TIMEOUT_S,
        delete_timeout_s: float = DELETE_TIMEOUT_S,
    ) -> None:
        self.cloud_name = cloud_name
        self.broker = broker
        self.options = dict(options)
        self._connect = connect or (lambda name, writes: Cloud.connect(cloud=name, writes=writes))
        self.run = uuid.uuid4().hex[:6]
        self.prefix = f"{NAME_PREFIX}{self.run}-"
        self.poll_s = poll_s
        self.boot_timeout_s = boot_timeout_s
        self.delete_timeout_s = delete_timeout_s
        self.cloud: Cloud | None = None
        self.choices: CloudChoices | None = None
        self.created: dict[str, str] = {}  # server id -> its real name
        self._lock = threading.Lock()
        self.where = f"cloud {cloud_name!r}"
        self.resize_flavor = ""

    # -- before anything is booted: connect and check the options ---------------------

    def start(self) -> None:
        try:
            self.cloud = self._connect(self.cloud_name, None)  # the demo's own few writes
        except Rejected as exc:  # no such cloud in clouds.yaml, or an unusable entry
            raise UsageError(f"--cloud: {exc.message}") from None
        try:
            self.cloud.check()
            self.choices = choose(self.cloud, **self.options)
        except (NotFound, Rejected) as exc:  # the endpoint is not there, or refuses us
            raise UsageError(f"--cloud {self.cloud_name!r}: {exc.message}") from None
        self.resize_flavor = self.choices.resize_flavor.name
        self.where = f"cloud {self.cloud_name!r} ({self.choices.describe()})"

    def cannot(self, kind: Kind) -> str | None:
        choices = self.choices
        if kind == "failing-reboot" and not (choices and choices.fail_reboot):
            return (
                "a real cloud cannot be told to fail a server's boot; give "
                "--fail-reboot-metadata KEY=VALUE when its compute driver fails reboots on demand"
            )
        if kind == "failing-spawn" and not (choices and choices.fail_spawn):
            return (
                "a real cloud cannot be told to fail a first boot; give "
                "--fail-spawn-metadata KEY=VALUE when its compute driver fails spawns on demand"
            )
        return None

    def configure(self, conf: Any) -> None:
        # Nova's notifications come from the cloud's broker, into queues named
        # for this run; requests and results stay in this process.
        conf.set_override("transport_url", self.broker)
        conf.set_override("pool", f"{NAME_PREFIX}{self.run}", group="notifications")
        conf.set_override(
            "dead_letter_queue", f"{NAME_PREFIX}{self.run}.dead", group="notifications"
        )
        conf.set_override("broker_url", f"kombu+memory:///{self.run}", group="requests")

    def daemon_cloud(self, *, writes: WriteLimiter) -> Cloud:
        return self._connect(self.cloud_name, writes)

    # -- the servers -----------------------------------------------------------------

    def _metadata(self, kind: Kind) -> dict[str, str]:
        assert self.choices is not None
        metadata = {"nova-autopilot-demo": self.run}
        if kind == "failing-reboot":
            metadata.update(self.choices.fail_reboot)
        elif kind == "failing-spawn":
            metadata.update(self.choices.fail_spawn)
        return metadata

    def boot(self, wanted: Mapping[str, Kind]) -> dict[str, Staged]:
        assert self.cloud is not None
        assert self.choices is not None
        ids: dict[str, str] = {}
        for name, kind in wanted.items():
            why = self.cannot(kind)
            if why:
                raise StageError(f"{name}: {why}")
            real = f"{self.prefix}{name}"
            server_id = self.cloud.create_server(
                name=real,
                flavor_id=self.choices.flavor.id,
                image_id=self.choices.image.id,
                network=self.choices.network,
                metadata=self._metadata(kind),
            )
            with self._lock:
                self.created[server_id] = real
            ids[name] = server_id
        staged = {}
        for name, kind in wanted.items():
            want = "ERROR" if kind == "failing-spawn" else "ACTIVE"
            state = self.wait_for_status(ids[name], want, timeout=self.boot_timeout_s)
            if kind == "failing-spawn" and state.launched:
                raise StageError(f"{name} went to ERROR after it had launched")
            staged[name] = Staged(name, ids[name], kind, _NOTES[kind], _PARAMETERS[kind])
        return staged

    def wait_for_status(self, server_id: str, status: str, *, timeout: float) -> ServerState:
        """Wait until Nova reports ``status`` with no task in progress."""
        assert self.cloud is not None
        deadline = time.monotonic() + timeout
        while True:
            state = self.cloud.server(server_id)
            if state.status == status and not state.busy:
                return state
            if state.status == "ERROR" and status != "ERROR" and not state.busy:
                raise StageError(f"{state.name} went to ERROR: {state.fault or 'no fault given'}")
            if time.monotonic() >= deadline:
                raise StageError(
                    f"{state.name} is {state.status} (task {state.task_state}) after "
                    f"{timeout:.0f}s, not {status}"
                )
            time.sleep(self.poll_s)

    def break_boot(self, server: Staged) -> None:
        assert self.cloud is not None
        self.cloud.reboot(server.id, hard=True)

    # -- afterwards: nothing of the demo stays ----------------------------------------

    def close(self) -> list[str]:
        """Delete every server of this run (those it booted, and any whose
        creation was cut short, found by name), and wait until they are gone."""
        if self.cloud is None:
            return []
        with self._lock:
            doomed = dict(self.created)
        problems = []
        try:
            doomed.update({s.id: s.name for s in self.cloud.servers_named(self.prefix)})
        except CloudError as exc:
            problems.append(f"listing the servers named {self.prefix}*: {exc}")
        for server_id, name in doomed.items():
            try:
                self.cloud.delete_server(server_id)
            except CloudError as exc:
                problems.append(f"deleting {name} ({server_id}): {exc}")
        left = self._wait_gone(doomed)
        problems.extend(f"{name} ({server_id}) is still there" for server_id, name in left.items())
        self.cloud.close()
        return problems

    def _wait_gone(self, servers: Mapping[str, str]) -> dict[str, str]:
        assert self.cloud is not None
        left = dict(servers)
        deadline = time.monotonic() + self.delete_timeout_s
        while left:
            for server_id in list(left):
                try:
                    if self.cloud.server(server_id).status == "DELETED":
                        del left[server_id]
                except NotFound:
                    del left[server_id]
                except CloudError:
                    pass  # asked again on the next round
            if not left or time.monotonic() >= deadline:
                break
            time.sleep(self.poll_s)
        return left


_NOTES: dict[Kind, str] = {
    "healthy": "a healthy guest",
    "unhealthy": f"its resize asks for a service on TCP port {SERVICE_PORT}, which nothing runs",
    "failing-reboot": "its compute driver will fail its next reboot",
    "failing-spawn": "its compute driver failed its first boot",
}
_PARAMETERS: dict[Kind, Mapping[str, str]] = {
    "healthy": {},
    "unhealthy": SERVICE_CHECK,
    "failing-reboot": {},
    "failing-spawn": {},
}
