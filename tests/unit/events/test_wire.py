"""JSON is decoded by orjson where that gives the standard library's value, and by
the standard library wherever orjson refuses or could differ: every value, every
refusal's reason and text are the standard library's."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nova_autopilot.errors import BadMessage
from nova_autopilot.events import parse_message, wire
from tests.samples import on_the_wire, sample


def stdlib(data: bytes | str) -> Any:
    """What the standard library alone makes of a body (``json.loads`` as before orjson)."""
    text = data.decode("utf-8") if isinstance(data, bytes) else data

    def refuse(name: str) -> float:
        raise ValueError(f"{name} is not valid JSON")

    return json.loads(text, parse_constant=refuse)


class _Refusing:
    """orjson refusing everything: what is left is the standard library's reading."""

    JSONDecodeError = orjson.JSONDecodeError

    @staticmethod
    def loads(data: object) -> object:
        raise orjson.JSONDecodeError("refused", "", 0)


@contextmanager
def without_orjson() -> Iterator[None]:
    with mock.patch.object(wire, "orjson", _Refusing):
        yield


def same(left: Any, right: Any) -> bool:
    """Equal, with the same types all the way down (1 and 1.0 differ, so do -0.0 and 0.0)."""
    return repr(left) == repr(right) and type(left) is type(right)


def envelope(inner: str) -> bytes:
    return json.dumps({"oslo.version": "2.0", "oslo.message": inner}).encode()


@pytest.mark.parametrize(
    "text",
    [
        '{"a": 18446744073709551616}',  # orjson: 1.8446744073709552e19
        '{"a": -9223372036854775809}',
        '[123456789012345678901234567890, {"b": [-99999999999999999999]}]',
        "18446744073709551616",
        '{"a": 1e400, "b": -1e400}',  # orjson refuses; the standard library: infinities
        '{"a": 1e19, "b": -9.3e18}',  # floats orjson reads right, looked at all the same
        '{"a": "\\ud800", "b": "\\udc00x\\ud83d"}',  # lone surrogates: orjson refuses
        '{"a": 18446744073709551615, "b": -9223372036854775808, "c": 0.1}',  # orjson's own
    ],
)
def test_where_orjson_refuses_or_could_differ_the_value_is_the_standard_librarys(
    text: str,
) -> None:
    expected = stdlib(text)
    for form in (text, text.encode("utf-8"), bytearray(text.encode("utf-8"))):
        assert same(wire.decode_json(form), expected)


@pytest.mark.parametrize(
    "data",
    [
        b'{"a": NaN}',
        b"[Infinity]",
        b"-Infinity",
        b"\xef\xbb\xbf{}",
        "\ufeff{}",
        b'{"a": 1,}',
        b'{"a" 1}',
        b'"\t"',
        b"\xff{}",
        b'"\xed\xa0\x80"',
        b"1" * 5000,  # beyond the standard library's digits limit
        b"[" * 40 + b"]" * 40,
        b"[" * 32 + b"]" * 31,  # deep and unfinished: too deep first
        b"[" * 2000 + b"]" * 2000,  # beyond orjson's own depth limit
        b'{"a": 1} x',
    ],
)
def test_refusals_keep_the_standard_librarys_reason_and_text(data: bytes | str) -> None:
    with pytest.raises(BadMessage) as fast:
        wire.decode_json(data)
    assert (fast.value.reason, fast.value.detail) == refusal(data)


def refusal(data: bytes | str) -> tuple[str, str]:
    """The reason and text of the refusal as the standard library alone made it."""
    try:
        wire.check_nesting(data)
        stdlib(data)
    except BadMessage as exc:
        return (exc.reason, exc.detail)
    except UnicodeDecodeError as exc:
        return ("not_utf8", f"message body is not UTF-8: {exc.reason}")
    except ValueError as exc:
        return ("not_json", f"message body is not JSON: {exc}")
    raise AssertionError("the standard library accepts it")


def test_the_depth_limit_is_exact_on_either_side() -> None:
    assert wire.decode_json("[" * 32 + "]" * 32) == stdlib("[" * 32 + "]" * 32)
    with pytest.raises(BadMessage, match="nested deeper than 32 levels") as caught:
        wire.decode_json("[" * 33 + "]" * 33)
    assert caught.value.reason == "too_deep"
    assert wire.decode_json('{"a": [{"b": 1}]}', max_depth=3) == {"a": [{"b": 1}]}
    with pytest.raises(BadMessage, match="deeper than 2 levels"):
        wire.decode_json('{"a": [{"b": 1}]}', max_depth=2)
    with pytest.raises(BadMessage, match="deeper than 0 levels"):
        wire.decode_json("{}", max_depth=0)
    assert wire.decode_json('"{[{["', max_depth=0) == "{[{["


