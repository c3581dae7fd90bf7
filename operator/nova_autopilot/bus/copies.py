"""The copies the bus publishes of a failed message: when they come back, what they say.

A failed message is never changed in place: a copy of it goes to a delay queue
(a delayed retry) or to the dead-letter queue, and only then is the original
acknowledged (:mod:`.settlement`).

On RabbitMQ a retried message is published to a delay queue, one per delay
(``<queue>.retry.30s``), whose message TTL dead-letters it back to the work
queue through the default exchange: the wait survives a restart of the daemon
and never blocks a consumer, and only the daemon's own queue gets the message
back. The in-memory broker of the demo has no TTL: :class:`LocalDelayer`
keeps the message in the process instead, and puts every waiting message back
at once when the bus stops, so a stop loses nothing there either.

A dead-lettered message keeps its body byte for byte, its content type and
encoding, its correlation id, reply-to, message id, timestamp and headers;
these headers say why and where it came from:

=========================  =====================================================
``x-autopilot-reason``     short, stable: ``not_json``, ``too_large``,
                           ``retries_exhausted``, ``handler_error: KeyError``...
``x-autopilot-detail``     what exactly was wrong (at most 1,000 characters)
``x-autopilot-source``     ``nova`` or ``request``
``x-autopilot-failed-at``  when (ISO-8601, UTC)
``x-autopilot-attempts``   how many times the handler was tried (0: never parsed)
``x-autopilot-queue``      the queue it was consumed from
``x-autopilot-exchange``   the exchange it was first published to
``x-autopilot-routing-key`` and its routing key there: re-publishing the body
                           there with the same headers replays it
=========================  =====================================================

A message sent for a delayed retry carries ``x-autopilot-attempt`` (the
number of its next delivery), the original exchange and routing key, and
``x-autopilot-last-error``.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

__all__ = [
    "ATTEMPT",
    "ATTEMPTS",
    "DETAIL",
    "EXCHANGE",
    "FAILED_AT",
    "LAST_ERROR",
    "QUEUE",
    "REASON",
    "ROUTING_KEY",
    "SOURCE",
    "LocalDelayer",
    "RetryPlan",
    "attempt_of",
    "dead_letter_headers",
    "kept_properties",
    "retry_headers",
]

REASON: Final = "x-autopilot-reason"
DETAIL: Final = "x-autopilot-detail"
SOURCE: Final = "x-autopilot-source"
FAILED_AT: Final = "x-autopilot-failed-at"
ATTEMPTS: Final = "x-autopilot-attempts"
QUEUE: Final = "x-autopilot-queue"
EXCHANGE: Final = "x-autopilot-exchange"
ROUTING_KEY: Final = "x-autopilot-routing-key"
ATTEMPT: Final = "x-autopilot-attempt"
LAST_ERROR: Final = "x-autopilot-last-error"

#: Message properties carried over when a message is re-published. Not
#: ``expiration`` (it would expire in the dead-letter queue) nor ``user_id``
#: (the broker checks it against the publishing user).
_KEPT_PROPERTIES = (
    "content_type",
    "content_encoding",
    "correlation_id",
    "reply_to",
    "message_id",
    "timestamp",
    "type",
    "app_id",
    "priority",
)
_MAX_ATTEMPT = 1_000_000


def attempt_of(headers: Mapping[str, Any]) -> int:
    """The delivery number carried by a retried message (1 when absent or bad)."""
    value = headers.get(ATTEMPT)
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    try:
        attempt = int(value) if value is not None else 1
    except (TypeError, ValueError, OverflowError):
        return 1
    return min(max(attempt, 1), _MAX_ATTEMPT)


def kept_properties(properties: Mapping[str, Any]) -> dict[str, Any]:
    """The properties of a received message that a re-published copy keeps."""
    kept = {name: properties[name] for name in _KEPT_PROPERTIES if properties.get(name) is not None}
    kept.setdefault("content_type", "application/octet-stream")
    kept.setdefault("content_encoding", "binary")
    return kept


def _origin(headers: Mapping[str, Any], exchange: str, routing_key: str) -> dict[str, Any]:
    """The first exchange and routing key (a retried copy remembers them)."""
    return {
        EXCHANGE: headers.get(EXCHANGE, exchange),
        ROUTING_KEY: headers.get(ROUTING_KEY, routing_key),
    }


def dead_letter_headers(
    headers: Mapping[str, Any],
    *,
    reason: str,
    detail: str,
    source: str,
    failed_at: datetime,
    attempts: int,
    queue: str,
    exchange: str,
    routing_key: str,
) -> dict[str, Any]:
    """The original headers plus the reason and origin of the dead letter."""
    out = {key: value for key, value in headers.items() if key not in (ATTEMPT, LAST_ERROR)}
    out.update(_origin(headers, exchange, routing_key))
    out.update(
        {
            REASON: reason,
            DETAIL: detail,
            SOURCE: source,
            FAILED_AT: failed_at.isoformat(),
            ATTEMPTS: attempts,
            QUEUE: queue,
        }
    )
    return out


def retry_headers(
    headers: Mapping[str, Any],
    *,
    next_attempt: int,
    last_error: str,
    exchange: str,
    routing_key: str,
) -> dict[str, Any]:
    """The original headers plus the attempt number of the next delivery."""
    out = dict(headers)
    out.update(_origin(headers, exchange, routing_key))
    out[ATTEMPT] = next_attempt
    out[LAST_ERROR] = last_error
    return out


# --- delayed retries --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetryPlan:
    """``delays[i]`` is the wait before delivery ``i + 2``; after the last one
    the message is dead-lettered (``retries_exhausted``). No delays: the first
    temporary failure dead-letters."""

    delays: tuple[float, ...] = ()

    @classmethod
    def of(cls, delays: Sequence[float]) -> RetryPlan:
        if any(delay <= 0 for delay in delays):
            raise ValueError(f"retry delays must be positive, got {list(delays)}")
        return cls(tuple(float(delay) for delay in delays))

    def delay_after(self, attempt: int) -> float | None:
        """The wait after delivery number ``attempt`` failed, or None when the
        retries are exhausted."""
        if 1 <= attempt <= len(self.delays):
            return self.delays[attempt - 1]
        return None


@dataclass(order=True, slots=True)
class _Waiting:
    due: float
    seq: int
    body: bytes = field(compare=False)
    properties: dict[str, Any] = field(compare=False)


class LocalDelayer:
    """In-process delays for brokers without message TTL (``memory://``).

    Only the consuming thread uses it: :meth:`add` when a retry is decided,
    :meth:`due` on each turn of its loop, :meth:`drain` when it stops.
    """

    def __init__(self, *, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._heap: list[_Waiting] = []
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, delay: float, body: bytes, properties: dict[str, Any]) -> None:
        heapq.heappush(
            self._heap, _Waiting(self._clock() + delay, next(self._seq), body, properties)
        )

    def due(self) -> list[tuple[bytes, dict[str, Any]]]:
        now = self._clock()
        ready = []
        while self._heap and self._heap[0].due <= now:
            item = heapq.heappop(self._heap)
            ready.append((item.body, item.properties))
        return ready

    def drain(self) -> list[tuple[bytes, dict[str, Any]]]:
        ready = [(item.body, item.properties) for item in sorted(self._heap)]
        self._heap.clear()
        return ready
