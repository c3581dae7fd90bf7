"""Nova's notification samples (tests/data/nova-notification-samples), resolved.

The samples compose payloads with ``$ref``: a dict with ``"$ref": "<file>#"``
is replaced by that file (relative to the referring file's folder, resolved
recursively); its other keys are overrides merged in deeply (dicts key by key,
anything else replaced whole). See the folder's README.md.
"""

from __future__ import annotations

import json
import uuid
from functools import cache
from pathlib import Path
from typing import Any

SAMPLES = Path(__file__).parent / "data" / "nova-notification-samples"


def _merge(base: Any, override: Any) -> Any:
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = _merge(base.get(key), value) if key in base else value
        return merged
    return override


def _resolve(value: Any, folder: Path) -> Any:
    if isinstance(value, list):
        return [_resolve(item, folder) for item in value]
    if not isinstance(value, dict):
        return value
    resolved = {key: _resolve(item, folder) for key, item in value.items() if key != "$ref"}
    if "$ref" not in value:
        return resolved
    target = folder / value["$ref"].split("#", 1)[0]
    base = _resolve(json.loads(target.read_text()), target.parent)
    return _merge(base, resolved)


@cache
def _load(name: str) -> str:
    path = SAMPLES / name
    return json.dumps(_resolve(json.loads(path.read_text()), path.parent))


def sample(name: str) -> dict[str, Any]:
    """One sample, e.g. ``sample("instance-update")``, fully resolved (a fresh copy)."""
    return json.loads(_load(f"{name}.json"))


def sample_names() -> list[str]:
    return sorted(p.stem for p in SAMPLES.glob("*.json"))


def on_the_wire(
    notification: dict[str, Any], *, timestamp: str = "2026-11-25 20:30:46.205459"
) -> bytes:
    """The notification as oslo.messaging's messagingv2 driver puts it on RabbitMQ."""
    inner = dict(notification)
    inner.setdefault("message_id", str(uuid.uuid4()))
    inner.setdefault("timestamp", timestamp)
    inner.setdefault("_context_request_id", "req-" + str(uuid.uuid4()))
    inner.setdefault("_context_auth_token", "gAAAAA-secret-token")
    return json.dumps({"oslo.version": "2.0", "oslo.message": json.dumps(inner)}).encode()
