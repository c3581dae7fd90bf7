"""Copies of failed messages: when a retried one comes back, and what dead letters and
retries carry in their headers (why and where from); bodies are untouched."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nova_autopilot.bus import copies
from nova_autopilot.bus.copies import LocalDelayer, RetryPlan

FAILED_AT = datetime(2026, 11, 25, 20, 30, 46, tzinfo=timezone.utc)


def test_a_dead_letter_keeps_the_original_headers_and_says_why_and_where_from() -> None:
    headers = copies.dead_letter_headers(
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
    first = copies.retry_headers(
        {},
        next_attempt=2,
        last_error="CloudUnavailable: 503",
        exchange="nova",
        routing_key="versioned_notifications.info",
    )
    # back from the delay queue, it arrives through the default exchange
    second = copies.retry_headers(
        first, next_attempt=3, last_error="CloudUnavailable: 503", exchange="", routing_key="q"
    )

    assert copies.attempt_of(first) == 2
    assert copies.attempt_of(second) == 3
    assert second["x-autopilot-exchange"] == "nova"
    assert second["x-autopilot-routing-key"] == "versioned_notifications.info"


def test_a_dead_letter_after_retries_drops_the_retry_bookkeeping_but_keeps_the_origin() -> None:
    retried = copies.retry_headers(
        {"x-trace": "abc"}, next_attempt=4, last_error="boom", exchange="nova", routing_key="k"
    )

    headers = copies.dead_letter_headers(
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

    assert copies.ATTEMPT not in headers
    assert copies.LAST_ERROR not in headers
    assert headers["x-autopilot-exchange"] == "nova"
    assert headers["x-autopilot-routing-key"] == "k"
    assert headers["x-autopilot-attempts"] == 4
    assert headers["x-trace"] == "abc"


def test_the_attempt_is_read_from_ints_strings_and_bytes_and_defaults_to_one() -> None:
    assert copies.attempt_of({}) == 1
    assert copies.attempt_of({copies.ATTEMPT: 3}) == 3
    assert copies.attempt_of({copies.ATTEMPT: "4"}) == 4
    assert copies.attempt_of({copies.ATTEMPT: b"5"}) == 5
    assert copies.attempt_of({copies.ATTEMPT: "many"}) == 1
    assert copies.attempt_of({copies.ATTEMPT: -7}) == 1


@given(
    st.one_of(st.none(), st.integers(), st.text(), st.binary(), st.floats(), st.lists(st.none()))
)
def test_reading_the_attempt_never_fails_whatever_the_header_holds(value: object) -> None:
    attempt = copies.attempt_of({copies.ATTEMPT: value})

    assert 1 <= attempt <= 1_000_000


def test_copies_keep_the_identity_properties_but_not_expiration_or_user_id() -> None:
    kept = copies.kept_properties(
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
    assert copies.kept_properties({}) == {
        "content_type": "application/octet-stream",
        "content_encoding": "binary",
    }


def test_each_failed_attempt_waits_for_the_next_delay_until_there_is_none() -> None:
    plan = RetryPlan.of([5, 30, 120])

    assert [plan.delay_after(attempt) for attempt in (1, 2, 3, 4)] == [5, 30, 120, None]


def test_without_delays_the_first_temporary_failure_is_final() -> None:
    assert RetryPlan.of([]).delay_after(1) is None


def test_delays_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        RetryPlan.of([5, 0])


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_local_delayer_releases_messages_when_they_are_due_in_due_order() -> None:
    clock = FakeClock()
    delayer = LocalDelayer(clock=clock)
    delayer.add(2.0, b"late", {})
    delayer.add(1.0, b"early", {})

    assert delayer.due() == []
    clock.now += 1.5
    assert delayer.due() == [(b"early", {})]
    clock.now += 1.0
    assert delayer.due() == [(b"late", {})]
    assert len(delayer) == 0


def test_draining_the_local_delayer_releases_everything_at_once() -> None:
    delayer = LocalDelayer(clock=FakeClock())
    delayer.add(30.0, b"b", {"headers": {}})
    delayer.add(5.0, b"a", {})

    assert delayer.drain() == [(b"a", {}), (b"b", {"headers": {}})]
    assert len(delayer) == 0
