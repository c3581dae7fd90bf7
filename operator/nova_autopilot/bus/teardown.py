"""Removing the notification queues a short-lived listener declared.

The daemon's pool queue, its retry queues and its dead-letter queue outlive
the daemon on purpose: the broker keeps what was not handled. A listener
that comes and goes on someone else's broker (``nova-autopilot demo
--cloud``, on the vhost of a real Nova) gives them names of its own and
deletes them when it is done, so that nothing of it keeps collecting
copies of the cloud's notifications.
"""

from __future__ import annotations

from oslo_config import cfg

from nova_autopilot.bus.connection import connect, notification_broker
from nova_autopilot.bus.topology import notification_topology

__all__ = ["delete_notification_queues", "notification_queue_names"]


def notification_queue_names(conf: cfg.ConfigOpts) -> tuple[str, ...]:
    """The queues the notification intake configured by ``conf`` declares."""
    broker = notification_broker(conf)
    topology = notification_topology(conf, broker, delays=conf.notifications.retry_delays)
    return (
        topology.queue_name,
        *(str(queue.name) for queue in topology.delay_queues),
        str(topology.dead_letter_queue.name),
    )


def delete_notification_queues(conf: cfg.ConfigOpts) -> tuple[str, ...]:
    """Delete the pool queue, its retry queues and its dead-letter queue
    (with whatever they hold); the names deleted. Nova's exchange stays."""
    names = notification_queue_names(conf)
    with connect(notification_broker(conf)) as connection:
        channel = connection.channel()
        for name in names:
            channel.queue_delete(queue=name)
    return names
