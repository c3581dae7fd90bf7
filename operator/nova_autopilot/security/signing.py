"""Signed operator requests: HMAC-SHA256 over a canonical form of the body.

A request travels with two AMQP headers: ``x-autopilot-key-id`` names the
key, ``x-autopilot-signature`` is the hex HMAC-SHA256 of the request's
canonical JSON (keys sorted, no spaces, UTF-8), so re-encoding the same
request never breaks its signature. Keys live in their own YAML file, which
must not be readable by group or others::

    keys:
      ops-2026-11: "base64 or any long random text"
      ops-2026-12: "..."          # several keys at once: rotation

Verification refuses unsigned requests, unknown keys, bad signatures,
requests older than ``max_age`` seconds and requests dated more than
``max_skew`` seconds ahead. A signature says nothing about how many times a
request was sent: a copy published again within ``max_age`` verifies, and the
engine refuses it as ``replayed`` (its request id was already accepted), as
it does the same id used for another body or key; only a copy the bus itself
delivers again is answered with the first outcome (``docs/security.md``).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import yaml

from nova_autopilot.errors import BadMessage, PermanentError
from nova_autopilot.events.wire import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_DEPTH,
    canonical,
    decode_json,
    parse_timestamp,
)

__all__ = [
    "KEY_ID_HEADER",
    "SIGNATURE_HEADER",
    "KeyFileError",
    "Verifier",
    "canonical",
    "key_id_of",
    "load_keys",
    "read_private_file",
    "sign",
]

KEY_ID_HEADER = "x-autopilot-key-id"
SIGNATURE_HEADER = "x-autopilot-signature"
MIN_SECRET_LENGTH = 16
#: How far ahead of the daemon's clock a request may be dated (clocks drift).
DEFAULT_MAX_SKEW_S = 60.0


class KeyFileError(PermanentError):
    """The signing keys file cannot be used (missing, too open, malformed)."""


def sign(body: Mapping[str, Any], key_id: str, secret: str) -> dict[str, str]:
    """The headers that carry the signature of ``body``."""
    digest = hmac.new(secret.encode(), canonical(body), hashlib.sha256).hexdigest()
    return {KEY_ID_HEADER: key_id, SIGNATURE_HEADER: digest}


def read_private_file(
    path: str | os.PathLike[str], *, what: str, error: type[PermanentError] = KeyFileError
) -> Any:
    """The YAML document of a file that only its owner may use: refuse one that
    group or others may read, write or execute (``error`` says why)."""
    file = Path(path)
    try:
        mode = file.stat().st_mode
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise error(f"{what} {file}: {exc.strerror or exc}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise error(
            f"{what} {file} is open to group or others (mode {stat.S_IMODE(mode):o}); chmod 600 it"
        )
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise error(f"{what} {file} is not valid YAML: {exc}") from None


def load_keys(path: str | os.PathLike[str]) -> dict[str, str]:
    """Read the keys file; refuse one that group or others may read."""
    file = Path(path)
    data = read_private_file(file, what="signing keys file")
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


def key_id_of(headers: Mapping[str, Any]) -> str | None:
    """The key id a message claims to be signed with (verified or not)."""
    return _header(headers, KEY_ID_HEADER)


class Verifier:
    """Checks a request's signature and age before it is parsed (the bus's hook).

    Calling it returns the id of the key that vouches for the request, or
    raises :class:`BadMessage` with the reason: ``unsigned``, ``unknown_key``,
    ``bad_signature``, ``expired``, ``future`` (or a decoding reason)."""

    def __init__(
        self,
        keys: Mapping[str, str],
        *,
        max_age_s: float,
        max_skew_s: float = DEFAULT_MAX_SKEW_S,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_depth: int = DEFAULT_MAX_DEPTH,
        clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    ) -> None:
        self._keys = dict(keys)
        self._max_age = timedelta(seconds=max_age_s)
        self._max_skew = timedelta(seconds=max_skew_s)
        self._max_bytes = max_bytes
        self._max_depth = max_depth
        self._clock = clock

    @property
    def key_ids(self) -> list[str]:
        return sorted(self._keys)

    def use_keys(self, keys: Mapping[str, str]) -> None:
        """Verify with ``keys`` from now on (a reload); a check in progress ends
        with the keys it started with."""
        self._keys = dict(keys)

    def __call__(self, body: bytes, headers: Mapping[str, Any]) -> str:
        key_id = _header(headers, KEY_ID_HEADER)
        signature = _header(headers, SIGNATURE_HEADER)
        if key_id is None or signature is None:
            raise BadMessage("unsigned", "the request carries no signature headers")
        secret = self._keys.get(key_id)  # one read: a reload swaps the whole mapping
        if secret is None:
            raise BadMessage("unknown_key", f"no signing key {key_id!r}")
        parsed = decode_json(body, max_bytes=self._max_bytes, max_depth=self._max_depth)
        if not isinstance(parsed, dict):
            raise BadMessage("not_an_object", "the request must be a JSON object")
        expected = sign(parsed, key_id, secret)[SIGNATURE_HEADER]
        if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
            raise BadMessage("bad_signature", f"the signature does not match key {key_id!r}")
        self._check_age(parsed.get("timestamp"))
        return key_id

    def _check_age(self, stamp: Any) -> None:
        try:
            moment = parse_timestamp(stamp, field="timestamp")
        except BadMessage:
            return  # the schema check that follows reports it
        age = self._clock() - moment
        if age > self._max_age:
            raise BadMessage(
                "expired",
                f"the request is {age.total_seconds():.0f} s old, the limit is "
                f"{self._max_age.total_seconds():.0f} s",
            )
        if -age > self._max_skew:
            raise BadMessage(
                "future",
                f"the request is dated {-age.total_seconds():.0f} s ahead of this daemon's "
                f"clock, the limit is {self._max_skew.total_seconds():.0f} s",
            )
