"""What the sandbox keeps: flavors, images, servers, their faults, migrations and actions.

These are Nova's own records, reduced to the fields the API and the
notifications show. Everything here is plain data; the rules that change it
live in :mod:`nova_autopilot.sandbox.compute` and :mod:`~nova_autopilot.sandbox.flows`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from nova_autopilot.sandbox import states

IMAGE_ID = "155d900f-4e14-4e4c-a73d-069cbf4541e6"
"""The image every sandbox has, with the id of the image Nova's own test fixtures provide."""


def new_uuid() -> str:
    return str(uuid.uuid4())


def new_request_id() -> str:
    return f"req-{uuid.uuid4()}"


@dataclass(frozen=True)
class Flavor:
    """A flavor (``memory_mb`` is ``ram``, ``root_gb`` is ``disk``)."""

    id: str
    name: str
    vcpus: int
    ram: int
    disk: int
    ephemeral: int = 0
    swap: int = 0
    rxtx_factor: float = 1.0
    is_public: bool = True
    disabled: bool = False
    description: str | None = None
    extra_specs: dict[str, str] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class Image:
    """An image servers boot from (the sandbox has no Glance: a few known images)."""

    id: str
    name: str
    properties: dict[str, str] = field(default_factory=dict, hash=False)
    size: int = 25165824


DEFAULT_IMAGE = Image(id=IMAGE_ID, name="fakeimage123456", properties={"architecture": "x86_64"})


@dataclass(frozen=True)
class Fault:
    """Why a server is in ERROR: what ``fault`` shows and what error notifications carry."""

    code: int
    message: str
    created: datetime
    exception: str = "InjectedFault"
    module: str = "nova_autopilot.sandbox.faults"
    function: str = "inject"
    details: str = ""
    stack: str = ""
    """What an instance action's failed event shows as its traceback: Nova stores
    ``format_tb`` there, the frames alone, so its last line is the ``raise`` (no
    header, no exception line, unlike :attr:`details`). The frames are the
    sandbox's own; their form is Nova's."""


@dataclass
class Migration:
    """The record of a resize: Nova looks it up by status (``finished`` = waiting to confirm)."""

    id: int
    old_flavor: Flavor
    new_flavor: Flavor
    old_vm_state: str
    """``active`` or ``stopped``: what confirm and revert go back to."""
    status: str = "pre-migrating"
    finished_at: float | None = None
    """Monotonic time the resize reached VERIFY_RESIZE (for auto-confirm)."""


@dataclass
class ActionEvent:
    """One step of an instance action, as ``os-instance-actions/{request_id}`` lists it."""

    event: str
    start_time: datetime
    host: str | None = None
    """The host of the service that recorded the step (its ``hostId`` is hashed from it)."""
    finish_time: datetime | None = None
    result: str | None = None
    traceback: str | None = None
    details: str | None = None
    """The failure's message, as the server's fault would show it (microversion 2.84)."""


@dataclass
class InstanceAction:
    """One user-visible action on a server (``create``, ``resize``, ``confirmResize``...)."""

    action: str
    request_id: str
    user_id: str | None
    project_id: str | None
    start_time: datetime
    updated_at: datetime
    message: str | None = None
    events: list[ActionEvent] = field(default_factory=list)

    def start_event(self, name: str, now: datetime, host: str) -> ActionEvent:
        event = ActionEvent(event=name, start_time=now, host=host)
        self.events.append(event)
        self.updated_at = now
        return event

    def finish_event(self, name: str, now: datetime, *, failure: Fault | None = None) -> None:
        """Finish the newest event called ``name``; a failure marks the action as failed."""
        for event in reversed(self.events):
            if event.event == name and event.finish_time is None:
                event.finish_time = now
                event.result = "Error" if failure else "Success"
                if failure:
                    event.traceback = failure.stack or None
                    event.details = failure.message
                break
        if failure:
            self.message = "Error"
        self.updated_at = now


@dataclass
class Server:
    """A server (Nova's instance) and everything the sandbox knows about it."""

    id: str
    internal_id: int
    name: str
    project_id: str
    user_id: str
    flavor: Flavor
    image: Image
    created_at: datetime
    updated_at: datetime
    host: str
    """The compute host the server is (or will be) on."""
    vm_state: str = states.BUILDING
    task_state: str | None = states.SCHEDULING
    power_state: int = states.NOSTATE
    on_host: bool = False
    """Scheduled to :attr:`host` (``OS-EXT-SRV-ATTR:host`` is null until then)."""
    launched_at: datetime | None = None
    terminated_at: datetime | None = None
    deleted_at: datetime | None = None
    availability_zone: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    locked_by: str | None = None
    locked_reason: str | None = None
    fault: Fault | None = None
    migration: Migration | None = None
    reservation_id: str = ""
    description: str | None = None
    key_name: str | None = None
    request_id: str = ""
    """The request behind the current (or last) action: notifications carry it."""
    initiator: tuple[str | None, str | None] = (None, None)
    """(user, project) of that request."""
    guest_failed: bool = False
    """The guest failed to boot (a failed reboot or power-on): its console shows why."""
    rescue_image_ref: str | None = None
    destroyed: bool = False
    """Deleted from the database (soft-deleted: GET answers 404, ``changes-since`` lists it)."""
    actions: list[InstanceAction] = field(default_factory=list)

    @property
    def deleted(self) -> bool:
        return self.destroyed

    @property
    def status(self) -> str:
        if self.deleted:
            return "DELETED"
        return states.status_from_state(self.vm_state, self.task_state)

    @property
    def locked(self) -> bool:
        return self.locked_by is not None

    @property
    def instance_name(self) -> str:
        return f"instance-{self.internal_id:08x}"

    @property
    def current_host(self) -> str | None:
        return self.host if self.on_host else None

    def action(self, request_id: str) -> InstanceAction | None:
        return next((a for a in self.actions if a.request_id == request_id), None)

    def summary(self) -> dict[str, Any]:
        """A short, JSON-ready description (for logs and the admin endpoint)."""
        return {
            "id": self.id,
            "name": self.name,
            "status": self.status,
            "vm_state": self.vm_state,
            "task_state": self.task_state,
            "power_state": self.power_state,
            "flavor": self.flavor.name,
            "launched": self.launched_at is not None,
            "locked": self.locked,
        }
