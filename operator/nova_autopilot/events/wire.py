"""Bytes on the wire to plain Python values, with limits that keep bad input harmless.

Nothing here knows about Nova or requests: it decodes JSON within a size and
depth budget, unwraps the oslo.messaging envelope and parses timestamps.

JSON is decoded by orjson where it gives exactly what the standard library
gives, which is for nearly every message; the standard library decides the
rest (see :func:`decode_json`), so what is accepted, what it becomes and every
refusal's reason and text are the standard library's.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any, Final

import orjson

from nova_autopilot.errors import BadMessage

#: oslo.messaging wraps every message (format 2.0) in this envelope.
ENVELOPE_VERSION_KEY = "oslo.version"
ENVELOPE_MESSAGE_KEY = "oslo.message"
SUPPORTED_ENVELOPE_MAJOR = "2"

DEFAULT_MAX_BYTES = 1024 * 1024
DEFAULT_MAX_DEPTH = 32


# A JSON string (to its closing quote, or to the end of an unterminated one) or a bracket:
# brackets inside strings are skipped whole. Linear: the alternatives never overlap.
_NESTING_BYTES = re.compile(rb'"(?:[^"\\]+|\\.)*"?|[\[\]{}]', re.DOTALL)
_NESTING_TEXT = re.compile(r'"(?:[^"\\]+|\\.)*"?|[\[\]{}]', re.DOTALL)
_OPENING = frozenset((ord("["), ord("{"), "[", "{"))
#: orjson reads an integer beyond 64 bits as a float (the standard library as an
#: int): a float this large from orjson may have been one, so the standard library
#: decides. (Floats within it orjson reads exactly as the standard library does.)
_FLOAT_BOUND = 2.0**63
#: The types orjson's result is walked for: containers (their depth) and floats.
LOOKED_AT = frozenset((dict, list, float))


class _Refused:
    """What :func:`quick_decode` returns for a text orjson refuses."""

    def __repr__(self) -> str:
        return "<refused>"


REFUSED: Final = _Refused()


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def check_nesting(data: bytes | bytearray | str, *, max_depth: int = DEFAULT_MAX_DEPTH) -> None:
    """Refuse a JSON text that opens more than ``max_depth`` nested arrays or
    objects, by scanning it before it is decoded (a decoder that meets deep
    nesting recurses and can exhaust the stack first)."""
    if isinstance(data, str):
        if data.count("[") + data.count("{") <= max_depth:
            return
        tokens: Iterator[re.Match[Any]] = _NESTING_TEXT.finditer(data)
    else:
        if data.count(b"[") + data.count(b"{") <= max_depth:
            return
        tokens = _NESTING_BYTES.finditer(data)
    depth = 0
    for token in tokens:
        first = token.group()[0]
        if first in _OPENING:
            depth += 1
            if depth > max_depth:
                raise BadMessage("too_deep", f"message is nested deeper than {max_depth} levels")
        elif first not in (34, '"'):
            depth -= 1


def decode_json(
    data: bytes | bytearray | str,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> Any:
    """Decode one JSON document no larger than ``max_bytes`` and nested no
    deeper than ``max_depth``, both checked before decoding.

    NaN and Infinity are refused (they are not JSON and would poison
    comparisons). Every failure is a :class:`BadMessage`.

    orjson decodes first; its value is returned when it is the standard
    library's own: it accepted the text (so the text is JSON, UTF-8, without
    NaN, Infinity or a lone surrogate), no container lies deeper than
    ``max_depth`` and no float reaches 2**63 (where orjson may have read an
    integer beyond 64 bits). Anything else is decoded as before orjson came:
    the nesting scanned, then the standard library's decoder, whose refusals
    are the reasons and texts of the refusal.
    """
    check_size(data, max_bytes=max_bytes)
    try:
        value = orjson.loads(data)
        if as_stdlib(value, max_depth):
            return value
    except (orjson.JSONDecodeError, RecursionError):
        pass  # the standard library decides
    return _stdlib_decode(data, max_depth)


def check_size(data: bytes | bytearray | str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
    """Refuse a body larger than ``max_bytes`` (as UTF-8) or empty: :func:`decode_json`'s
    first checks."""
    if isinstance(data, str):
        size = len(data) if data.isascii() else len(data.encode("utf-8"))
    else:
        size = len(data)
    if size > max_bytes:
        raise BadMessage("too_large", f"message has {size} bytes, the limit is {max_bytes}")
    if size == 0:
        raise BadMessage("empty", "message body is empty")


def quick_decode(data: bytes | bytearray | str) -> Any:
    """orjson's value of ``data``, or :data:`REFUSED` when orjson refuses it. Not
    yet the standard library's value: :func:`as_stdlib` says when it is."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return REFUSED


