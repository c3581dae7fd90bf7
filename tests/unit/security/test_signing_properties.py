"""Properties of the request verifier: whatever the body, signing it and
verifying it agree; any change to what it says, to its signature or to the
key it names is refused; and junk of any shape only ever ends as BadMessage."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from nova_autopilot.errors import BadMessage
from nova_autopilot.security.signing import (
    KEY_ID_HEADER,
    SIGNATURE_HEADER,
    Verifier,
    canonical,
    sign,
)

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
KEYS = {"ops-1": "a" * 32, "ops-2": "b" * 32}
FRESH = "2026-11-25T11:59:00Z"
# No deadline: the machine is shared, and a slow example is not a failure.
examples = settings(max_examples=100, deadline=None)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
bodies = st.dictionaries(st.text(max_size=12), json_values, max_size=6).map(
    lambda body: {**body, "timestamp": FRESH}
)
key_ids = st.sampled_from(sorted(KEYS))


def verify(body: bytes, headers: dict[str, Any]) -> str:
    return Verifier(KEYS, max_age_s=300, clock=lambda: NOW)(body, headers)


def refusal(body: bytes, headers: dict[str, Any]) -> str:
    try:
        verify(body, headers)
    except BadMessage as exc:
        return exc.reason
    raise AssertionError(f"accepted: {body!r} with {headers!r}")


@examples
@given(body=bodies, key_id=key_ids, indent=st.none() | st.integers(0, 4))
def test_what_is_signed_verifies_however_it_is_encoded(
    body: dict[str, Any], key_id: str, indent: int | None
) -> None:
    headers = sign(body, key_id, KEYS[key_id])
    assert verify(canonical(body), headers) == key_id
    assert verify(json.dumps(body, indent=indent).encode(), headers) == key_id
    as_bytes = {name: value.encode() for name, value in headers.items()}
    assert verify(canonical(body), as_bytes) == key_id


@examples
@given(body=bodies, key_id=key_ids, data=st.data())
def test_any_byte_changed_is_refused_unless_the_request_still_says_the_same(
    body: dict[str, Any], key_id: str, data: st.DataObject
) -> None:
    headers = sign(body, key_id, KEYS[key_id])
    raw = bytearray(canonical(body))
    at = data.draw(st.integers(0, len(raw) - 1), label="at")
    byte = data.draw(st.integers(0, 255).filter(lambda b: b != raw[at]), label="byte")
    raw[at] = byte
    try:
        same = canonical(json.loads(bytes(raw).decode("utf-8"))) == canonical(body)
    except ValueError:  # not UTF-8 or not JSON any more
        same = False
    if same:  # e.g. an escape that decodes to the same text: the same request
        assert verify(bytes(raw), headers) == key_id
    else:
        assert refusal(bytes(raw), headers) in {
            "bad_signature",
            "not_utf8",
            "not_json",
            "not_an_object",
            "too_deep",
            "empty",
        }


@examples
@given(body=bodies, key_id=key_ids, data=st.data())
def test_any_value_changed_added_or_removed_is_refused(
    body: dict[str, Any], key_id: str, data: st.DataObject
) -> None:
    headers = sign(body, key_id, KEYS[key_id])
    changed = dict(body)
    field = data.draw(st.sampled_from(sorted(body)) | st.text(max_size=12), label="field")
    if data.draw(st.booleans(), label="remove") and field in changed:
        del changed[field]
    else:
        changed[field] = data.draw(json_values, label="value")
    if canonical(changed) == canonical(body):
        return  # the same value again: nothing changed
    assert refusal(canonical(changed), headers) == "bad_signature"


@examples
@given(body=bodies, key_id=key_ids, signature=st.text(max_size=80) | st.binary(max_size=80))
def test_any_other_signature_is_refused(
    body: dict[str, Any], key_id: str, signature: str | bytes
) -> None:
    headers = sign(body, key_id, KEYS[key_id])
    good = headers[SIGNATURE_HEADER]
    readable = signature.decode("utf-8", "replace") if isinstance(signature, bytes) else signature
    if readable == good:
        return
    forged = {**headers, SIGNATURE_HEADER: signature}
    assert refusal(canonical(body), forged) in {"bad_signature", "unsigned"}


@examples
@given(body=bodies, key_id=key_ids, other=st.text(max_size=20))
def test_any_other_key_id_is_refused(body: dict[str, Any], key_id: str, other: str) -> None:
    if other == key_id:
        return
    headers = {**sign(body, key_id, KEYS[key_id]), KEY_ID_HEADER: other}
    expected = "bad_signature" if other in KEYS else "unknown_key" if other else "unsigned"
    assert refusal(canonical(body), headers) == expected


header_values = (
    st.none()
    | st.text(max_size=80)
    | st.binary(max_size=80)
    | st.integers()
    | st.lists(st.text(max_size=5), max_size=3)
)
junk_headers = st.dictionaries(
    st.sampled_from([KEY_ID_HEADER, SIGNATURE_HEADER]) | st.text(max_size=20),
    header_values,
    max_size=4,
) | st.fixed_dictionaries(
    {KEY_ID_HEADER: st.sampled_from(sorted(KEYS)) | header_values, SIGNATURE_HEADER: header_values}
)
junk_bodies = (
    st.binary(max_size=300)
    | json_values.map(lambda value: json.dumps(value).encode())
    | st.text(max_size=300).map(str.encode)
    | st.integers(1, 200).map(lambda depth: b"[" * depth + b"]" * depth)
)


@examples
@given(body=junk_bodies, headers=junk_headers)
def test_junk_only_ever_ends_as_bad_message(body: bytes, headers: dict[str, Any]) -> None:
    try:
        verify(body, headers)
    except BadMessage as exc:
        assert exc.reason
        assert exc.detail
    else:  # only a valid signature of that very body could pass
        parsed = json.loads(body)
        key_id = headers[KEY_ID_HEADER]
        assert headers[SIGNATURE_HEADER] == sign(parsed, key_id, KEYS[key_id])[SIGNATURE_HEADER]
