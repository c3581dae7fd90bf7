"""The intake of Nova's versioned (and optionally legacy) notifications.

The daemon reads its own pool queue (``[notifications] pool``) bound to
Nova's exchange with the routing keys ``<topic>.info`` and ``<topic>.error``
of every topic in ``[notifications] topics`` and ``legacy_topics``: it gets a
copy of each notification and takes nothing away from other consumers, such
as those of Nova's own ``versioned_notifications.info`` queue.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from oslo_config import cfg

from nova_autopilot.bus.connection import BrokerSettings, notification_broker
from nova_autopilot.bus.copies import RetryPlan
from nova_autopilot.bus.delivery import Handler
from nova_autopilot.bus.intake import Intake
from nova_autopilot.bus.settlement import Counters
from nova_autopilot.bus.topology import notification_topology
from nova_autopilot.events import Event, parse_message

__all__ = ["notification_intake"]


def notification_intake(
    conf: cfg.ConfigOpts,
    *,
    handler: Handler,
    broker: BrokerSettings | None = None,
    retry_delays: Sequence[float] | None = None,
    counters: Counters | None = None,
) -> Intake:
    """An :class:`Intake` of Nova notifications configured from ``conf``.

    ``retry_delays`` overrides ``[notifications] retry_delays`` (whose unit is
    whole seconds); tests use fractions of a second.
    """
    broker = broker or notification_broker(conf)
    delays = list(conf.notifications.retry_delays if retry_delays is None else retry_delays)
    max_bytes = conf.intake.max_message_bytes
    max_depth = conf.intake.max_json_depth

    def decode(body: bytes, headers: Mapping[str, Any]) -> Event:
        del headers
        return parse_message(body, expect="nova", max_bytes=max_bytes, max_depth=max_depth)

    return Intake(
        name="notifications",
        topology=notification_topology(conf, broker, delays=delays),
        broker=broker,
        decode=decode,
        handler=handler,
        threads=conf.notifications.executor_threads,
        retry=RetryPlan.of(delays),
        counters=counters,
    )
