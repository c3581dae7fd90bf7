"""Publishing the sandbox's notifications through oslo.messaging, as Nova does.

This is the Nova side of the bus, and the only module of the sandbox that
imports oslo.messaging (which is slow to import: load this module only when
notifications are wanted). Like Nova with ``[oslo_messaging_notifications]
driver = messagingv2`` and ``[notifications] notification_format =
versioned``, it sends on the ``nova`` exchange to the topic
``versioned_notifications`` (routing keys ``versioned_notifications.info``
and ``.error``), wrapped in oslo.messaging's 2.0 envelope.

Any transport oslo.messaging knows works: ``rabbit://...`` for a real
broker, ``kombu+memory:////`` for kombu's in-process broker, ``fake://``
(then pass the same transport object to the listener, the fake driver
keeps its messages per transport).
"""

from __future__ import annotations

import threading
import warnings
from typing import Any

from oslo_config import cfg

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # importing oslo.messaging warns about eventlet: not ours
    import oslo_messaging
    from oslo_messaging import opts as messaging_opts

from nova_autopilot.sandbox.outbox import Notification

EXCHANGE = "nova"
TOPIC = "versioned_notifications"


def make_conf() -> cfg.ConfigOpts:
    """A private configuration (never the global one) with Nova's control exchange."""
    conf = cfg.ConfigOpts()
    conf([], project="nova", default_config_files=[], default_config_dirs=[])
    for group, opts in messaging_opts.list_opts():
        conf.register_opts(opts, group=group)
    conf.set_override("control_exchange", EXCHANGE)
    return conf


def notification_transport(url: str, conf: cfg.ConfigOpts | None = None) -> Any:
    """An oslo.messaging notification transport for ``url`` on Nova's exchange."""
    return oslo_messaging.get_notification_transport(conf or make_conf(), url=url)


class OsloPublisher:
    """Sends notifications with oslo.messaging's ``Notifier`` (driver ``messagingv2``)."""

    def __init__(
        self,
        *,
        transport_url: str | None = None,
        transport: Any = None,
        topics: tuple[str, ...] = (TOPIC,),
        retry: int = 3,
    ) -> None:
        """``retry``: how often to retry a send when the broker is away (then it is counted
        as failed; oslo.messaging's default would retry forever)."""
        if (transport_url is None) == (transport is None):
            raise ValueError("give either a transport URL or a transport")
        self._owns_transport = transport is None
        self.transport = (
            transport if transport is not None else notification_transport(str(transport_url))
        )
        self._notifier = oslo_messaging.Notifier(
            self.transport, driver="messagingv2", topics=list(topics), retry=retry
        )
        self._prepared: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _for(self, publisher_id: str) -> Any:
        with self._lock:
            notifier = self._prepared.get(publisher_id)
            if notifier is None:
                notifier = self._notifier.prepare(publisher_id=publisher_id)
                self._prepared[publisher_id] = notifier
            return notifier

    def publish(self, notification: Notification) -> None:
        notifier = self._for(notification.publisher_id)
        send = notifier.error if notification.priority == "ERROR" else notifier.info
        send(dict(notification.context), notification.event_type, notification.payload)

    def close(self) -> None:
        if self._owns_transport:
            self.transport.cleanup()
