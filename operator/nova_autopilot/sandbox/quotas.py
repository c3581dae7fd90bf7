"""Project quotas for instances, cores and RAM, checked and worded as Nova's legacy quota driver.

Unlimited (-1) by default. A resize is checked for the upsize only (the
growth in cores and RAM), a boot for one more instance of its flavor. The
``quota_exceeded`` fault makes a server's resizes fail as if the project
had used up its quota.
"""

from __future__ import annotations

from dataclasses import dataclass

from nova_autopilot.sandbox import errors
from nova_autopilot.sandbox.model import Flavor, Server
from nova_autopilot.sandbox.store import Store

UNLIMITED = -1


@dataclass(frozen=True)
class Quotas:
    """Per-project limits; -1 is unlimited."""

    instances: int = UNLIMITED
    cores: int = UNLIMITED
    ram: int = UNLIMITED

    def limit(self, resource: str) -> int:
        return int(getattr(self, resource))


def usage(store: Store, project_id: str) -> dict[str, int]:
    """What a project uses now (servers not deleted, at their current flavor)."""
    used = {"instances": 0, "cores": 0, "ram": 0}
    for server in store.servers(deleted=False):
        if server.project_id == project_id:
            used["instances"] += 1
            used["cores"] += server.flavor.vcpus
            used["ram"] += server.flavor.ram
    return used


def _over(
    requested: dict[str, int], used: dict[str, int], quotas: Quotas, forced: bool
) -> errors.ApiError | None:
    overs = [
        resource
        for resource, amount in requested.items()
        if forced
        or (quotas.limit(resource) >= 0 and used[resource] + amount > quotas.limit(resource))
    ]
    if not overs:
        return None

    def allowed(resource: str) -> int:
        return used[resource] if forced else quotas.limit(resource)

    names = ", ".join(overs)
    reqs = ", ".join(str(requested[r]) for r in overs)
    useds = ", ".join(str(used[r]) for r in overs)
    alloweds = ", ".join(str(allowed(r)) for r in overs)
    return errors.ApiError(
        403,
        f"Quota exceeded for {names}: Requested {reqs}, but already used {useds} "
        f"of {alloweds} {names}",
    )


def check_resize(
    server: Server, new: Flavor, *, store: Store, quotas: Quotas, forced: bool = False
) -> None:
    """Raise Nova's 403 if growing ``server`` to ``new`` goes over the project's quota."""
    deltas: dict[str, int] = {}
    if new.vcpus > server.flavor.vcpus:
        deltas["cores"] = new.vcpus - server.flavor.vcpus
    if new.ram > server.flavor.ram:
        deltas["ram"] = new.ram - server.flavor.ram
    if forced and not deltas:
        deltas = {"cores": new.vcpus}
    if not deltas:
        return
    error = _over(deltas, usage(store, server.project_id), quotas, forced)
    if error is not None:
        raise error


def check_boot(project_id: str, flavor: Flavor, *, store: Store, quotas: Quotas) -> None:
    """Raise Nova's 403 if one more server of ``flavor`` goes over the project's quota."""
    requested = {"instances": 1, "cores": flavor.vcpus, "ram": flavor.ram}
    error = _over(requested, usage(store, project_id), quotas, forced=False)
    if error is not None:
        raise error
