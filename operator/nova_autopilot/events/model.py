"""The one normalized shape of everything the daemon reacts to."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal

from nova_autopilot.events.wire import canonical

Source = Literal["nova", "request", "autopilot", "sweep"]
Format = Literal["versioned", "legacy", "request", "verdict", "sweep"]


class _Missing:
    """Marks a field path that leads nowhere (distinct from a JSON null)."""

    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "<missing>"

    def __bool__(self) -> bool:
        return False


MISSING: Final = _Missing()

#: The fields a policy can address besides ``payload.*``.
TOP_LEVEL_FIELDS: Final = (
    "source",
    "format",
    "event_type",
    "message_id",
    "instance_id",
    "project_id",
    "host",
    "timestamp",
    "priority",
    "publisher_id",
    "request_id",
    "key_id",
)


@dataclass(frozen=True, slots=True)
class Event:
    """One event, whatever it came from.

    ``payload`` holds plain JSON values only: Nova's ``nova_object.data``
    wrappers are already unwrapped, so ``payload.flavor.name`` works. It is
    shared, not copied: treat it as read-only.
    """

    source: Source
    format: Format
    event_type: str
    payload: Mapping[str, Any]
    message_id: str | None = None
    instance_id: str | None = None
    project_id: str | None = None
    host: str | None = None
    timestamp: datetime | None = None
    priority: str | None = None
    publisher_id: str | None = None
    request_id: str | None = None
    #: The signing key that vouched for an operator request (None: unsigned).
    key_id: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def get(self, path: tuple[str, ...]) -> Any:
        """The value at a field path such as ``("payload", "flavor", "name")``,
        or :data:`MISSING`. List items are addressed by their index."""
        head = path[0]
        if head == "payload":
            value: Any = self.payload
        elif head in TOP_LEVEL_FIELDS:
            value = getattr(self, head)
            if value is None:
                return MISSING if len(path) > 1 else None
        else:
            return MISSING
        for key in path[1:]:
            if type(value) is dict or isinstance(value, Mapping):  # dict first: the hot path
                value = value.get(key, MISSING)
                if value is MISSING:
                    return MISSING
            elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
                value = value[int(key)]
            else:
                return MISSING
        return value

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view of the normalized event (without ``raw``)."""
        out: dict[str, Any] = {name: getattr(self, name) for name in TOP_LEVEL_FIELDS}
        if self.timestamp is not None:
            out["timestamp"] = self.timestamp.isoformat()
        out["payload"] = self.payload
        return out

    @property
    def fingerprint(self) -> str | None:
        """What a request says and who signed it, as one SHA-256 (hex): two
        deliveries with the same request id and the same fingerprint are copies
        of one request; a different fingerprint is another request reusing the id."""
        if self.source != "request":
            return None
        digest = hashlib.sha256((self.key_id or "").encode() + b"\n" + canonical(dict(self.raw)))
        return digest.hexdigest()

    @property
    def dedupe_key(self) -> str | None:
        """The id that makes a redelivered message recognisable."""
        if self.message_id is None:
            return None
        return f"{self.source}:{self.message_id}"
