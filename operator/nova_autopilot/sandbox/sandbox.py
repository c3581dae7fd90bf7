"""``Sandbox``: a simulated Nova, started and stopped from Python.

::

    with Sandbox(transport_url="rabbit://guest:guest@127.0.0.1:5672/test") as nova:
        small = nova.add_flavor("small", vcpus=1, ram=512, disk=10)
        web = nova.add_server("web-1", small)
        conn = openstack.connect(auth_type="admin_token",
                                 auth={"endpoint": nova.url, "token": "admin:admin"},
                                 compute_endpoint_override=nova.url)

It serves the compute API on a loopback port (``url`` is the ``/v2.1``
endpoint), drives every transition from one scheduler thread, and, when
given a transport, publishes Nova's versioned notifications through
oslo.messaging.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any

from nova_autopilot.sandbox import errors, provision
from nova_autopilot.sandbox.admin import AdminRoutes
from nova_autopilot.sandbox.api import ComputeRoutes
from nova_autopilot.sandbox.cell import Cell, Settings
from nova_autopilot.sandbox.clock import Clock, SystemClock
from nova_autopilot.sandbox.clouds import DEFAULT_CLOUD, clouds_yaml
from nova_autopilot.sandbox.compute import ComputeAPI, console_text
from nova_autopilot.sandbox.durations import Durations
from nova_autopilot.sandbox.faults import FaultBook, HttpFault, ServerFaults
from nova_autopilot.sandbox.httpserver import HttpServer
from nova_autopilot.sandbox.instance_notifications import Notify
from nova_autopilot.sandbox.model import DEFAULT_IMAGE, Flavor, Image, Server, new_uuid
from nova_autopilot.sandbox.outbox import Notification, Outbox, Publisher
from nova_autopilot.sandbox.request_counts import RequestCounts, WriteCall
from nova_autopilot.sandbox.scheduler import Scheduler
from nova_autopilot.sandbox.store import Store

log = logging.getLogger(__name__)


class Sandbox:
    """A simulated Nova: compute API over HTTP, Nova's state machine, its notifications."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        transport_url: str | None = None,
        transport: Any = None,
        publisher: Publisher | None = None,
        durations: Durations | None = None,
        settings: Settings | None = None,
        clock: Clock | None = None,
        images: Iterable[Image] = (DEFAULT_IMAGE,),
    ) -> None:
        """
        :param transport_url: publish notifications through oslo.messaging to this URL
            (``rabbit://...``, ``kombu+memory:////``, ``fake://``).
        :param transport: or through this oslo.messaging notification transport.
        :param publisher: or to this publisher (anything with ``publish`` and ``close``).
        :param durations: how long each phase takes (:class:`Durations`).
        :param settings: the Nova options the sandbox honours (:class:`Settings`).
        :param clock: the clock (a :class:`~.clock.ManualClock` in tests that skip time).
        """
        if sum(x is not None for x in (transport_url, transport, publisher)) > 1:
            raise ValueError("give at most one of transport_url, transport and publisher")
        if publisher is None and (transport_url is not None or transport is not None):
            # oslo.messaging is slow to import: only when asked
            from nova_autopilot.sandbox.oslo_publisher import OsloPublisher

            publisher = OsloPublisher(transport_url=transport_url, transport=transport)
        self.clock: Clock = clock or SystemClock()
        self.settings = settings or Settings()
        self.faults = FaultBook()
        self.notifications = Outbox(publisher=publisher)
        self.publisher = publisher
        self._store = Store(images)
        self._changed = threading.Condition()
        self._generation = 0
        self.notifications.subscribe(self._on_notification)
        self._scheduler = Scheduler(
            clock=self.clock, lock=self._store.lock, on_error=self._flow_failed
        )
        self._cell = Cell(
            store=self._store,
            notify=Notify(outbox=self.notifications, clock=self.clock, host=self.settings.host),
            faults=self.faults,
            durations=durations or Durations(),
            clock=self.clock,
            scheduler=self._scheduler,
            settings=self.settings,
        )
        self._compute = ComputeAPI(cell=self._cell)
        self._counts = RequestCounts()
        admin = AdminRoutes(
            store=self._store,
            faults=self.faults,
            counts=self._counts,
            outbox=self.notifications,
            place=self._place,
        )
        self._http = HttpServer(
            routes=ComputeRoutes(cell=self._cell, compute=self._compute).routes(),
            admin_routes=admin.routes(),
            faults=self.faults,
            counts=self._counts,
            host=host,
            port=port,
        )
        self.flow_errors: list[tuple[str, BaseException]] = []

    # -- life cycle ------------------------------------------------------------------

    def start(self) -> Sandbox:
        self.notifications.start()
        self._scheduler.start()
        self._http.start()
        log.info("sandbox.started url=%s", self.url)
        return self

    def stop(self) -> None:
        self._http.stop()
        self._scheduler.stop()
        self.notifications.stop()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``: where version discovery starts."""
        return self._http.url

    @property
    def url(self) -> str:
        """The compute endpoint, ``http://127.0.0.1:<port>/v2.1``."""
        return f"{self._http.url}/v2.1"

    def clouds_yaml(self, name: str = DEFAULT_CLOUD) -> str:
        """A ``clouds.yaml`` whose cloud ``name`` is this sandbox (started)."""
        return clouds_yaml(self.url, name=name)

    @property
    def transport(self) -> Any:
        """The oslo.messaging transport notifications go through (None without one)."""
        return getattr(self.publisher, "transport", None)

    # -- flavors, images, servers ----------------------------------------------------

    def add_flavor(
        self,
        name: str,
        *,
        vcpus: int = 1,
        ram: int = 128,
        disk: int = 1,
        flavor_id: str | None = None,
        ephemeral: int = 0,
        swap: int = 0,
        extra_specs: Mapping[str, str] | None = None,
    ) -> Flavor:
        flavor = Flavor(
            id=flavor_id or new_uuid(),
            name=name,
            vcpus=vcpus,
            ram=ram,
            disk=disk,
            ephemeral=ephemeral,
            swap=swap,
            extra_specs=dict(extra_specs or {}),
        )
        return self._store.add_flavor(flavor)

    def flavor(self, name_or_id: str) -> Flavor:
        return self._store.flavor_named(name_or_id) or self._store.flavor(name_or_id)

    def add_image(self, image_id: str, name: str, **properties: str) -> Image:
        return self._store.add_image(Image(id=image_id, name=name, properties=properties))

    def add_server(
        self,
        name: str,
        flavor: Flavor | str,
        *,
        state: str = "ACTIVE",
        launched: bool = True,
        old_flavor: Flavor | str | None = None,
        project_id: str = "admin",
        metadata: Mapping[str, str] | None = None,
    ) -> Server:
        """A server placed straight into ``state`` (ACTIVE, SHUTOFF, ERROR, RESCUE,
        VERIFY_RESIZE); with ``launched=False`` (ERROR only) it never booted.
        No notifications are sent for it. Returns a snapshot."""
        server = self._place(
            name=name,
            flavor=self._flavor(flavor),
            state=state,
            launched=launched,
            old_flavor=None if old_flavor is None else self._flavor(old_flavor),
            project_id=project_id,
            metadata=metadata,
        )
        return self.server(server.id)

    def _flavor(self, flavor: Flavor | str) -> Flavor:
        return flavor if isinstance(flavor, Flavor) else self.flavor(flavor)

    def _place(self, **kwargs: Any) -> Server:
        with self._store.lock:
            server = provision.place(self._cell, **kwargs)
            if server.migration is not None:
                self._compute.schedule_auto_confirm(server)
            return server

    def server(self, server_id: str) -> Server:
        """A snapshot of a server (deleted ones too)."""
        with self._store.lock:
            server = self._store.find_server(server_id)
            if server is None:
                raise errors.server_not_found(server_id)
            return copy.deepcopy(server)

    def servers(self) -> list[Server]:
        """Snapshots of every server that is not deleted."""
        with self._store.lock:
            return [copy.deepcopy(s) for s in self._store.servers(deleted=False)]

    def console(self, server_id: str) -> str:
        """What the server's console shows now."""
        with self._store.lock:
            server = self._store.server(server_id)
            return console_text(self._cell, server)

    # -- faults ------------------------------------------------------------------------

    def fail(self, server_id: str, *operations: str, console: str | None = None) -> None:
        """Make ``operations`` fail for a server (``spawn``, ``reboot``, ``power_on``...)."""
        self.faults.add_server(server_id, ServerFaults(fail=frozenset(operations), console=console))

    def http_fault(
        self,
        status: int = 503,
        *,
        times: int = 1,
        method: str | None = None,
        route: str | None = None,
        action: str | None = None,
        server_id: str | None = None,
    ) -> HttpFault:
        """Answer the next ``times`` matching compute API requests with ``status``."""
        return self.faults.add_http(HttpFault(status, times, method, route, action, server_id))

    # -- observing ---------------------------------------------------------------------

    def request_counts(self) -> dict[str, int]:
        """Requests received so far, per ``METHOD /route`` (and action)."""
        return self._counts.snapshot()

    def request_log(self) -> list[tuple[float, str]]:
        """The latest requests as ``(time.monotonic() at arrival, key)``, oldest first;
        keys as in :meth:`request_counts`."""
        return self._counts.log()

    def write_counts(self) -> dict[str, dict[str, int]]:
        """Write calls per server id, per action (``resize``, ``confirmResize``) or, for
        the other write methods, ``METHOD /route``; counted whatever they were answered,
        refusals (409, 400, 404) and injected faults included. Servers never written to
        are absent."""
        return self._counts.writes()

    def write_calls(self, server_id: str | None = None) -> list[WriteCall]:
        """The latest write calls (of one server, or of all) in the order they arrived,
        each with its status and when it arrived and was answered."""
        return self._counts.write_log(server_id)

    def reset_request_counts(self) -> None:
        """Forget the request counts and the write calls."""
        self._counts.reset()

    def wait_for(
        self, predicate: Callable[[Server], bool], server_id: str, *, timeout: float = 10.0
    ) -> Server:
        """The server once ``predicate`` holds for it; raises ``TimeoutError`` at the deadline.

        Woken by every state change (no polling).
        """
        deadline = time.monotonic() + timeout
        while True:
            with self._changed:
                generation = self._generation
            current = self.server(server_id)
            if predicate(current):
                return current
            with self._changed:
                while self._generation == generation:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise TimeoutError(
                            f"server {server_id} still {current.status} "
                            f"(task {current.task_state}) after {timeout:.1f}s"
                        )
                    self._changed.wait(left)

    def wait_for_status(self, server_id: str, status: str, *, timeout: float = 10.0) -> Server:
        """The server once it has ``status`` and no task in progress."""
        return self.wait_for(
            lambda s: s.status == status and s.task_state is None, server_id, timeout=timeout
        )

    def settled(self) -> bool:
        """No transition is due right now (with a manual clock: time must move for more)."""
        return self._scheduler.settled()

    def wait_settled(self, timeout: float = 10.0) -> None:
        """Wait until no transition is due; raises ``TimeoutError`` at the deadline."""
        if not self._scheduler.wait_settled(timeout):
            raise TimeoutError(f"transitions still due after {timeout:.1f}s")

    def pending(self, server_id: str | None = None) -> int:
        """Transitions waiting for their time (for one server, or for all)."""
        return self._scheduler.pending(server_id)

    def _on_notification(self, notification: Notification) -> None:
        with self._changed:
            self._generation += 1
            self._changed.notify_all()

    def _flow_failed(self, key: str, exc: BaseException) -> None:
        log.error("sandbox.flow_failed server=%s error=%r", key, exc, exc_info=exc)
        self.flow_errors.append((key, exc))
