"""``NovaBox``: what an end-to-end test gets, a running box plus ways to use it.

Example::

    def test_resize(novabox):
        small, large = novabox.create_flavor(), novabox.create_flavor(ram=256)
        server = novabox.boot("web-1", small)
        with novabox.notifications() as log:
            novabox.conn.compute.resize_server(server, large.id)
            novabox.wait_for_status(server, "VERIFY_RESIZE")
        assert "instance.resize_finish.end" in log.event_types(server.id)

Servers are booted from the stand-in image :data:`IMAGE_ID` without
networks. Faults are asked for per server, see :mod:`tests.novabox.faults`.
"""

import itertools
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import openstack
from openstack.compute.v2.flavor import Flavor
from openstack.compute.v2.server import Server
from openstack.connection import Connection

from tests.novabox import faults, probes
from tests.novabox.box import Box
from tests.novabox.notifications import NotificationLog, listening
from tests.novabox.waiting import wait_for

IMAGE_ID = "155d900f-4e14-4e4c-a73d-069cbf4541e6"
"""An image of the Glance stand-in inside Nova (``nova.tests.fixtures.GlanceFixture``)."""

_counter = itertools.count(1)


def connect(compute_url: str, token: str = probes.COMPUTE_TOKEN) -> Connection:
    """An openstacksdk connection to a box's compute API (``token`` is ``user:project``)."""
    return openstack.connect(
        auth_type="admin_token",
        auth={"endpoint": compute_url, "token": token},
        compute_endpoint_override=compute_url,
    )


class NovaBox:
    """A running box, seen from a test."""

    def __init__(self, box: Box) -> None:
        self.box = box
        self.conn: Connection = connect(box.compute_url)

    # -- where things are --------------------------------------------------------

    @property
    def compute_url(self) -> str:
        """The compute API, e.g. ``http://127.0.0.1:41234/v2.1``."""
        return self.box.compute_url

    @property
    def transport_url(self) -> str:
        """oslo.messaging transport URL of the box's vhost (``rabbit://...``)."""
        return self.box.transport_url

    @property
    def amqp_url(self) -> str:
        """kombu URL of the same vhost (``amqp://...``)."""
        return self.box.amqp_url

    @property
    def vhost(self) -> str:
        return self.box.vhost

    # -- flavors and servers -----------------------------------------------------

    def create_flavor(
        self, name: str | None = None, *, vcpus: int = 1, ram: int = 128, disk: int = 1
    ) -> Flavor:
        """A new public flavor (a unique name is made up when none is given)."""
        name = name or f"novabox-{vcpus}c-{ram}m-{disk}g-{next(_counter)}"
        return self.conn.compute.create_flavor(name=name, vcpus=vcpus, ram=ram, disk=disk)

    def boot(
        self,
        name: str,
        flavor: Flavor | str,
        *,
        wait: bool = True,
        metadata: Mapping[str, str] | None = None,
        timeout: float = 60.0,
    ) -> Server:
        """Boot a server; with ``wait``, return it once ACTIVE (raise if it goes to ERROR).

        Name prefixes and metadata ask for faults (see :mod:`tests.novabox.faults`);
        a server expected to fail its boot is booted with ``wait=False``, then
        waited for with :meth:`wait_for_status`.
        """
        flavor_id = flavor if isinstance(flavor, str) else flavor.id
        server = self.conn.compute.create_server(
            name=name,
            flavor_id=flavor_id,
            image_id=IMAGE_ID,
            networks="none",
            metadata=dict(metadata or {}),
        )
        if wait:
            server = self.wait_for_status(server, "ACTIVE", timeout=timeout)
        return server

    def wait_for_status(
        self,
        server: Server | str,
        status: str,
        *,
        timeout: float = 60.0,
        failures: tuple[str, ...] | None = None,
    ) -> Server:
        """Wait until the server has ``status`` and no task in progress.

        Raises as soon as it reaches one of ``failures`` (ERROR, unless
        ERROR is what is waited for).
        """
        if failures is None:
            failures = () if status == "ERROR" else ("ERROR",)
        server_id = server if isinstance(server, str) else server.id
        last: list[Server] = []

        def reached() -> Server | None:
            current = self.conn.compute.get_server(server_id)
            last[:] = [current]
            if current.status in failures and current.task_state is None:
                raise AssertionError(
                    f"server {server_id} went to {current.status} while waiting for {status}: "
                    f"{current.fault}"
                )
            if current.status == status and current.task_state is None:
                return current
            return None

        return wait_for(
            reached,
            timeout=timeout,
            what=f"server {server_id} to be {status}",
            interval=0.2,
            describe_last=lambda: _describe(last[0]) if last else "nothing",
        )

    def make_fail_boot(self, server: Server, *, console: str | None = None) -> Server:
        """Turn an ACTIVE server into a failed boot: its reboot fails, it goes to ERROR.

        The server had launched (``launched_at`` is set), so unlike a failed
        spawn it can be rescued. Its console shows a kernel panic (or
        ``console``: see :mod:`tests.novabox.faults`) until it is unrescued
        or reboots fine. Its reboots and power-ons keep failing until
        :meth:`repair` is called.
        """
        plan = faults.FaultPlan.failing(faults.FAILED_BOOT.fail, console=console)
        self.conn.compute.set_server_metadata(server, **plan.metadata())
        self.conn.compute.reboot_server(server, "SOFT")
        return self.wait_for_status(server, "ERROR")

    def repair(self, server: Server) -> None:
        """Remove every fault of a server, including those its name asks for.

        Nova changes metadata only while a server is ACTIVE, SHUTOFF, PAUSED
        or SUSPENDED: repair a failed boot after its rescue and unrescue.
        """
        self.conn.compute.set_server_metadata(server, **{faults.FAIL_KEY: ""})
        current = self.conn.compute.fetch_server_metadata(server).metadata or {}
        delays = (faults.RESIZE_DELAY_KEY, faults.ERROR_DELAY_KEY)
        others = [key for key in (faults.CONSOLE_KEY, *delays) if key in current]
        if others:
            self.conn.compute.delete_server_metadata(server, others)

    def console_output(self, server: Server) -> str:
        result: dict[str, Any] = self.conn.compute.get_server_console_output(server)
        return str(result.get("output", ""))

    def delete(self, server: Server, *, timeout: float = 60.0) -> None:
        """Delete a server and wait until it is gone."""
        self.delete_all([server], timeout=timeout)

    def delete_all(self, servers: Sequence[Server], *, timeout: float = 60.0) -> None:
        """Delete servers, all asked at once, and wait until every one is gone (a
        failure to delete one still has the others asked and waited for)."""
        failures: list[Exception] = []
        asked = []
        for server in servers:
            try:
                self.conn.compute.delete_server(server, ignore_missing=True)
                asked.append(server)
            except Exception as exc:  # noqa: BLE001 - the others are deleted all the same
                failures.append(exc)
        for server in asked:
            try:
                self.conn.compute.wait_for_delete(server, interval=0.2, wait=int(timeout))
            except Exception as exc:  # noqa: BLE001 - as above
                failures.append(exc)
        if failures:
            raise failures[0]

    # -- notifications -----------------------------------------------------------

    @contextmanager
    def notifications(self) -> Iterator[NotificationLog]:
        """Collect the versioned notifications sent while the block runs."""
        with listening(self.amqp_url) as log:
            yield log


def _describe(server: Server) -> str:
    return (
        f"status={server.status} vm_state={server.vm_state} task_state={server.task_state} "
        f"power_state={server.power_state}"
    )
