"""Nova's versioned notifications, read from RabbitMQ the way a consumer would.

A :class:`NotificationListener` declares a queue of its own in the box's
vhost (exclusive, deleted when the listener closes), binds it to the topic
exchange ``nova`` with the routing keys ``versioned_notifications.info`` and
``versioned_notifications.error``, and collects every message in a
:class:`NotificationLog`, decoded from the oslo.messaging envelope, in the
order the broker delivered them. Start it *before* the action whose
notifications a test checks: a queue only receives what is sent after it
exists.
"""

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import kombu

from tests.novabox.waiting import wait_for

EXCHANGE = "nova"
ROUTING_KEYS = ("versioned_notifications.info", "versioned_notifications.error")


@dataclass(frozen=True)
class Notification:
    """One versioned notification, without its transport envelope."""

    event_type: str
    priority: str
    publisher_id: str
    payload: dict[str, Any]
    message_id: str
    timestamp: str

    @property
    def data(self) -> dict[str, Any]:
        """The payload's fields (``payload["nova_object.data"]``)."""
        data = self.payload.get("nova_object.data", {})
        return data if isinstance(data, dict) else {}

    @property
    def payload_name(self) -> str:
        return str(self.payload.get("nova_object.name", ""))

    @property
    def instance_uuid(self) -> str | None:
        """The server this notification is about, if any."""
        data = self.data
        if self.payload_name.startswith("Instance") and "uuid" in data:
            return str(data["uuid"])
        if "instance_uuid" in data:
            return str(data["instance_uuid"])
        request_spec = data.get("request_spec", {})
        if isinstance(request_spec, dict):
            spec_data = request_spec.get("nova_object.data", {})
            if isinstance(spec_data, dict) and "instance_uuid" in spec_data:
                return str(spec_data["instance_uuid"])
        return None

    @property
    def state(self) -> str | None:
        """The instance's vm_state (``state`` field of instance payloads)."""
        value = self.data.get("state")
        return None if value is None else str(value)

    @property
    def task_state(self) -> str | None:
        value = self.data.get("task_state")
        return None if value is None else str(value)

    @property
    def state_update(self) -> dict[str, Any]:
        """For ``instance.update``: old/new state and task state."""
        update = self.data.get("state_update", {})
        if isinstance(update, dict):
            data = update.get("nova_object.data", {})
            return data if isinstance(data, dict) else {}
        return {}

    @classmethod
    def from_message(cls, body: Any) -> "Notification":
        """Decode a message body: the oslo.messaging envelope, or a bare notification."""
        message = json.loads(body) if isinstance(body, bytes | str) else body
        if isinstance(message, dict) and "oslo.message" in message:
            message = json.loads(message["oslo.message"])
        if not isinstance(message, dict):
            raise ValueError(f"not a notification: {body!r:.200}")
        return cls(
            event_type=str(message.get("event_type", "")),
            priority=str(message.get("priority", "")),
            publisher_id=str(message.get("publisher_id", "")),
            payload=message.get("payload") or {},
            message_id=str(message.get("message_id", "")),
            timestamp=str(message.get("timestamp", "")),
        )


class NotificationLog:
    """The notifications a listener received so far, thread-safe, in arrival order."""

    def __init__(self) -> None:
        self._items: list[Notification] = []
        self._lock = threading.Lock()

    def append(self, notification: Notification) -> None:
        with self._lock:
            self._items.append(notification)

    def all(self) -> list[Notification]:
        with self._lock:
            return list(self._items)

    def for_instance(self, uuid: str) -> list[Notification]:
        return [n for n in self.all() if n.instance_uuid == uuid]

    def event_types(self, uuid: str, *, updates: bool = False) -> list[str]:
        """Event types about server ``uuid``, in order; ``instance.update`` only if asked."""
        return [
            n.event_type
            for n in self.for_instance(uuid)
            if updates or n.event_type != "instance.update"
        ]

    def states(self, uuid: str) -> list[tuple[str | None, str | None]]:
        """(vm_state, task_state) of each ``instance.update`` about ``uuid``, repeats removed."""
        seen: list[tuple[str | None, str | None]] = []
        for n in self.for_instance(uuid):
            if n.event_type == "instance.update":
                pair = (n.state, n.task_state)
                if not seen or seen[-1] != pair:
                    seen.append(pair)
        return seen

    def wait_for(
        self, predicate: Callable[[Notification], bool], *, timeout: float = 60.0, what: str
    ) -> Notification:
        """The first notification that satisfies ``predicate``, waiting for it if needed."""

        def find() -> Notification | None:
            return next((n for n in self.all() if predicate(n)), None)

        return wait_for(
            find,
            timeout=timeout,
            what=what,
            interval=0.1,
            describe_last=lambda: (
                f"{len(self.all())} notifications, last: "
                + ", ".join(n.event_type for n in self.all()[-8:])
            ),
        )

    def wait_for_event(
        self, event_type: str, uuid: str | None = None, *, timeout: float = 60.0
    ) -> Notification:
        """The first ``event_type`` notification (about server ``uuid``, if given)."""
        return self.wait_for(
            lambda n: n.event_type == event_type and (uuid is None or n.instance_uuid == uuid),
            timeout=timeout,
            what=f"{event_type}" + (f" for {uuid}" if uuid else ""),
        )


class NotificationListener:
    """Collects the box's versioned notifications from RabbitMQ in a background thread."""

    def __init__(self, amqp_url: str, *, name: str = "novabox-test") -> None:
        self.log = NotificationLog()
        self._amqp_url = amqp_url
        self._queue_name = f"{name}-{time.monotonic_ns()}"
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=self._queue_name, daemon=True)

    def start(self, timeout: float = 15.0) -> NotificationLog:
        """Start consuming; returns once the queue is bound (so nothing sent after is missed)."""
        self._thread.start()
        if not self._ready.wait(timeout):
            self.stop()
            raise TimeoutError(f"notification listener not bound after {timeout:.0f}s")
        if self._error is not None:
            raise self._error
        return self.log

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        exchange = kombu.Exchange(EXCHANGE, type="topic", durable=False, auto_delete=False)
        try:
            with kombu.Connection(self._amqp_url, connect_timeout=10) as connection:
                queue = kombu.Queue(
                    self._queue_name,
                    exchange=exchange,
                    bindings=[kombu.binding(exchange, routing_key=key) for key in ROUTING_KEYS],
                    exclusive=True,
                    auto_delete=True,
                    durable=False,
                )
                with connection.Consumer(
                    queue, callbacks=[self._on_message], accept=["json"], no_ack=True
                ):
                    self._ready.set()
                    while not self._stop.is_set():
                        try:
                            connection.drain_events(timeout=0.2)
                        except TimeoutError:
                            continue
        except BaseException as exc:  # noqa: BLE001 (handed to the test thread)
            self._error = exc
            self._ready.set()

    def _on_message(self, body: Any, message: Any) -> None:
        self.log.append(Notification.from_message(body))


@contextmanager
def listening(amqp_url: str) -> Iterator[NotificationLog]:
    """Collect notifications while the block runs."""
    listener = NotificationListener(amqp_url)
    log = listener.start()
    try:
        yield log
    finally:
        listener.stop()
