"""The bus: RabbitMQ in and out.

* Nova notifications are read from the daemon's own pool queue on Nova's
  exchange (configured with oslo.messaging's options, consumed with kombu);
* operator requests from a durable request queue;
* results go to a results exchange and to each request's ``reply_to``.

Every message is delivered to a :class:`Handler` as an
:class:`~nova_autopilot.events.Event` with its :class:`Delivery` (or, to a
:class:`Batched` handler, with the others at hand); what the handler does
decides between acknowledgement, delayed retry and the dead-letter queue.
Only this package imports oslo.messaging and kombu. ``docs/messaging.md``
describes the topology and the guarantees.

The daemon sees it as one :class:`Bus`: both intakes, the results, one switch::

    bus = Bus(conf=conf, notification_handler=engine.handle,
              request_handler=engine.handle, verify=verifier)
    bus.start()
    bus.wait_ready(30)          # readiness: both consumers attached
    ...
    bus.alive()                 # watchdog: consumers attached and turning
    bus.results.publish(result, action="resize", outcome="confirmed",
                        correlation_id=delivery.correlation_id,
                        reply_to=delivery.reply_to)
    ...
    bus.stop(timeout=30)        # SIGTERM: drain, close, leave the rest queued

A request the handler refuses (``BadMessage``: ``replayed``,
``not_authorized``...) is dead-lettered, told to ``on_refused``, and answered
on its ``reply_to`` with outcome ``refused`` and the reason. One refused
before its signature was verified (forged, unsigned, expired...) is never
answered: a reply would let whoever forged it make the daemon publish to a
queue of their choosing.

The transport URL alone decides between RabbitMQ and the in-process broker
(``memory://``) of the demo.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from oslo_config import cfg

from nova_autopilot.bus.client import Reply, RequestClient
from nova_autopilot.bus.connection import BrokerSettings, notification_broker, request_broker
from nova_autopilot.bus.delivery import (
    RETRIES_EXHAUSTED,
    Batched,
    Delivery,
    Handler,
    RefusalSink,
    Refused,
)
from nova_autopilot.bus.intake import Intake, IntakeHealth
from nova_autopilot.bus.results import ResultPublisher, result_routing_key
from nova_autopilot.bus.settlement import Counters, CounterSnapshot
from nova_autopilot.bus.sources import (
    RequestCheck,
    Verifier,
    accept_all,
    bound_decompression,
    notification_intake,
    request_intake,
)
from nova_autopilot.bus.topology import request_exchange, request_topology, results_exchange
from nova_autopilot.logs import get_logger

__all__ = [
    "RETRIES_EXHAUSTED",
    "Batched",
    "BrokerSettings",
    "Bus",
    "BusHealth",
    "CounterSnapshot",
    "Counters",
    "Delivery",
    "Handler",
    "Intake",
    "IntakeHealth",
    "RefusalSink",
    "Refused",
    "Reply",
    "RequestCheck",
    "RequestClient",
    "ResultPublisher",
    "Verifier",
    "accept_all",
    "notification_broker",
    "notification_intake",
    "request_broker",
    "request_intake",
    "result_routing_key",
]

log = get_logger("nova_autopilot.bus")


@dataclass(frozen=True, slots=True)
class BusHealth:
    """``alive`` is what readiness and the systemd watchdog use; ``intakes``
    say which consumer is not attached, since when, and why."""

    alive: bool
    intakes: tuple[IntakeHealth, ...]


class Bus:
    """Nova notifications in, operator requests in, results out.

    Either handler may be None: that intake is then not started (a daemon
    that only listens to Nova, a tool that only sends results).
    """

    def __init__(
        self,
        *,
        conf: cfg.ConfigOpts,
        notification_handler: Handler | None = None,
        request_handler: Handler | None = None,
        verify: Verifier = accept_all,
        check_request: RequestCheck | None = None,
        on_refused: RefusalSink | None = None,
        retry_delays: Sequence[float] | None = None,
    ) -> None:
        """``verify`` checks each request's signature, ``check_request`` whether
        its key may send it; ``on_refused`` is told of every request dead-lettered."""
        self._conf = conf
        self._on_refused = on_refused
        bound_decompression(max(conf.intake.max_message_bytes, conf.requests.max_message_bytes))
        self._request_broker = request_broker(conf)
        self.notifications: Intake | None = None
        self.requests: Intake | None = None
        if notification_handler is not None:
            self.notifications = notification_intake(
                conf,
                handler=notification_handler,
                broker=notification_broker(conf),
                retry_delays=retry_delays,
            )
        if request_handler is not None:
            self.requests = request_intake(
                conf,
                handler=request_handler,
                verify=verify,
                check=check_request,
                on_dead_letter=self._refused,
                broker=self._request_broker,
                retry_delays=retry_delays,
            )
        self.results = ResultPublisher(broker=self._request_broker, exchange=results_exchange(conf))
        self._started = False
        self._stopped = False

    def _refused(self, refused: Refused) -> None:
        """A request was dead-lettered: tell ``on_refused``, then answer the
        requester when the handler refused it (its signature was verified)."""
        try:
            if self._on_refused is not None:
                self._on_refused(refused)
        finally:
            if refused.event is not None and refused.reply_to:
                self._answer_refusal(refused, refused.reply_to)

    def _answer_refusal(self, refused: Refused, reply_to: str) -> None:
        event = refused.event
        assert event is not None
        answer: dict[str, Any] = {
            "request_id": event.request_id,
            "type": event.event_type,
            "action": None,
            "outcome": "refused",
            "reason": f"{refused.reason}: {refused.detail}",
            "refused": refused.reason,
        }
        try:
            self.results.reply(answer, correlation_id=refused.correlation_id, reply_to=reply_to)
        except Exception as exc:  # noqa: BLE001 - the dead letter is kept: that is what counts
            log.warning(
                "intake.refusal_not_answered",
                reason=refused.reason,
                reply_to=reply_to,
                error=f"{type(exc).__name__}: {exc}",
            )

    @property
    def intakes(self) -> tuple[Intake, ...]:
        return tuple(i for i in (self.notifications, self.requests) if i is not None)

    def start(self) -> None:
        """Start consuming (in background threads); returns at once."""
        if self._started or self._stopped:
            raise RuntimeError("a bus starts once; build a new one")
        self._started = True
        for intake in self.intakes:
            intake.start()
        log.info("bus.started", intakes=[i.name for i in self.intakes])

    def wait_ready(self, timeout: float) -> bool:
        """Wait until every intake is attached to its queue."""
        deadline = time.monotonic() + timeout
        return all(i.wait_ready(max(0.0, deadline - time.monotonic())) for i in self.intakes)

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop taking messages, let handler calls in progress finish (for up
        to ``timeout`` seconds in all), close. Unhandled messages stay with the
        broker. True when no handler call was cut short."""
        self._stopped = True
        deadline = time.monotonic() + timeout
        clean = True
        for intake in self.intakes:  # signal all first, so they drain together
            intake.begin_stop(timeout)
        for intake in self.intakes:
            clean = intake.stop(max(0.0, deadline - time.monotonic())) and clean
        self.results.close()
        return clean

    def alive(self) -> bool:
        """True when every intake is attached and turning."""
        return all(i.alive() for i in self.intakes)

    def health(self) -> BusHealth:
        intakes = tuple(i.health() for i in self.intakes)
        return BusHealth(alive=all(h.alive for h in intakes), intakes=intakes)

    def counters(self) -> dict[str, CounterSnapshot]:
        """``{"notifications": ..., "requests": ...}`` for the metrics layer."""
        return {i.name: i.counters.snapshot() for i in self.intakes}

    def client(self) -> RequestClient:
        """A request client on the same broker (the demo sends requests with it)."""
        topology = request_topology(self._conf, self._request_broker, delays=())
        return RequestClient(
            broker=self._request_broker,
            exchange=request_exchange(self._conf),
            declare=[topology.queue],
        )
