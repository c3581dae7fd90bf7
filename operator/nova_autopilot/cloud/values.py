"""What Nova says, as plain frozen values: a server's state at one moment
(:class:`ServerState`), flavors, images, networks, and the servers one list
call found (:class:`Listing`). Nothing here calls Nova or imports openstacksdk:
:func:`server_state` reads whatever openstacksdk Server it is given,
:func:`server_state_of` a server as Nova's API writes it (a list call's, read
without building openstacksdk resources, which costs more than the call).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: Nova's numeric power states, as the API returns them.
POWER_STATES = {
    0: "pending",
    1: "running",
    3: "paused",
    4: "shutdown",
    6: "crashed",
    7: "suspended",
}


@dataclass(frozen=True, slots=True)
class FlavorInfo:
    id: str
    name: str
    vcpus: int | None = None
    ram: int | None = None
    disk: int | None = None


@dataclass(frozen=True, slots=True)
class ImageInfo:
    id: str
    name: str
    status: str | None = None
    min_disk: int = 0
    min_ram: int = 0


@dataclass(frozen=True, slots=True)
class NetworkInfo:
    id: str
    name: str
    external: bool = False
    shared: bool = False


@dataclass(frozen=True, slots=True)
class ServerState:
    """What Nova says about a server at one moment."""

    id: str
    name: str
    status: str
    vm_state: str | None
    task_state: str | None
    power_state: str | None
    launched_at: str | None
    flavor_name: str | None
    project_id: str | None = None
    host: str | None = None
    availability_zone: str | None = None
    locked: bool = False
    addresses: tuple[str, ...] = ()
    fault: str | None = None
    updated: str | None = None

    @property
    def launched(self) -> bool:
        return bool(self.launched_at)

    @property
    def busy(self) -> bool:
        return self.task_state is not None


@dataclass(frozen=True, slots=True)
class Listing:
    """Servers as one list call found them, and the HTTP requests (pages) it took."""

    servers: tuple[ServerState, ...]
    requests: int


def _flavor_name(server: Any) -> str | None:
    flavor = server.flavor
    if flavor is None:
        return None
    name = getattr(flavor, "original_name", None) or getattr(flavor, "name", None)
    return str(name) if name else None


def _addresses(addresses: Mapping[str, Any] | None) -> tuple[str, ...]:
    found = []
    for entries in (addresses or {}).values():
        for entry in entries or ():
            if isinstance(entry, Mapping) and entry.get("addr"):
                found.append(str(entry["addr"]))
    return tuple(found)


def server_state(server: Any) -> ServerState:
    """Turn an openstacksdk Server into a :class:`ServerState`."""
    power = server.power_state
    fault = server.fault
    return ServerState(
        id=str(server.id),
        name=str(server.name or ""),
        status=str(server.status or "UNKNOWN"),
        vm_state=server.vm_state,
        task_state=server.task_state,
        power_state=POWER_STATES.get(power, str(power)) if power is not None else None,
        launched_at=server.launched_at,
        flavor_name=_flavor_name(server),
        project_id=server.project_id,
        host=server.compute_host,
        availability_zone=server.availability_zone or None,
        locked=bool(server.is_locked),
        addresses=_addresses(server.addresses),
        fault=str(fault.get("message")) if isinstance(fault, Mapping) else None,
        updated=server.updated_at,
    )


def server_state_of(body: Mapping[str, Any]) -> ServerState:
    """A server as Nova's API writes it (``GET /servers/detail``), as a :class:`ServerState`."""
    power = body.get("OS-EXT-STS:power_state")
    fault = body.get("fault")
    flavor = body.get("flavor")
    flavor_name = (
        flavor.get("original_name") or flavor.get("name") if isinstance(flavor, Mapping) else None
    )
    return ServerState(
        id=str(body["id"]),
        name=str(body.get("name") or ""),
        status=str(body.get("status") or "UNKNOWN"),
        vm_state=body.get("OS-EXT-STS:vm_state"),
        task_state=body.get("OS-EXT-STS:task_state"),
        power_state=POWER_STATES.get(power, str(power)) if power is not None else None,
        launched_at=body.get("OS-SRV-USG:launched_at"),
        flavor_name=str(flavor_name) if flavor_name else None,
        project_id=body.get("tenant_id"),
        host=body.get("OS-EXT-SRV-ATTR:host"),
        availability_zone=body.get("OS-EXT-AZ:availability_zone") or None,
        locked=bool(body.get("locked")),
        addresses=_addresses(body.get("addresses")),
        fault=str(fault.get("message")) if isinstance(fault, Mapping) else None,
        updated=body.get("updated"),
    )
