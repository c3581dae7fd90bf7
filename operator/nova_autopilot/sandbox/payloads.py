"""Versioned notification payloads, shaped as Nova 34 sends them.

Each payload is a ``nova_object`` tree (``nova_object.name``, ``.namespace``,
``.version``, ``.data``) with the fields, field order and versions that Nova
34's ``nova/notifications/objects`` put on the wire. Values come from the
sandbox's records; they are built while the state lock is held, so each
payload is the server as it was at that moment.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from nova_autopilot.sandbox import states
from nova_autopilot.sandbox.model import Fault, Flavor, Image, Server

Payload = dict[str, Any]


def nova_object(name: str, version: str, data: Payload) -> Payload:
    return {
        "nova_object.name": name,
        "nova_object.namespace": "nova",
        "nova_object.version": version,
        "nova_object.data": data,
    }


def isotime(value: datetime | None) -> str | None:
    return None if value is None else value.strftime("%Y-%m-%dT%H:%M:%SZ")


def hostname(display_name: str) -> str:
    """Nova's ``sanitize_hostname``: what a server's name becomes as a host name."""
    name = display_name.encode("latin-1", "ignore").decode("latin-1")[:63]
    name = re.sub(r"[ _\.]", "-", name)
    name = re.sub(r"[^\w.-]+", "", name)
    return name.lower().strip(".-")


def flavor_payload(flavor: Flavor) -> Payload:
    return nova_object(
        "FlavorPayload",
        "1.4",
        {
            "flavorid": flavor.id,
            "memory_mb": flavor.ram,
            "vcpus": flavor.vcpus,
            "root_gb": flavor.disk,
            "ephemeral_gb": flavor.ephemeral,
            "name": flavor.name,
            "swap": flavor.swap,
            "rxtx_factor": flavor.rxtx_factor,
            "vcpu_weight": 0,
            "disabled": flavor.disabled,
            "is_public": flavor.is_public,
            "extra_specs": dict(flavor.extra_specs),
            "projects": None,
            "description": flavor.description,
        },
    )


def exception_payload(fault: Fault) -> Payload:
    return nova_object(
        "ExceptionPayload",
        "1.1",
        {
            "module_name": fault.module,
            "function_name": fault.function,
            "exception": fault.exception,
            "exception_message": fault.message,
            "traceback": fault.details,
        },
    )


def _image_payload(image: Image) -> Payload:
    props = {f"hw_{key}": value for key, value in image.properties.items()}
    return nova_object(
        "ImageMetaPayload",
        "1.0",
        {
            "id": image.id,
            "name": image.name,
            "status": "active",
            "visibility": "public",
            "protected": False,
            "checksum": None,
            "owner": None,
            "size": image.size,
            "virtual_size": None,
            "container_format": "raw",
            "disk_format": "raw",
            "created_at": "2011-01-01T01:02:03Z",
            "updated_at": "2011-01-01T01:02:03Z",
            "tags": [],
            "direct_url": None,
            "min_ram": 0,
            "min_disk": 0,
            "properties": nova_object("ImageMetaPropsPayload", "1.20", props),
        },
    )


def request_spec_payload(server: Server, flavor: Flavor, *, security_groups: bool) -> Payload:
    return nova_object(
        "RequestSpecPayload",
        "1.1",
        {
            "instance_uuid": server.id,
            "project_id": server.project_id,
            "user_id": server.user_id,
            "availability_zone": None,
            "flavor": flavor_payload(flavor),
            "force_hosts": None,
            "force_nodes": None,
            "ignore_hosts": None,
            "instance_group": None,
            "image": _image_payload(server.image),
            "numa_topology": None,
            "pci_requests": nova_object(
                "InstancePCIRequestsPayload",
                "1.0",
                {"instance_uuid": server.id, "requests": []},
            ),
            "num_instances": 1,
            "requested_destination": None,
            "retry": None,
            "scheduler_hints": {},
            "security_groups": ["default"] if security_groups else [],
        },
    )


def compute_task_payload(server: Server, flavor: Flavor, fault: Fault) -> Payload:
    return nova_object(
        "ComputeTaskPayload",
        "1.0",
        {
            "instance_uuid": server.id,
            "request_spec": request_spec_payload(server, flavor, security_groups=False),
            "state": server.vm_state,
            "reason": exception_payload(fault),
        },
    )


def _instance_fields(server: Server, *, bdms: bool) -> Payload:
    """The fields every instance payload shares (Nova's ``InstancePayload``)."""
    return {
        "uuid": server.id,
        "user_id": server.user_id,
        "tenant_id": server.project_id,
        "reservation_id": server.reservation_id,
        "display_name": server.name,
        "display_description": server.description,
        "host_name": hostname(server.name),
        "host": server.current_host,
        "node": server.current_host,
        "os_type": None,
        "architecture": server.image.properties.get("architecture"),
        "availability_zone": server.availability_zone,
        "flavor": flavor_payload(server.flavor),
        "image_uuid": server.image.id,
        "key_name": server.key_name,
        "kernel_id": "",
        "ramdisk_id": "",
        "created_at": isotime(server.created_at),
        "launched_at": isotime(server.launched_at),
        "terminated_at": isotime(server.terminated_at),
        "deleted_at": isotime(server.deleted_at),
        "updated_at": isotime(server.updated_at),
        "state": server.vm_state,
        "power_state": states.POWER_STATE_NAMES.get(server.power_state, "pending"),
        "task_state": server.task_state,
        "progress": 0,
        "ip_addresses": [],
        "block_devices": [] if bdms else None,
        "metadata": dict(server.metadata),
        "locked": server.locked,
        "auto_disk_config": "MANUAL",
    }


def _tail(server: Server) -> Payload:
    user, project = server.initiator
    return {
        "action_initiator_user": user,
        "action_initiator_project": project,
        "locked_reason": server.locked_reason,
        "shares": None,
    }


def action_payload(server: Server, *, fault: Fault | None = None, bdms: bool = True) -> Payload:
    """``InstanceActionPayload``: instance.<action>.start/end/error."""
    data = {"fault": _fault(fault), "request_id": server.request_id}
    data.update(_instance_fields(server, bdms=bdms))
    data.update(_tail(server))
    return nova_object("InstanceActionPayload", "1.9", data)


def rescue_payload(server: Server) -> Payload:
    data: Payload = {
        "rescue_image_ref": server.rescue_image_ref,
        "fault": None,
        "request_id": server.request_id,
    }
    data.update(_instance_fields(server, bdms=False))
    data.update(_tail(server))
    return nova_object("InstanceActionRescuePayload", "1.4", data)


def resize_prep_payload(server: Server, new_flavor: Flavor) -> Payload:
    data: Payload = {
        "new_flavor": flavor_payload(new_flavor),
        "fault": None,
        "request_id": server.request_id,
    }
    data.update(_instance_fields(server, bdms=False))
    data.update(_tail(server))
    return nova_object("InstanceActionResizePrepPayload", "1.4", data)


def create_payload(server: Server, *, fault: Fault | None = None) -> Payload:
    data: Payload = {
        "keypairs": [],
        "tags": [],
        "trusted_image_certificates": None,
        "instance_name": server.instance_name,
        "fault": _fault(fault),
        "request_id": server.request_id,
    }
    data.update(_instance_fields(server, bdms=True))
    data.update(_tail(server))
    return nova_object("InstanceCreatePayload", "1.13", data)


def _audit_period(now: datetime) -> Payload:
    beginning = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return nova_object(
        "AuditPeriodPayload",
        "1.0",
        {"audit_period_beginning": isotime(beginning), "audit_period_ending": isotime(now)},
    )


def exists_payload(server: Server, now: datetime) -> Payload:
    data: Payload = {"audit_period": _audit_period(now)}
    data.update(_instance_fields(server, bdms=False))
    data["request_id"] = server.request_id
    data.update(_tail(server))
    return nova_object("InstanceExistsPayload", "2.1", data)


def update_payload(
    server: Server,
    now: datetime,
    *,
    old_state: str,
    old_task_state: str | None,
) -> Payload:
    """``InstanceUpdatePayload`` with the state change it reports."""
    data: Payload = {
        "state_update": nova_object(
            "InstanceStateUpdatePayload",
            "1.0",
            {
                "old_state": old_state,
                "state": server.vm_state,
                "old_task_state": old_task_state,
                "new_task_state": server.task_state,
            },
        ),
        "audit_period": _audit_period(now),
        "old_display_name": None,
        "tags": [],
    }
    data.update(_instance_fields(server, bdms=False))
    data["request_id"] = server.request_id
    data.update(_tail(server))
    return nova_object("InstanceUpdatePayload", "2.1", data)


def _fault(fault: Fault | None) -> Payload | None:
    return None if fault is None else exception_payload(fault)
