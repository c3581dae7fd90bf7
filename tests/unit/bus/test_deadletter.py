"""Dead letters and retries carry why and where from in their headers; bodies are untouched."""

from __future__ import annotations

from datetime import datetime, timezone

from hypothesis import given
from hypothesis import strategies as st

from nova_autopilot.bus import deadletter as dl

FAILED_AT = datetime(2026, 11, 25, 20, 30, 46, tzinfo=timezone.utc)


def test_a_dead_letter_keeps_the_original_headers_and_says_why_and_where_from() -> None:
    headers = dl.dead_letter_headers(
        {"x-trace": "abc"},
        reason="not_json",
        detail="message body is not JSON",
        source="nova",
        failed_at=FAILED_AT,
        attempts=0,
        queue="nova-autopilot",
        exchange="nova",
        routing_key="versioned_notifications.info",
    )

    assert headers == {
        "x-trace": "abc",
        "x-autopilot-reason": "not_json",
        "x-autopilot-detail": "message body is not JSON",
        "x-autopilot-source": "nova",
        "x-autopilot-failed-at": "2026-11-25T20:30:46+00:00",
        "x-autopilot-attempts": 0,
        "x-autopilot-queue": "nova-autopilot",
        "x-autopilot-exchange": "nova",
        "x-autopilot-routing-key": "versioned_notifications.info",
    }


def test_a_retried_message_remembers_its_first_exchange_and_the_next_attempt() -> None:
    first = dl.retry_headers(
        {},
        next_attempt=2,
        last_error="CloudUnavailable: 503",
        exchange="nova",
        routing_key="versioned_notifications.info",
    )
    # back from the delay queue, it arrives through the default exchange
    second = dl.retry_headers(
        first, next_attempt=3, last_error="CloudUnavailable: 503", exchange="", routing_key="q"
    )

    assert dl.attempt_of(first) == 2
    assert dl.attempt_of(second) == 3
    assert second["x-autopilot-exchange"] == "nova"
    assert second["x-autopilot-routing-key"] == "versioned_notifications.info"


def test_a_dead_letter_after_retries_drops_the_retry_bookkeeping_but_keeps_the_origin() -> None:
    retried = dl.retry_headers(
        {"x-trace": "abc"}, next_attempt=4, last_error="boom", exchange="nova", routing_key="k"
    )

    headers = dl.dead_letter_headers(
        retried,
        reason="retries_exhausted",
        detail="boom",
        source="nova",
        failed_at=FAILED_AT,
        attempts=4,
        queue="q",
        exchange="",
        routing_key="q",
    )

    assert dl.ATTEMPT not in headers
    assert dl.LAST_ERROR not in headers
    assert headers["x-autopilot-exchange"] == "nova"
    assert headers["x-autopilot-routing-key"] == "k"
    assert headers["x-autopilot-attempts"] == 4
    assert headers["x-trace"] == "abc"


def test_the_attempt_is_read_from_ints_strings_and_bytes_and_defaults_to_one() -> None:
    assert dl.attempt_of({}) == 1
    assert dl.attempt_of({dl.ATTEMPT: 3}) == 3
    assert dl.attempt_of({dl.ATTEMPT: "4"}) == 4
    assert dl.attempt_of({dl.ATTEMPT: b"5"}) == 5
    assert dl.attempt_of({dl.ATTEMPT: "many"}) == 1
    assert dl.attempt_of({dl.ATTEMPT: -7}) == 1


@given(
    st.one_of(st.none(), st.integers(), st.text(), st.binary(), st.floats(), st.lists(st.none()))
)
def test_reading_the_attempt_never_fails_whatever_the_header_holds(value: object) -> None:
    attempt = dl.attempt_of({dl.ATTEMPT: value})

    assert 1 <= attempt <= 1_000_000


def test_copies_keep_the_identity_properties_but_not_expiration_or_user_id() -> None:
    kept = dl.kept_properties(
        {
            "content_type": "application/json",
            "content_encoding": "utf-8",
            "correlation_id": "req-1",
            "reply_to": "replies",
            "message_id": "m-1",
            "expiration": "60000",
            "user_id": "nova",
            "delivery_mode": 1,
        }
    )

    assert kept == {
        "content_type": "application/json",
        "content_encoding": "utf-8",
        "correlation_id": "req-1",
        "reply_to": "replies",
        "message_id": "m-1",
    }


def test_a_body_without_a_content_type_is_kept_as_opaque_bytes() -> None:
    assert dl.kept_properties({}) == {
        "content_type": "application/octet-stream",
        "content_encoding": "binary",
    }
