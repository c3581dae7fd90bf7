"""What a handler's result means for its message."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from nova_autopilot.bus.delivery import (
    HANDLED,
    DeadLetter,
    Delivery,
    Retry,
    handler_error_reason,
    run_handler,
)
from nova_autopilot.errors import BadMessage, CloudUnavailable, Conflict, TemporaryError
from nova_autopilot.events import Event, parse_message
from tests.samples import on_the_wire, sample

EVENT: Event = parse_message(on_the_wire(sample("instance-update")))
DELIVERY = Delivery(
    source="nova",
    queue="nova-autopilot",
    message_id="m-1",
    redelivered=False,
    attempt=1,
    correlation_id=None,
    reply_to=None,
    headers={},
    received_at=datetime(2026, 11, 25, tzinfo=timezone.utc),
)


def raising(exc: BaseException) -> object:
    def handler(event: Event, delivery: Delivery) -> None:
        raise exc

    return handler


def test_a_handler_that_returns_has_handled_its_message() -> None:
    assert run_handler(lambda event, delivery: None, EVENT, DELIVERY) is HANDLED


@pytest.mark.parametrize(
    "error", [TemporaryError("journal locked"), CloudUnavailable("503", status=503)]
)
def test_a_temporary_error_asks_for_a_retry(error: Exception) -> None:
    outcome = run_handler(raising(error), EVENT, DELIVERY)  # type: ignore[arg-type]

    assert isinstance(outcome, Retry)
    assert type(error).__name__ in outcome.detail


def test_a_bad_message_from_the_handler_is_dead_lettered_with_its_own_reason() -> None:
    outcome = run_handler(
        raising(BadMessage("unknown_type", "no policy knows backup.requested")),  # type: ignore[arg-type]
        EVENT,
        DELIVERY,
    )

    assert outcome == DeadLetter("unknown_type", "no policy knows backup.requested")


@pytest.mark.parametrize(
    "error", [KeyError("flavor"), Conflict("409", status=409), RuntimeError("x" * 5000)]
)
def test_any_other_exception_is_a_handler_error_named_by_its_type(error: Exception) -> None:
    outcome = run_handler(raising(error), EVENT, DELIVERY)  # type: ignore[arg-type]

    assert isinstance(outcome, DeadLetter)
    assert outcome.reason == handler_error_reason(error) == f"handler_error: {type(error).__name__}"
    assert len(outcome.detail) <= 1000
