"""The bus: RabbitMQ in and out.

* Nova notifications are read from the daemon's own pool queue on Nova's
  exchange (configured with oslo.messaging's options, consumed with kombu);
* operator requests from a durable request queue;
* results go to a results exchange and to each request's ``reply_to``.

Every message is delivered to a :class:`Handler` as an
:class:`~nova_autopilot.events.Event` with its :class:`Delivery`; what the
handler does decides between acknowledgement, delayed retry and the
dead-letter queue. Only this package imports oslo.messaging and kombu.
``docs/messaging.md`` describes the topology and the guarantees.
"""

from nova_autopilot.bus.client import Reply, RequestClient
from nova_autopilot.bus.connection import BrokerSettings, notification_broker, request_broker
from nova_autopilot.bus.delivery import RETRIES_EXHAUSTED, Delivery, Handler, RefusalSink, Refused
from nova_autopilot.bus.facade import Bus, BusHealth
from nova_autopilot.bus.intake import Intake, IntakeHealth
from nova_autopilot.bus.results import ResultPublisher, result_routing_key
from nova_autopilot.bus.settlement import Counters, CounterSnapshot
from nova_autopilot.bus.sources import (
    RequestCheck,
    Verifier,
    accept_all,
    notification_intake,
    request_intake,
)

__all__ = [
    "RETRIES_EXHAUSTED",
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
