"""What the fuzzers run: the three places where untrusted bytes enter.

Each target takes the fuzzer's bytes and may raise only the documented error
of its contract; any other exception is a crash, and the fuzzer stops on it
with the input that caused it.

* ``parse_message``: Nova's notifications and requests as raw bytes
  (``BadMessage``);
* ``verifier``: a request's headers and body through the request intake's
  decoder: size and depth limits, signature, strict parsing, authorisation
  (``BadMessage``);
* ``policy_loader``: a policy file's text (``PolicyError``).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from nova_autopilot.bus.sources import request_decoder
from nova_autopilot.errors import BadMessage, PolicyError
from nova_autopilot.events import parse_message as _parse_message
from nova_autopilot.policies.loader import load_texts
from nova_autopilot.security.authorization import Authorization, FlavorRule, Grant
from nova_autopilot.security.signing import KEY_ID_HEADER, SIGNATURE_HEADER, Verifier, sign

__all__ = ["TARGETS", "parse_message", "policy_loader", "verifier"]

KEYS = {"ops-1": "fuzzing-secret-" * 2, "team-a": "another-fuzzing-key-" * 2}
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
_EXPECT: tuple[Any, ...] = (None, "nova", "request")

_verify = Verifier(KEYS, max_age_s=10**10, clock=lambda: NOW, max_bytes=65536)
_decode = request_decoder(
    verify=_verify,
    max_bytes=65536,
    max_depth=32,
    check=Authorization(
        {
            "team-a": Grant(
                types=frozenset({"quota.request.approved"}),
                projects=frozenset({"project-a"}),
                actions=None,
                flavors=FlavorRule(names=frozenset({"m1.large"})),
            )
        }
    ).check_request,
)


def parse_message(data: bytes) -> None:
    """Raw bytes, as the intakes hand them over, on each channel."""
    expect = _EXPECT[data[0] % 3] if data else None
    with contextlib.suppress(BadMessage):
        _parse_message(data[1:], expect=expect, max_bytes=65536, max_depth=32)


def _split(data: bytes) -> tuple[int, bytes, bytes]:
    """``[choice][n][n bytes of signature header][body]``."""
    choice = data[0] % 4 if data else 0
    size = data[1] if len(data) > 1 else 0
    return choice, data[2 : 2 + size], data[2 + size :]


def _headers(choice: int, signature: bytes, body: bytes) -> dict[str, Any]:
    """No headers (0), the key id with the input's own signature header, as
    text (1) or as bytes (3 with no JSON body), or a correct signature of the
    body (2, 3) so that the checks after it run too."""
    if choice == 0:
        return {}
    key_id = "team-a" if choice == 3 else "ops-1"
    if choice == 1:
        return {KEY_ID_HEADER: key_id, SIGNATURE_HEADER: signature.decode("utf-8", "replace")}
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        return {KEY_ID_HEADER: key_id.encode(), SIGNATURE_HEADER: signature}
    if not isinstance(parsed, dict):
        return {KEY_ID_HEADER: key_id, SIGNATURE_HEADER: "00"}
    return sign(parsed, key_id, KEYS[key_id])


def verifier(data: bytes) -> None:
    """The verifier alone, then the request intake's whole decoder (whose own
    guard would turn a verifier's bug into a refusal, hiding it)."""
    choice, signature, body = _split(data)
    headers = _headers(choice, signature, body)
    with contextlib.suppress(BadMessage):
        _verify(body, headers)
    with contextlib.suppress(BadMessage):
        _decode(body, headers)


def policy_loader(data: bytes) -> None:
    text = data.decode("utf-8", "replace")
    with contextlib.suppress(PolicyError):
        load_texts([("fuzz.yaml", text)])


TARGETS: dict[str, Callable[[bytes], None]] = {
    "parse_message": parse_message,
    "verifier": verifier,
    "policy_loader": policy_loader,
}
