"""Signed requests: only a request signed with a known key, recently, is accepted."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from nova_autopilot.errors import BadMessage
from nova_autopilot.security.signing import KeyFileError, Verifier, canonical, load_keys, sign

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
KEYS = {"ops-1": "a" * 32, "ops-2": "b" * 32}
BODY = {"type": "quota.request.approved", "id": "r-1", "timestamp": "2026-11-25T11:59:00Z",
        "server": {"id": "web-1"}, "flavor": "m1.large"}  # fmt: skip


def verifier() -> Verifier:
    return Verifier(KEYS, max_age_s=300, clock=lambda: NOW)


def reason(body: dict[str, object], headers: dict[str, object]) -> str:
    with pytest.raises(BadMessage) as caught:
        verifier()(json.dumps(body).encode(), headers)
    return caught.value.reason


def test_a_request_signed_with_a_known_key_passes_however_it_is_encoded() -> None:
    headers = sign(BODY, "ops-1", KEYS["ops-1"])
    verifier()(json.dumps(BODY, indent=4).encode(), headers)
    verifier()(canonical(BODY), {k: v.encode() for k, v in headers.items()})


def test_every_active_key_is_accepted_for_rotation() -> None:
    verifier()(canonical(BODY), sign(BODY, "ops-2", KEYS["ops-2"]))


def test_a_changed_request_no_longer_matches_its_signature() -> None:
    headers = sign(BODY, "ops-1", KEYS["ops-1"])
    assert reason({**BODY, "flavor": "m9.huge"}, headers) == "bad_signature"


def test_unsigned_unknown_key_and_wrong_secret_are_refused() -> None:
    assert reason(BODY, {}) == "unsigned"
    assert reason(BODY, sign(BODY, "ops-9", "c" * 32)) == "unknown_key"
    assert reason(BODY, sign(BODY, "ops-1", "c" * 32)) == "bad_signature"


def test_old_requests_are_refused_as_expired_and_those_dated_ahead_as_future() -> None:
    old = {**BODY, "timestamp": (NOW - timedelta(minutes=6)).isoformat()}
    future = {**BODY, "timestamp": (NOW + timedelta(minutes=2)).isoformat()}
    assert reason(old, sign(old, "ops-1", KEYS["ops-1"])) == "expired"
    assert reason(future, sign(future, "ops-1", KEYS["ops-1"])) == "future"


def test_a_request_a_little_ahead_of_the_clock_is_within_the_skew() -> None:
    ahead = {**BODY, "timestamp": (NOW + timedelta(seconds=30)).isoformat()}
    assert verifier()(canonical(ahead), sign(ahead, "ops-1", KEYS["ops-1"])) == "ops-1"


def test_the_verifier_names_the_key_that_vouches_for_the_request() -> None:
    assert verifier()(canonical(BODY), sign(BODY, "ops-2", KEYS["ops-2"])) == "ops-2"


def test_a_signature_header_that_is_not_ascii_is_a_bad_signature_not_a_crash() -> None:
    headers = {**sign(BODY, "ops-1", KEYS["ops-1"]), "x-autopilot-signature": "é" * 64}
    assert reason(BODY, headers) == "bad_signature"


def test_a_deeply_nested_signed_body_is_refused_before_it_is_decoded() -> None:
    headers = sign(BODY, "ops-1", KEYS["ops-1"])
    with pytest.raises(BadMessage) as caught:
        verifier()(b"[" * 100_000, headers)
    assert caught.value.reason == "too_deep"


def write_keys(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "signing-keys.yaml"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_keys_are_loaded_from_a_private_file(tmp_path: Path) -> None:
    path = write_keys(tmp_path, "keys:\n  ops-1: " + "x" * 20 + "\n")
    assert load_keys(path) == {"ops-1": "x" * 20}


@pytest.mark.parametrize(
    ("text", "mode", "message"),
    [
        ("keys:\n  ops-1: " + "x" * 20 + "\n", 0o644, "open to group or others"),
        ("keys:\n  ops-1: short\n", 0o600, "shorter than"),
        ("keys: {}\n", 0o600, "non-empty 'keys'"),
        ("keys: [\n", 0o600, "not valid YAML"),
    ],
)
def test_a_bad_keys_file_stops_the_daemon_with_a_clear_error(
    tmp_path: Path, text: str, mode: int, message: str
) -> None:
    with pytest.raises(KeyFileError, match=message):
        load_keys(write_keys(tmp_path, text, mode))


def test_a_missing_keys_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="signing keys file"):
        load_keys(tmp_path / "nope.yaml")
