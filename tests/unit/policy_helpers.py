"""Small builders for policy tests."""

from __future__ import annotations

import textwrap
import uuid
from typing import Any

from nova_autopilot.events import Event, parse_message
from nova_autopilot.policies import PolicySet, load_texts


def policies(text: str, file: str = "policies.yaml") -> PolicySet:
    return load_texts([(file, textwrap.dedent(text))])


def nova_event(event_type: str = "instance.update", **payload: Any) -> Event:
    return parse_message(
        {
            "event_type": event_type,
            "priority": "INFO",
            "publisher_id": "nova-compute:compute-1",
            "message_id": str(uuid.uuid4()),
            "payload": {
                "nova_object.name": "InstanceUpdatePayload",
                "nova_object.data": {
                    "uuid": "11111111-2222-4333-8444-555555555555",
                    "tenant_id": "project-1",
                    **payload,
                },
            },
        }
    )


def request_event(event_type: str = "quota.request.approved", **fields: Any) -> Event:
    body = {
        "type": event_type,
        "id": "r-1",
        "timestamp": "2026-11-25T10:00:00Z",
        "server": {"id": "11111111-2222-4333-8444-555555555555"},
        **fields,
    }
    return parse_message(body)