def test_a_typical_notification_is_decoded_without_the_standard_library(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    wired = on_the_wire(sample("instance-update"))
    expected = parse_message(wired)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the standard library decoded it")

    monkeypatch.setattr(wire.json, "loads", refuse)
    assert parse_message(wired, expect="nova") == expected


def nova(payload_data: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {
        "event_type": "instance.update",
        "publisher_id": "nova-compute:host-1",
        "priority": "INFO",
        "message_id": "m-1",
        "timestamp": "2026-11-25 20:30:46.205459",
        "payload": {
            "nova_object.name": "InstanceUpdatePayload",
            "nova_object.version": "2.1",
            "nova_object.data": payload_data,
        },
        **fields,
    }


def outcome(data: bytes) -> Any:
    try:
        return parse_message(data, expect="nova")
    except BadMessage as exc:
        return (exc.reason, exc.detail)


def careful(inner: str) -> Any:
    """The outcome of the envelope of ``inner`` read by the standard library alone."""
    with without_orjson():
        return outcome(envelope(inner))


@pytest.mark.parametrize(
    "inner",
    [
        json.dumps(nova({"memory_mb": 18446744073709551616, "uuid": "u-1"})),
        json.dumps(nova({"flavor": {"nova_object.data": {"swap": -(2**70)}}})),
        json.dumps(nova({"tags": ["\ud800"]})),
        json.dumps(nova({"bad": {"nova_object.data": [1]}}, event_type="x y")),
        json.dumps(nova({"bad": {"nova_object.data": "text"}})),
        json.dumps(nova({}, _context_roles=[2**65])),
        json.dumps(nova({}, publisher_id=["x"])),
    ],
)
def test_notifications_orjson_cannot_vouch_for_are_read_the_careful_way(inner: str) -> None:
    got = outcome(envelope(inner))
    expected = careful(inner)
    if isinstance(expected, tuple):
        assert got == expected
    else:
        assert got == expected
        assert same(got.payload, expected.payload)
        assert same(got.raw, expected.raw)


def deep(levels: int) -> Any:
    value: Any = "leaf"
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("where", "levels", "refused"),
    [
        # the inner message is depth 1, its members 2, the payload's data 3, its members 4
        ("payload", 29, False),
        ("payload", 30, True),
        ("changes", 30, False),  # a wrapper's other member is at depth 3, like the data
        ("changes", 31, True),
        ("context", 31, False),
        ("context", 32, True),
    ],
)
def test_the_depth_limit_counts_the_text_inside_an_envelope(
    where: str, levels: int, refused: bool
) -> None:
    message = nova({"tags": deep(levels)} if where == "payload" else {})
    if where == "changes":
        message["payload"]["nova_object.changes"] = deep(levels)
    if where == "context":
        message["_context_roles"] = deep(levels)
    inner = json.dumps(message)
    got = outcome(envelope(inner))
    assert isinstance(got, tuple) == refused
    if refused:
        assert got == ("too_deep", "message is nested deeper than 32 levels")
    assert got == careful(inner)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**62, max_value=2**70)
    | st.integers(min_value=-(2**70), max_value=-(2**62))
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=8), inner, max_size=4)
        | st.fixed_dictionaries({"nova_object.data": st.dictionaries(st.text(max_size=8), inner)})
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(json_values, st.booleans())
def test_random_json_decodes_to_the_standard_librarys_value(value: Any, ascii_only: bool) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only)
    expected = stdlib(text)
    for form in (text, text.encode("utf-8", "surrogatepass")):
        got = decoded(form)
        with without_orjson():
            assert same(got, decoded(form))
        if not isinstance(got, tuple):
            assert same(got, expected)


def decoded(data: bytes | str) -> Any:
    try:
        return wire.decode_json(data, max_depth=6)
    except BadMessage as exc:
        return (exc.reason, exc.detail)
    except UnicodeEncodeError as exc:  # a lone surrogate in a text: its size is unknown
        return str(exc)


@settings(max_examples=300, deadline=None)
@given(json_values, json_values)
def test_random_notifications_in_an_envelope_read_as_the_careful_way(
    data: Any, context: Any
) -> None:
    payload = data if isinstance(data, dict) else {"value": data}
    inner = json.dumps(nova(payload, _context_user_id=context, _context_roles=context))
    got = outcome(envelope(inner))
    expected = careful(inner)
    assert got == expected
    if not isinstance(expected, tuple):
        assert same(got.payload, expected.payload)
        assert same(got.raw, expected.raw)
