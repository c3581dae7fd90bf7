"""The calls to Nova, through openstacksdk: the only module that imports it.

:class:`Cloud` offers the few calls the actions need, returns the plain values
of :mod:`.values`, maps openstacksdk's and keystoneauth's exceptions into our
vocabulary (404 ``NotFound``, 409 ``Conflict``, 403 quota ``QuotaExceeded``,
other 4xx ``Rejected``, 5xx, time-outs and connection failures
``CloudUnavailable``), counts every HTTP request it makes (:mod:`.accounting`)
and lets every write call wait for its turn (:mod:`.pacing`).
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, TypeVar

import keystoneauth1.exceptions as ksa_exc
import openstack
import openstack.compute.v2.server
import openstack.connection
import openstack.exceptions as sdk_exc
import openstack.utils

from nova_autopilot.cloud.accounting import RequestCounter, counting_as, counting_for
from nova_autopilot.cloud.pacing import WriteLimiter
from nova_autopilot.cloud.values import (
    FlavorInfo,
    ImageInfo,
    Listing,
    NetworkInfo,
    ServerState,
    server_state,
    server_state_of,
)
from nova_autopilot.errors import (
    Ambiguous,
    CloudError,
    CloudUnavailable,
    Conflict,
    NotFound,
    QuotaExceeded,
    Rejected,
)

T = TypeVar("T")


def _message(exc: sdk_exc.HttpException) -> str:
    details = getattr(exc, "details", None)
    text = str(details) if details else str(exc)
    return text.strip() or type(exc).__name__


def _translate(call: str, exc: Exception) -> CloudError:
    if isinstance(exc, sdk_exc.HttpException):
        status = exc.status_code
        message = _message(exc)
        if status == 404 or isinstance(exc, sdk_exc.NotFoundException):  # find: no status
            return NotFound(message, status=404, call=call)
        if status == 409:
            return Conflict(message, status=status, call=call)
        if status == 403 and "quota" in message.lower():
            return QuotaExceeded(message, status=status, call=call)
        if status is not None and 400 <= status < 500 and status not in (408, 429):
            return Rejected(message, status=status, call=call)
        return CloudUnavailable(message, status=status, call=call)
    if isinstance(exc, sdk_exc.DuplicateResource):  # a name several servers share
        return Ambiguous(str(exc), call=call)
    return CloudUnavailable(f"{type(exc).__name__}: {exc}", call=call)


def _image(image: Any) -> ImageInfo:
    return ImageInfo(
        id=str(image.id),
        name=str(image.name or ""),
        status=image.status,
        min_disk=int(image.min_disk or 0),
        min_ram=int(image.min_ram or 0),
    )


@dataclass
class Cloud:
    """Nova through openstacksdk. Build it with :meth:`connect` or
    :meth:`from_endpoint`; tests may pass any Connection."""

    connection: openstack.connection.Connection
    requests: RequestCounter = field(default_factory=RequestCounter)
    flavor_ttl_s: float = 300.0
    #: Paces every write call; None: writes are not limited.
    writes: WriteLimiter | None = None
    #: How long a write call may wait for its turn before it fails as temporary.
    write_wait_s: float = 60.0
    _flavors: dict[str, FlavorInfo] = field(default_factory=dict, init=False, repr=False)
    _flavors_at: float = field(default=0.0, init=False, repr=False)
    _flavor_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        session = getattr(self.connection.session, "session", None)
        if session is not None:
            session.hooks.setdefault("response", []).append(self._count)

    def _count(self, response: Any, *args: Any, **kwargs: Any) -> None:
        request = response.request
        path = request.path_url.split("?", 1)[0]
        self.requests.record(str(request.method), path, int(response.status_code))

    @classmethod
    def connect(
        cls,
        *,
        cloud: str | None,
        region_name: str | None = None,
        api_timeout: float | None = None,
        writes: WriteLimiter | None = None,
    ) -> Cloud:
        """From a clouds.yaml cloud name, or ``OS_*`` variables when ``cloud`` is empty.
        A write waits for its turn at most ``api_timeout`` seconds (default 60)."""
        try:
            conn = openstack.connect(
                cloud=cloud or None, region_name=region_name, api_timeout=api_timeout
            )
        except sdk_exc.SDKException as exc:
            raise Rejected(f"cannot configure cloud {cloud!r}: {exc}", call="connect") from None
        return cls(conn, writes=writes, write_wait_s=api_timeout or 60.0)

    @classmethod
    def from_endpoint(
        cls, url: str, *, token: str = "admin:admin", writes: WriteLimiter | None = None
    ) -> Cloud:
        """A compute endpoint with a static token (a test Nova without Keystone)."""
        conn = openstack.connect(
            auth_type="admin_token",
            auth={"endpoint": url, "token": token},
            compute_endpoint_override=url,
        )
        return cls(conn, writes=writes)

    def _call(self, call: str, fn: Callable[[], T]) -> T:
        with counting_as(call):
            try:
                return fn()
            except (sdk_exc.SDKException, ksa_exc.ClientException) as exc:
                raise _translate(call, exc) from None

    def _write(self, call: str, fn: Callable[[], T]) -> T:
        """A write call: it waits for its turn under the write limit first."""
        if self.writes is not None:
            self.writes.acquire(call, max_wait_s=self.write_wait_s)
        return self._call(call, fn)

    def ping(self) -> None:
        """One real request to the compute endpoint (its version document), to
        tell whether Nova answers now. Raises ``CloudUnavailable`` when not."""
        self._call("ping", lambda: self.connection.compute.get("/", raise_exc=True))

    def check(self) -> None:
        """Reach the compute endpoint and negotiate the API version, once, up
        front: operations then pay only for their own requests. Raises
        ``CloudUnavailable`` when Nova cannot be reached."""
        # Inside the call: reaching the compute service authenticates first.
        self._call("discover", lambda: self.connection.compute.get_endpoint_data())

    # -- reads ------------------------------------------------------------

    def server(self, server_id: str) -> ServerState:
        compute = self.connection.compute
        return self._call("get_server", lambda: server_state(compute.get_server(server_id)))

    def find_server(self, ref: str | Mapping[str, str]) -> ServerState:
        """A server by id, by name, or by ``{"id": ...}`` / ``{"name": ...}``."""
        if isinstance(ref, Mapping):
            if ref.get("id"):
                return self.server(str(ref["id"]))
            ref = str(ref.get("name", ""))
        compute = self.connection.compute

        def find() -> ServerState:
            found = compute.find_server(ref, ignore_missing=False, all_projects=True)
            return server_state(compute.get_server(found.id) if found.status is None else found)

        return self._call("find_server", find)

    def changed_since(self, since: datetime) -> list[ServerState]:
        """Every server (all projects) updated at or after ``since``: one batched list call."""
        stamp = since.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        return self._call(
            "list_servers",
            lambda: self._servers({"all_tenants": True, "changes-since": stamp}),
        )

    def servers_in(self, statuses: tuple[str, ...]) -> Listing:
        """Every server (all projects) whose status is one of ``statuses``, and the
        HTTP requests it took: one list call per status, in pages of Nova's
        ``[api] max_limit`` servers (no ``limit`` is sent: openstacksdk would then
        always ask for one page more). Nova's link to the next page keeps one value
        of a repeated filter, so several statuses in one paginated call would lose
        servers."""
        key = f"listing:{uuid.uuid4().hex}"
        found: dict[str, ServerState] = {}
        try:
            with counting_for(key):
                for status in dict.fromkeys(statuses):
                    listed = self._call(
                        "list_servers",
                        lambda status=status: self._servers(  # type: ignore[misc]
                            {"all_tenants": True, "status": status}
                        ),
                    )
                    found.update((server.id, server) for server in listed)
            return Listing(tuple(found.values()), self.requests.for_operation(key))
        finally:
            self.requests.forget(key)

    def _servers(self, query: Mapping[str, Any]) -> list[ServerState]:
        """``GET /servers/detail`` with ``query``, every page (Nova's link to the next
        one, when a page is full), read as Nova writes it: at the microversion
        openstacksdk would use, without building its resources."""
        compute = self.connection.compute
        version = openstack.utils.maximum_supported_microversion(
            compute, openstack.compute.v2.server.Server._max_microversion
        )
        url: str | None = "/servers/detail"
        params: Mapping[str, Any] | None = query
        found: list[ServerState] = []
        while url is not None:
            response = compute.get(url, params=params, microversion=version)
            sdk_exc.raise_from_response(response)
            body = response.json()
            found += [server_state_of(server) for server in body.get("servers", ())]
            pages = [
                link.get("href")
                for link in body.get("servers_links", ())
                if link.get("rel") == "next"
            ]
            url, params = (str(pages[0]), None) if pages and pages[0] else (None, None)
        return found

    def flavor(self, ref: str) -> FlavorInfo:
        """A flavor by name or id, from a list cached for ``flavor_ttl_s``."""
        with self._flavor_lock:
            if time.monotonic() - self._flavors_at > self.flavor_ttl_s or ref not in self._flavors:
                compute = self.connection.compute
                listed = self._call("list_flavors", lambda: list(compute.flavors(details=True)))
                self._flavors = {}
                for f in listed:
                    info = FlavorInfo(str(f.id), str(f.name), f.vcpus, f.ram, f.disk)
                    self._flavors[info.id] = info
                    self._flavors.setdefault(info.name, info)
                self._flavors_at = time.monotonic()
            found = self._flavors.get(ref)
        if found is None:
            raise NotFound(f"flavor {ref!r} does not exist", status=404, call="find_flavor")
        return found

    def console_output(self, server_id: str, *, lines: int | None = None) -> str:
        compute = self.connection.compute
        result = self._call(
            "console_output", lambda: compute.get_server_console_output(server_id, length=lines)
        )
        return str(result.get("output", "")) if isinstance(result, Mapping) else str(result)

    def actions(self, server_id: str) -> list[dict[str, Any]]:
        """Nova's instance actions of a server, newest first, with their events."""
        compute = self.connection.compute

        def fetch() -> list[dict[str, Any]]:
            out = []
            for action in compute.server_actions(server_id):
                detail = compute.get_server_action(action.request_id, server_id)
                out.append(detail.to_dict(computed=False))
            return out

        return self._call("server_actions", fetch)

    # -- writes -----------------------------------------------------------

    def resize(self, server_id: str, flavor_id: str) -> None:
        compute = self.connection.compute
        self._write("resize", lambda: compute.resize_server(server_id, flavor_id))

    def confirm_resize(self, server_id: str) -> None:
        compute = self.connection.compute
        self._write("confirm_resize", lambda: compute.confirm_server_resize(server_id))

    def revert_resize(self, server_id: str) -> None:
        compute = self.connection.compute
        self._write("revert_resize", lambda: compute.revert_server_resize(server_id))

    def rescue(self, server_id: str, *, admin_pass: str, image: str | None = None) -> None:
        compute = self.connection.compute
        self._write(
            "rescue", lambda: compute.rescue_server(server_id, admin_pass=admin_pass, image=image)
        )

    def unrescue(self, server_id: str) -> None:
        compute = self.connection.compute
        self._write("unrescue", lambda: compute.unrescue_server(server_id))

    def lock(self, server_id: str, *, reason: str) -> None:
        compute = self.connection.compute
        self._write("lock", lambda: compute.lock_server(server_id, locked_reason=reason))

    def unlock(self, server_id: str) -> None:
        compute = self.connection.compute
        self._write("unlock", lambda: compute.unlock_server(server_id))

    def compute_quota(self, project_id: str) -> dict[str, int]:
        """The project's compute quota limits (-1: unlimited)."""
        compute = self.connection.compute
        quota = self._call("get_quota", lambda: compute.get_quota_set(project_id))
        return {"cores": int(quota.cores), "ram": int(quota.ram)}

    def set_compute_quota(self, project_id: str, *, cores: int, ram: int) -> None:
        compute = self.connection.compute
        self._write(
            "update_quota", lambda: compute.update_quota_set(project_id, cores=cores, ram=ram)
        )

    # -- servers of one's own (the demo boots, breaks and removes them) -------

    def flavors(self) -> list[FlavorInfo]:
        """Every flavor the project can use."""
        compute = self.connection.compute
        return self._call(
            "list_flavors",
            lambda: [
                FlavorInfo(str(f.id), str(f.name), f.vcpus, f.ram, f.disk)
                for f in compute.flavors(details=True)
            ],
        )

    def images(self) -> list[ImageInfo]:
        """Every image, through Nova's image API (it asks the image service)."""
        compute = self.connection.compute
        return self._call("list_images", lambda: [_image(i) for i in compute.images(details=True)])

    def image(self, ref: str) -> ImageInfo:
        """An image by id or name; ``NotFound`` when there is none."""
        compute = self.connection.compute

        def find() -> ImageInfo:
            found = compute.find_image(ref, ignore_missing=False)
            return _image(found if found.status else compute.get_image(found.id))

        return self._call("find_image", find)

    def networks(self) -> list[NetworkInfo] | None:
        """Every network the project sees; None when the cloud has no network service."""
        try:
            listed = list(self.connection.network.networks())
        except (
            sdk_exc.NotFoundException,
            sdk_exc.EndpointNotFound,
            sdk_exc.ServiceDisabledException,
            ksa_exc.CatalogException,
        ):
            return None
        except (sdk_exc.SDKException, ksa_exc.ClientException) as exc:
            raise _translate("list_networks", exc) from None
        return [
            NetworkInfo(str(n.id), str(n.name or ""), bool(n.is_router_external), bool(n.is_shared))
            for n in listed
        ]

    def create_server(
        self,
        *,
        name: str,
        flavor_id: str,
        image_id: str,
        network: str,
        metadata: Mapping[str, str] | None = None,
    ) -> str:
        """Boot a server; its id. ``network`` is a network id, ``none`` or ``auto``."""
        compute = self.connection.compute
        networks: str | list[dict[str, str]] = (
            network if network in ("none", "auto") else [{"uuid": network}]
        )
        created = self._write(
            "create_server",
            lambda: compute.create_server(
                name=name,
                flavor_id=flavor_id,
                image_id=image_id,
                networks=networks,
                metadata=dict(metadata or {}),
            ),
        )
        return str(created.id)

    def servers_named(self, prefix: str) -> list[ServerState]:
        """The project's servers whose name starts with ``prefix``."""
        compute = self.connection.compute
        pattern = "^" + re.escape(prefix)
        return self._call(
            "list_servers",
            lambda: [
                server_state(s)
                for s in compute.servers(name=pattern)
                if str(s.name or "").startswith(prefix)
            ],
        )

    def reboot(self, server_id: str, *, hard: bool = True) -> None:
        compute = self.connection.compute
        kind = "HARD" if hard else "SOFT"
        self._write("reboot", lambda: compute.reboot_server(server_id, kind))

    def delete_server(self, server_id: str) -> None:
        """Delete a server; nothing happens when it is already gone."""
        compute = self.connection.compute
        self._write("delete_server", lambda: compute.delete_server(server_id, ignore_missing=True))

    def close(self) -> None:
        self.connection.close()


def config_problem(cloud: str | None, region_name: str | None = None) -> str | None:
    """Why openstacksdk cannot configure ``cloud`` (a clouds.yaml entry, or the
    ``OS_*`` variables when empty), as :meth:`Cloud.connect` would; None when it
    can. Nothing is contacted."""
    try:
        openstack.config.OpenStackConfig().get_one(cloud=cloud or None, region_name=region_name)
    except (sdk_exc.SDKException, ksa_exc.ClientException, KeyError, ValueError) as exc:
        return f"cannot configure cloud {cloud!r}: {exc}"
    return None