def plain_float(value: float) -> bool:
    """Whether orjson's float ``value`` is the standard library's: one that
    reaches 2**63 may have been an integer beyond 64 bits."""
    return -_FLOAT_BOUND < value < _FLOAT_BOUND


def as_stdlib(value: Any, max_depth: int) -> bool:
    """Whether orjson's ``value`` is what the standard library decodes its text
    to and within ``max_depth`` (the depth of a text that decodes is its value's)."""
    kind = type(value)
    if kind is dict or kind is list:
        return max_depth > 0 and _within(value, max_depth - 1)
    return kind is not float or -_FLOAT_BOUND < value < _FLOAT_BOUND


def _within(container: Any, room: int) -> bool:
    """No container in ``container`` nests more than ``room`` levels below it,
    and no float in it reaches 2**63."""
    for item in container.values() if type(container) is dict else container:
        if type(item) in LOOKED_AT:
            if type(item) is float:
                if not -_FLOAT_BOUND < item < _FLOAT_BOUND:
                    return False
            elif room == 0 or not _within(item, room - 1):
                return False
    return True


def _stdlib_decode(data: bytes | bytearray | str, max_depth: int) -> Any:
    """The standard library's decoding, its nesting scanned first."""
    check_nesting(data, max_depth=max_depth)
    try:
        text = data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data
        return json.loads(text, parse_constant=_reject_constant)
    except UnicodeDecodeError as exc:
        raise BadMessage("not_utf8", f"message body is not UTF-8: {exc.reason}") from None
    except RecursionError:
        raise BadMessage("too_deep", "message nesting is too deep to decode") from None
    except ValueError as exc:
        raise BadMessage("not_json", f"message body is not JSON: {exc}") from None


def check_depth(value: Any, *, max_depth: int = DEFAULT_MAX_DEPTH) -> None:
    """Refuse values nested deeper than ``max_depth`` containers."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: list[Any] = list(item.values())
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > max_depth:
            raise BadMessage("too_deep", f"message is nested deeper than {max_depth} levels")
        stack.extend((child, depth + 1) for child in children)


def canonical(body: Any) -> bytes:
    """The one byte form of a JSON value: keys sorted, no spaces, UTF-8. What
    request signatures and request fingerprints are computed over."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def unwrap_envelope(
    message: Any, *, max_bytes: int = DEFAULT_MAX_BYTES, max_depth: int = DEFAULT_MAX_DEPTH
) -> Any:
    """Return the inner message of an oslo.messaging 2.0 envelope, or the
    message itself when it carries no envelope."""
    if not isinstance(message, dict) or ENVELOPE_MESSAGE_KEY not in message:
        return message
    version = message.get(ENVELOPE_VERSION_KEY)
    if not isinstance(version, str) or version.split(".", 1)[0] != SUPPORTED_ENVELOPE_MAJOR:
        raise BadMessage("bad_envelope", f"unsupported oslo.messaging envelope version {version!r}")
    inner = message[ENVELOPE_MESSAGE_KEY]
    if not isinstance(inner, str):
        raise BadMessage("bad_envelope", "oslo.message must be a JSON string")
    return decode_json(inner, max_bytes=max_bytes, max_depth=max_depth)


def parse_timestamp(value: Any, *, field: str) -> datetime:
    """Parse Nova's ``2026-11-25 20:30:46.205459`` (UTC, no zone) and ISO-8601
    forms (``T`` separator, ``Z`` or an offset) into an aware UTC datetime."""
    if not isinstance(value, str) or not 10 <= len(value) <= 40:
        raise BadMessage("bad_timestamp", f"{field} must be a timestamp string, got {value!r}")
    text = value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise BadMessage("bad_timestamp", f"{field} is not a timestamp: {value!r}") from None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)
