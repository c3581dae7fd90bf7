"""JSON documents of the compute API, field for field as Nova 34 builds them per microversion.

(``nova/api/openstack/compute/views/``: servers, flavors, versions, and the
instance actions controller.) Built from the records while the state lock
is held.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from nova_autopilot.sandbox.context import RequestContext
from nova_autopilot.sandbox.microversion import MAX_VERSION, MIN_VERSION, Version
from nova_autopilot.sandbox.model import Flavor, InstanceAction, Server
from nova_autopilot.sandbox.payloads import hostname

Document = dict[str, Any]

_PROGRESS_STATUSES = ("ACTIVE", "BUILD", "REBUILD", "RESIZE", "VERIFY_RESIZE", "MIGRATING")
_FAULT_STATUSES = ("ERROR", "DELETED")


def isotime(value: datetime | None) -> str | None:
    return None if value is None else value.strftime("%Y-%m-%dT%H:%M:%SZ")


def dbtime(value: datetime | None) -> str | None:
    """A timestamp as Nova prints a database datetime (``2026-11-25T21:17:47.000000``)."""
    return None if value is None else value.strftime("%Y-%m-%dT%H:%M:%S.%f")


def host_id(server: Server) -> str:
    return _hashed_host(server.project_id, server.current_host)


def _hashed_host(project_id: str, host: str | None) -> str:
    """Nova's ``hostId``: the host hashed with the project, empty without a host."""
    if not host:
        return ""
    return hashlib.sha224((project_id + host).encode("utf-8")).hexdigest()


def _links(base: str, collection: str, item_id: str) -> list[Document]:
    return [
        {"rel": "self", "href": f"{base}/v2.1/{collection}/{item_id}"},
        {"rel": "bookmark", "href": f"{base}/{collection}/{item_id}"},
    ]


def _server_flavor(server: Server, base: str, version: Version) -> Document:
    flavor = server.flavor
    if not version.at_least("2.47"):
        return {
            "id": flavor.id,
            "links": [{"rel": "bookmark", "href": f"{base}/flavors/{flavor.id}"}],
        }
    return {
        "vcpus": flavor.vcpus,
        "ram": flavor.ram,
        "disk": flavor.disk,
        "ephemeral": flavor.ephemeral,
        "swap": flavor.swap,
        "original_name": flavor.name,
        "extra_specs": dict(flavor.extra_specs),
    }


def _image(server: Server, base: str, version: Version) -> Document:
    image: Document = {
        "id": server.image.id,
        "links": [{"rel": "bookmark", "href": f"{base}/images/{server.image.id}"}],
    }
    if version.at_least("2.98"):
        image["properties"] = dict(server.image.properties)
    return image


def server_ref(server: Server, base: str) -> Document:
    """The list entry without details, and the body of a create response."""
    return {"id": server.id, "name": server.name, "links": _links(base, "servers", server.id)}


def server(
    s: Server, base: str, version: Version, ctx: RequestContext, *, detail_list: bool = False
) -> Document:
    """A server's detailed view (GET /servers/{id}, or one entry of /servers/detail)."""
    doc: Document = {
        "accessIPv4": "",
        "accessIPv6": "",
        "addresses": {},
        "created": isotime(s.created_at),
        "flavor": _server_flavor(s, base, version),
        "hostId": host_id(s),
        "id": s.id,
        "image": _image(s, base, version),
        "links": _links(base, "servers", s.id),
        "metadata": dict(s.metadata),
        "name": s.name,
        "status": s.status,
        "tenant_id": s.project_id,
        "user_id": s.user_id,
        "updated": isotime(s.updated_at),
        "OS-DCF:diskConfig": "MANUAL",
    }
    if doc["status"] in _FAULT_STATUSES and s.fault is not None:
        fault: Document = {
            "code": s.fault.code,
            "created": isotime(s.fault.created),
            "message": s.fault.message,
        }
        if s.fault.details and (ctx.is_admin or s.fault.code != 500):
            fault["details"] = s.fault.details
        doc["fault"] = fault
    if doc["status"] in _PROGRESS_STATUSES:
        doc["progress"] = 0
    doc["OS-EXT-AZ:availability_zone"] = s.availability_zone or ""
    doc["config_drive"] = ""
    doc["key_name"] = s.key_name
    doc["OS-SRV-USG:launched_at"] = dbtime(s.launched_at)
    doc["OS-SRV-USG:terminated_at"] = dbtime(s.terminated_at)
    if ctx.is_admin:
        doc["OS-EXT-SRV-ATTR:host"] = s.current_host
        doc["OS-EXT-SRV-ATTR:instance_name"] = s.instance_name
        doc["OS-EXT-SRV-ATTR:hypervisor_hostname"] = s.current_host
        if version.at_least("2.3"):
            doc["OS-EXT-SRV-ATTR:hostname"] = hostname_of(s)
            doc["OS-EXT-SRV-ATTR:kernel_id"] = ""
            doc["OS-EXT-SRV-ATTR:launch_index"] = 0
            doc["OS-EXT-SRV-ATTR:ramdisk_id"] = ""
            doc["OS-EXT-SRV-ATTR:reservation_id"] = s.reservation_id
            doc["OS-EXT-SRV-ATTR:root_device_name"] = "/dev/sda" if s.on_host else None
            doc["OS-EXT-SRV-ATTR:user_data"] = None
    doc["OS-EXT-STS:task_state"] = s.task_state
    doc["OS-EXT-STS:vm_state"] = s.vm_state
    doc["OS-EXT-STS:power_state"] = s.power_state
    doc["os-extended-volumes:volumes_attached"] = []
    if version.at_least("2.9"):
        doc["locked"] = s.locked
    host_status = ("UP" if s.on_host and not s.deleted else "") if ctx.is_admin else None
    if version.at_least("2.16") and host_status is not None and not detail_list:
        doc["host_status"] = host_status
    if version.at_least("2.19"):
        doc["description"] = s.description
    if version.at_least("2.26"):
        doc["tags"] = []
    if version.at_least("2.63"):
        doc["trusted_image_certificates"] = None
    if version.at_least("2.71") and not detail_list:
        doc["server_groups"] = []
    if version.at_least("2.73"):
        doc["locked_reason"] = s.locked_reason
    if version.at_least("2.90") and not ctx.is_admin:
        doc["OS-EXT-SRV-ATTR:hostname"] = hostname_of(s)
    if version.at_least("2.96"):
        doc["pinned_availability_zone"] = None
    if version.at_least("2.100"):
        doc["scheduler_hints"] = {}
    if version.at_least("2.16") and host_status is not None and detail_list:
        doc["host_status"] = host_status
    return doc


