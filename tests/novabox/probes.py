"""Small HTTP probes of the box's APIs (standard library only).

Used while the box starts, before any client library is involved, and by
``scripts/novabox status``. Each probe returns None while the answer is not
there yet (connection refused, 5xx, not registered yet), so that it can be
passed to :func:`tests.novabox.waiting.wait_for`.
"""

import json
import socket
import urllib.error
import urllib.request
from typing import Any

COMPUTE_TOKEN = "admin:admin"
PLACEMENT_TOKEN = "admin"
PLACEMENT_VERSION = "placement 1.14"


def get_json(url: str, headers: dict[str, str], timeout: float = 5.0) -> Any | None:
    """GET ``url``; the decoded JSON body on 200, else None."""
    request = urllib.request.Request(url, headers={"Accept": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read() or b"null") if response.status == 200 else None
    except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
        return None


def compute(compute_url: str, path: str) -> Any | None:
    return get_json(compute_url + path, {"X-Auth-Token": COMPUTE_TOKEN})


def placement(placement_url: str, path: str) -> Any | None:
    return get_json(
        placement_url + path,
        {"X-Auth-Token": PLACEMENT_TOKEN, "OpenStack-API-Version": PLACEMENT_VERSION},
    )


def services_up(compute_url: str, binaries: tuple[str, ...]) -> dict[str, str]:
    """Binary -> state ('up'/'down') for the services Nova knows about."""
    body = compute(compute_url, "/os-services")
    if not body:
        return {}
    return {
        service["binary"]: service["state"]
        for service in body.get("services", [])
        if service.get("binary") in binaries
    }


def hypervisor_listed(compute_url: str, hostname: str) -> bool:
    body = compute(compute_url, "/os-hypervisors")
    if not body:
        return False
    return any(h.get("hypervisor_hostname") == hostname for h in body.get("hypervisors", []))


def provider_has_inventory(placement_url: str, name: str) -> bool:
    body = placement(placement_url, f"/resource_providers?name={name}")
    if not body or not body.get("resource_providers"):
        return False
    uuid = body["resource_providers"][0]["uuid"]
    inventories = placement(placement_url, f"/resource_providers/{uuid}/inventories")
    return bool(inventories and inventories.get("inventories", {}).get("VCPU"))


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports on 127.0.0.1 that nothing listens on right now."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()
