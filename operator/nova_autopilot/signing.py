"""Signed operator requests: HMAC-SHA256 over a canonical form of the body.

A request travels with two AMQP headers: ``x-autopilot-key-id`` names the
key, ``x-autopilot-signature`` is the hex HMAC-SHA256 of the request's
canonical JSON (keys sorted, no spaces, UTF-8), so re-encoding the same
request never breaks its signature. Keys live in their own YAML file, which
must not be readable by group or others::

    keys:
      ops-2026-11: "base64 or any long random text"
      ops-2026-12: "..."          # several keys at once: rotation

Verification refuses unsigned requests, unknown keys, bad signatures and
requests older than ``max_age`` seconds (a replayed copy of a recent request
is a duplicate: the journal answers it with the first outcome).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import stat
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import yaml

from nova_autopilot.errors import BadMessage, PermanentError
from nova_autopilot.events.wire import parse_timestamp

KEY_ID_HEADER = "x-autopilot-key-id"
SIGNATURE_HEADER = "x-autopilot-signature"
MIN_SECRET_LENGTH = 16


class KeyFileError(PermanentError):
    """The signing keys file cannot be used (missing, too open, malformed)."""


def canonical(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sign(body: Mapping[str, Any], key_id: str, secret: str) -> dict[str, str]:
    """The headers that carry the signature of ``body``."""
    digest = hmac.new(secret.encode(), canonical(body), hashlib.sha256).hexdigest()
    return {KEY_ID_HEADER: key_id, SIGNATURE_HEADER: digest}


def load_keys(path: str | os.PathLike[str]) -> dict[str, str]:
    """Read the keys file; refuse one that group or others may read."""
    file = Path(path)
    try:
        mode = file.stat().st_mode
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise KeyFileError(f"signing keys file {file}: {exc.strerror or exc}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(
            f"signing keys file {file} is open to group or others (mode {stat.S_IMODE(mode):o});"
            " chmod 600 it"
        )
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise KeyFileError(f"signing keys file {file} is not valid YAML: {exc}") from None
    keys = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(keys, dict) or not keys:
        raise KeyFileError(f"signing keys file {file} needs a non-empty 'keys' mapping")
    for key_id, secret in keys.items():
        if not isinstance(key_id, str) or not isinstance(secret, str):
            raise KeyFileError(f"signing keys file {file}: key ids and secrets must be text")
        if len(secret) < MIN_SECRET_LENGTH:
            raise KeyFileError(f"signing key {key_id!r} is shorter than {MIN_SECRET_LENGTH}")
    return dict(keys)


def _header(headers: Mapping[str, Any], name: str) -> str | None:
    value = headers.get(name)
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return value if isinstance(value, str) and value else None


class Verifier:
    """Checks a request's signature and age before it is parsed (the bus's hook)."""

    def __init__(
        self,
        keys: Mapping[str, str],
        *,
        max_age_s: float,
        clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    ) -> None:
        self._keys = dict(keys)
        self._max_age = timedelta(seconds=max_age_s)
        self._clock = clock

    @property
    def key_ids(self) -> list[str]:
        return sorted(self._keys)

    def use_keys(self, keys: Mapping[str, str]) -> None:
        """Verify with ``keys`` from now on (a reload); a check in progress ends
        with the keys it started with."""
        self._keys = dict(keys)

    def __call__(self, body: bytes, headers: Mapping[str, Any]) -> None:
        key_id = _header(headers, KEY_ID_HEADER)
        signature = _header(headers, SIGNATURE_HEADER)
        if key_id is None or signature is None:
            raise BadMessage("unsigned", "the request carries no signature headers")
        secret = self._keys.get(key_id)  # one read: a reload swaps the whole mapping
        if secret is None:
            raise BadMessage("unknown_key", f"no signing key {key_id!r}")
        try:
            parsed = json.loads(body)
        except ValueError:
            raise BadMessage("not_json", "the request body is not JSON") from None
        if not isinstance(parsed, dict):
            raise BadMessage("not_an_object", "the request must be a JSON object")
        expected = sign(parsed, key_id, secret)[SIGNATURE_HEADER]
        if not hmac.compare_digest(expected, signature):
            raise BadMessage("bad_signature", f"the signature does not match key {key_id!r}")
        self._check_age(parsed.get("timestamp"))

    def _check_age(self, stamp: Any) -> None:
        try:
            moment = parse_timestamp(stamp, field="timestamp")
        except BadMessage:
            return  # the schema check that follows reports it
        age = self._clock() - moment
        if age > self._max_age:
            raise BadMessage("expired", f"the request is {age.total_seconds():.0f} s old")
        if age < -self._max_age:
            raise BadMessage("expired", "the request's timestamp is in the future")
