"""What became of one message: the handler's result, classified.

:func:`run_handler` is the one place where a handler's exception is caught:
it never lets one escape, so a bug in a handler costs one message (which is
dead-lettered, not lost) and never the consuming thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from nova_autopilot.bus.delivery import Delivery, Handler
from nova_autopilot.errors import BadMessage, TemporaryError
from nova_autopilot.events import Event
from nova_autopilot.logs import get_logger

__all__ = [
    "ABANDONED",
    "HANDLED",
    "RETRIES_EXHAUSTED",
    "Abandoned",
    "DeadLetter",
    "Handled",
    "Outcome",
    "Retry",
    "handler_error_reason",
    "run_handler",
]

log = get_logger("nova_autopilot.bus")

#: Dead-letter reason of a message whose handler kept failing temporarily.
RETRIES_EXHAUSTED: Final = "retries_exhausted"
_MAX_DETAIL = 1000


@dataclass(frozen=True, slots=True)
class Handled:
    """The handler returned: acknowledge."""


@dataclass(frozen=True, slots=True)
class Retry:
    """The handler failed temporarily: try again after the next delay."""

    detail: str


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """The message cannot be processed: keep it in the dead-letter queue."""

    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class Abandoned:
    """Not processed (the bus is stopping or the connection was lost): leave
    it unacknowledged, the broker delivers it again."""


Outcome = Handled | Retry | DeadLetter | Abandoned
HANDLED: Final = Handled()
ABANDONED: Final = Abandoned()


def handler_error_reason(exc: BaseException) -> str:
    return f"handler_error: {type(exc).__name__}"


def shorten(text: str) -> str:
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 3] + "..."


def run_handler(handler: Handler, event: Event, delivery: Delivery) -> Outcome:
    """Call ``handler`` and classify what it did."""
    try:
        handler(event, delivery)
    except TemporaryError as exc:
        return Retry(shorten(f"{type(exc).__name__}: {exc}"))
    except BadMessage as exc:
        return DeadLetter(exc.reason, shorten(exc.detail))
    except Exception as exc:  # a handler bug costs one message, never the bus
        log.error(
            "intake.handler_failed",
            source=delivery.source,
            message_id=delivery.message_id,
            event_type=event.event_type,
            error=type(exc).__name__,
            exc_info=True,
        )
        return DeadLetter(handler_error_reason(exc), shorten(f"{type(exc).__name__}: {exc}"))
    return HANDLED