def hostname_of(s: Server) -> str:
    return hostname(s.name)


def flavor(f: Flavor, base: str, version: Version, *, detail: bool = True) -> Document:
    doc: Document = {"id": f.id, "name": f.name}
    if detail:
        doc["ram"] = f.ram
        doc["disk"] = f.disk
        old = not version.at_least("2.75")
        doc["swap"] = ("" if f.swap == 0 else f.swap) if old else f.swap
        doc["OS-FLV-EXT-DATA:ephemeral"] = f.ephemeral
        if old:
            doc["OS-FLV-DISABLED:disabled"] = f.disabled
        doc["vcpus"] = f.vcpus
        doc["os-flavor-access:is_public"] = f.is_public
        if old:
            doc["rxtx_factor"] = f.rxtx_factor
    doc["links"] = _links(base, "flavors", f.id)
    if version.at_least("2.55"):
        doc["description"] = f.description
    if detail and version.at_least("2.61"):
        doc["extra_specs"] = dict(f.extra_specs)
    return doc


def instance_action(
    action: InstanceAction,
    server: Server,
    version: Version,
    ctx: RequestContext,
    *,
    events: bool,
) -> Document:
    doc: Document = {
        "action": action.action,
        "instance_uuid": server.id,
        "request_id": action.request_id,
        "user_id": action.user_id,
        "project_id": action.project_id,
        "start_time": dbtime(action.start_time),
        "message": action.message,
    }
    if version.at_least("2.58"):
        doc["updated_at"] = dbtime(action.updated_at)
    if not events:
        return doc
    listed = []
    ordered = sorted(enumerate(action.events), key=lambda i: (i[1].start_time, i[0]), reverse=True)
    for _, event in ordered:
        item: Document = {
            "event": event.event,
            "start_time": dbtime(event.start_time),
            "finish_time": dbtime(event.finish_time),
            "result": event.result,
        }
        if ctx.is_admin:
            item["traceback"] = event.traceback
        if version.at_least("2.62"):
            if ctx.is_admin:
                item["host"] = event.host
            item["hostId"] = _hashed_host(action.project_id or server.project_id, event.host)
        if version.at_least("2.84"):
            item["details"] = event.details
        listed.append(item)
    doc["events"] = listed
    return doc


def _version_v20(base: str) -> Document:
    return {
        "id": "v2.0",
        "status": "DEPRECATED",
        "version": "",
        "min_version": "",
        "updated": "2025-07-04T12:00:00Z",
    }


def _version_v21(base: str) -> Document:
    return {
        "id": "v2.1",
        "status": "CURRENT",
        "version": str(MAX_VERSION),
        "min_version": str(MIN_VERSION),
        "updated": "2013-07-23T11:33:21Z",
    }


def versions(base: str) -> Document:
    """GET / : every API version."""
    v20 = _version_v20(base) | {"links": [{"rel": "self", "href": f"{base}/v2/"}]}
    v21 = _version_v21(base) | {"links": [{"rel": "self", "href": f"{base}/v2.1/"}]}
    return {"versions": [v20, v21]}


def version_v21(base: str) -> Document:
    """GET /v2.1/ : the current version, with its links and media types."""
    doc = _version_v21(base)
    doc["links"] = [
        {"rel": "self", "href": f"{base}/v2.1/"},
        {"rel": "describedby", "type": "text/html", "href": "http://docs.openstack.org/"},
    ]
    doc["media-types"] = [
        {
            "base": "application/json",
            "type": "application/vnd.openstack.compute+json;version=2.1",
        }
    ]
    return {"version": doc}
