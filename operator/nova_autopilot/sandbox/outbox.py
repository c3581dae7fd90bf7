"""The sandbox's notifications: recorded in order, and handed to a publisher in that order.

Every notification the sandbox emits is recorded (tests and the admin
endpoint read them) and, when a publisher is configured, published by one
background thread in exactly the order emitted. Emitting happens under the
state lock, so that order is the order in which the states changed.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger(__name__)

DEFAULT_KEEP = 100_000
"""How many notifications the outbox remembers (the oldest are forgotten first)."""


@dataclass(frozen=True)
class Notification:
    """One versioned notification, without its transport envelope."""

    event_type: str
    priority: str
    """``INFO`` or ``ERROR``."""
    publisher_id: str
    payload: dict[str, Any]
    context: dict[str, Any]
    """The request context oslo.messaging sends along (``_context_*`` keys on the wire)."""
    timestamp: str
    message_id: str

    @property
    def data(self) -> dict[str, Any]:
        data = self.payload.get("nova_object.data", {})
        return data if isinstance(data, dict) else {}

    @property
    def instance_uuid(self) -> str | None:
        data = self.data
        if "uuid" in data:
            return str(data["uuid"])
        if "instance_uuid" in data:
            return str(data["instance_uuid"])
        return None

    def as_message(self) -> dict[str, Any]:
        """As a consumer sees it once the envelope is opened."""
        message: dict[str, Any] = {f"_context_{k}": v for k, v in self.context.items()}
        message.update(
            {
                "message_id": self.message_id,
                "publisher_id": self.publisher_id,
                "event_type": self.event_type,
                "priority": self.priority,
                "payload": self.payload,
                "timestamp": self.timestamp,
            }
        )
        return message


def stamp() -> tuple[str, str]:
    """A new message id and an oslo.messaging-style timestamp (UTC)."""
    now = time.time()
    text = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}"
    return str(uuid.uuid4()), text


class Publisher(Protocol):
    """Where notifications go besides the record (oslo.messaging, see :mod:`.oslo_publisher`)."""

    def publish(self, notification: Notification) -> None: ...

    def close(self) -> None: ...


class Outbox:
    """Records notifications and feeds them, in order, to an optional publisher."""

    def __init__(self, *, publisher: Publisher | None = None, keep: int = DEFAULT_KEEP) -> None:
        self._publisher = publisher
        self._lock = threading.Condition()
        self._record: deque[Notification] = deque(maxlen=keep)
        self._queue: queue.Queue[Notification | None] = queue.Queue()
        self._unpublished = 0
        self._failures = 0
        self._listeners: list[Callable[[Notification], None]] = []
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._publisher is None or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="sandbox-notifier", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Publish what is still queued (within ``timeout``), then stop and close the publisher."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self.flush(timeout)
            self._queue.put(None)
            thread.join(timeout)
        if self._publisher is not None:
            self._publisher.close()

    def emit(self, notification: Notification) -> None:
        with self._lock:
            self._record.append(notification)
            listeners = list(self._listeners)
            if self._publisher is not None:
                self._unpublished += 1
                self._queue.put(notification)
            self._lock.notify_all()
        for listener in listeners:
            listener(notification)

    def subscribe(self, listener: Callable[[Notification], None]) -> None:
        """Call ``listener`` with every notification from now on (in the emitting thread)."""
        with self._lock:
            self._listeners.append(listener)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything emitted so far is published; False if time ran out."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._unpublished and self._thread is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(left)
        return True

    def all(self) -> list[Notification]:
        with self._lock:
            return list(self._record)

    def for_server(self, server_id: str) -> list[Notification]:
        return [n for n in self.all() if n.instance_uuid == server_id]

    def event_types(self, server_id: str, *, updates: bool = False) -> list[str]:
        """Event types about one server, in order; ``instance.update`` only if asked."""
        return [
            n.event_type
            for n in self.for_server(server_id)
            if updates or n.event_type != "instance.update"
        ]

    def clear(self) -> None:
        with self._lock:
            self._record.clear()

    @property
    def failures(self) -> int:
        """Notifications the publisher could not send."""
        with self._lock:
            return self._failures

    def _run(self) -> None:
        publisher = self._publisher
        assert publisher is not None
        while True:
            notification = self._queue.get()
            if notification is None:
                return
            try:
                publisher.publish(notification)
            except Exception:
                log.exception("sandbox.notification_failed event_type=%s", notification.event_type)
                with self._lock:
                    self._failures += 1
            finally:
                with self._lock:
                    self._unpublished -= 1
                    self._lock.notify_all()
