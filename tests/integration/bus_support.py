"""Support for the bus's tests on the real RabbitMQ: a vhost of each test's own, and helpers.

Every test gets a fresh vhost (``rabbitmqctl add_vhost``, permissions for the
test user), deleted with everything in it afterwards, so runs never mix and
nothing is left behind. A test module uses the fixture by binding it::

    from tests.integration import bus_support
    rabbit = bus_support.rabbit

(``rabbit_vhosts``, the session's :class:`VhostPool`, is bound in
tests/integration/conftest.py.) rabbitmqctl takes a second or two a call, so a
worker's next vhost is made while the test before runs, and a used one is
deleted while the next test runs; a deletion that failed fails the next test's
set-up, or the session's end.

The broker: 127.0.0.1:5672, guest/guest, managed with ``rabbitmqctl``;
``NOVA_AUTOPILOT_RABBIT_HOST``, ``_PORT``, ``_USER``, ``_PASSWORD`` and
``NOVA_AUTOPILOT_RABBITMQCTL`` override them. When RabbitMQ cannot be reached
the tests are skipped with a loud reason, except in CI (``CI`` set), where
they fail.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NoReturn, Protocol
from urllib.parse import quote

import pytest
from kombu import Connection, Exchange, Producer, Queue
from oslo_config import cfg

from nova_autopilot import settings
from nova_autopilot.bus import Bus, Delivery
from nova_autopilot.bus.connection import register_oslo_options
from nova_autopilot.events import Event
from tests.unavailable import unavailable

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # oslo.messaging warns about eventlet on import
    import oslo_messaging

HOST = os.environ.get("NOVA_AUTOPILOT_RABBIT_HOST", "127.0.0.1")
PORT = int(os.environ.get("NOVA_AUTOPILOT_RABBIT_PORT", "5672"))
USER = os.environ.get("NOVA_AUTOPILOT_RABBIT_USER", "guest")
PASSWORD = os.environ.get("NOVA_AUTOPILOT_RABBIT_PASSWORD", "guest")
RABBITMQCTL = os.environ.get("NOVA_AUTOPILOT_RABBITMQCTL", "rabbitmqctl")
SERVER = "178b0921-8f85-4257-88b6-2e743b5a975c"


def _unavailable(reason: str) -> NoReturn:
    unavailable(f"RABBITMQ UNAVAILABLE, the bus's integration tests did not run: {reason}")


def _ctl(*args: str) -> str:
    result = subprocess.run(
        [RABBITMQCTL, "-q", *args], capture_output=True, text=True, check=False, timeout=60
    )
    if result.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {result.stdout}{result.stderr}")
    return result.stdout


@dataclass(frozen=True)
class Rabbit:
    """One test's own vhost on the real broker."""

    vhost: str

    @property
    def transport_url(self) -> str:
        """oslo.messaging's form, as in Nova's configuration."""
        return f"rabbit://{quote(USER)}:{quote(PASSWORD)}@{HOST}:{PORT}/{quote(self.vhost)}"

    @property
    def amqp_url(self) -> str:
        return f"amqp://{quote(USER)}:{quote(PASSWORD)}@{HOST}:{PORT}/{quote(self.vhost)}"

    def close_all_connections(self) -> None:
        """What an operator (or a broker restart) does to every client of the vhost."""
        _ctl("close_all_connections", "-p", self.vhost, "test")

    def lock_out(self) -> None:
        """Take the test user's rights on the vhost: reconnection attempts fail."""
        _ctl("clear_permissions", "-p", self.vhost, USER)

    def let_in(self) -> None:
        _ctl("set_permissions", "-p", self.vhost, USER, ".*", ".*", ".*")

    def queues(self) -> dict[str, int]:
        """Queue name -> ready messages."""
        rows = json.loads(
            _ctl("list_queues", "-p", self.vhost, "name", "messages", "--formatter", "json") or "[]"
        )
        return {row["name"]: int(row.get("messages") or 0) for row in rows}

    def durability(self, queue: str) -> bool:
        """Whether ``queue`` of the vhost is durable, as the broker says."""
        rows = json.loads(
            _ctl("list_queues", "-p", self.vhost, "name", "durable", "--formatter", "json") or "[]"
        )
        return next(bool(row["durable"]) for row in rows if row["name"] == queue)

    def exchange_durability(self, exchange: str) -> bool:
        """Whether ``exchange`` of the vhost is durable, as the broker says."""
        rows = json.loads(
            _ctl("list_exchanges", "-p", self.vhost, "name", "durable", "--formatter", "json")
            or "[]"
        )
        return next(bool(row["durable"]) for row in rows if row["name"] == exchange)

    def connection_count(self) -> int:
        rows = json.loads(_ctl("list_connections", "vhost", "--formatter", "json") or "[]")
        return sum(1 for row in rows if row.get("vhost") == self.vhost)


class VhostNotAdded(RuntimeError):
    """``rabbitmqctl add_vhost`` failed: the broker cannot be managed."""


def _new_vhost() -> str:
    vhost = f"bus-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        _ctl("add_vhost", vhost)
    except RuntimeError as exc:
        raise VhostNotAdded(str(exc)) from None
    try:
        _ctl("set_permissions", "-p", vhost, USER, ".*", ".*", ".*")
    except RuntimeError:
        _ctl("delete_vhost", vhost)
        raise
    return vhost


class VhostPool:
    """Fresh vhosts for one worker's tests, each made before the test that takes it
    asks (one made ahead), and deleted after it, in two threads of their own."""

    def __init__(self) -> None:
        self._work = ThreadPoolExecutor(max_workers=2, thread_name_prefix="vhosts")
        self._lock = threading.Lock()
        self._ahead: Future[str] | None = None
        self._deletions: list[Future[str]] = []

    def take(self) -> str:
        """A new vhost of the test's own (:class:`VhostNotAdded` if none could be made)."""
        self._raise_failed_deletions(wait=False)
        with self._lock:
            made = self._ahead or self._work.submit(_new_vhost)
            self._ahead = self._work.submit(_new_vhost)
        return made.result()

    def give_back(self, vhost: str) -> None:
        """Delete ``vhost`` with everything in it (soon, in the pool's thread)."""
        with self._lock:
            self._deletions.append(self._work.submit(_ctl, "delete_vhost", vhost))

    def close(self) -> None:
        """Delete the vhost made ahead and wait for every deletion; raises if one failed."""
        with self._lock:
            ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead.exception() is None:
            self.give_back(ahead.result())
        try:
            self._raise_failed_deletions(wait=True)
        finally:
            self._work.shutdown(wait=True)

    def _raise_failed_deletions(self, *, wait: bool) -> None:
        with self._lock:
            done = [f for f in self._deletions if wait or f.done()]
            self._deletions = [f for f in self._deletions if f not in done]
        failed = [str(f.exception()) for f in done if f.exception() is not None]
        if failed:
            raise RuntimeError("a used vhost was not deleted: " + "; ".join(failed))


@pytest.fixture(scope="session")
def rabbit_vhosts() -> Iterator[VhostPool]:
    pool = VhostPool()
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture
def rabbit(rabbit_vhosts: VhostPool) -> Iterator[Rabbit]:
    if shutil.which(RABBITMQCTL) is None:
        _unavailable(f"no {RABBITMQCTL!r} on PATH to create a vhost")
    try:
        with socket.create_connection((HOST, PORT), timeout=5):
            pass
    except OSError as exc:
        _unavailable(f"cannot reach {HOST}:{PORT}: {exc}")
    try:
        vhost = rabbit_vhosts.take()
    except VhostNotAdded as exc:
        _unavailable(str(exc))
    try:
        yield Rabbit(vhost)
    finally:
        rabbit_vhosts.give_back(vhost)


class Broker(Protocol):
    """A broker a test's daemon talks to: a vhost of the shared one (:class:`Rabbit`) or
    a private node (tests/integration/private_rabbit.py)."""

    @property
    def transport_url(self) -> str: ...


def bus_conf(rabbit: Broker, **groups: dict[str, Any]) -> cfg.ConfigOpts:
    """The daemon's configuration for ``rabbit``: its transport URL, Nova's
    exchange (``control_exchange = nova``, as Nova sets it), and ``groups``;
    everything else by default."""
    conf = settings.build_conf()
    conf(args=[], default_config_files=[])
    register_oslo_options(conf)
    conf.set_override("transport_url", rabbit.transport_url)
    conf.set_override("control_exchange", "nova")
    for group, values in groups.items():
        for name, value in values.items():
            conf.set_override(name, value, group=None if group == "DEFAULT" else group)
    return conf


def started(bus: Bus, timeout: float = 15.0) -> Bus:
    bus.start()
    assert bus.wait_ready(timeout), "the bus did not attach to its queues"
    return bus


class Recorder:
    """A handler that records every call; ``behave`` may make it fail or wait."""

    def __init__(self, behave: Callable[[Event, Delivery], None] | None = None) -> None:
        self.calls: list[tuple[Event, Delivery]] = []
        self._behave = behave
        self._changed = threading.Condition()

    def __call__(self, event: Event, delivery: Delivery) -> None:
        with self._changed:
            self.calls.append((event, delivery))
            self._changed.notify_all()
        if self._behave is not None:
            self._behave(event, delivery)

    def wait_until(
        self, predicate: Callable[[list[tuple[Event, Delivery]]], bool], timeout: float = 15.0
    ) -> list[tuple[Event, Delivery]]:
        with self._changed:
            if not self._changed.wait_for(lambda: predicate(self.calls), timeout):
                raise AssertionError(f"not reached after {timeout} s ({len(self.calls)} calls)")
            return list(self.calls)

    def wait_for(self, count: int, timeout: float = 15.0) -> list[tuple[Event, Delivery]]:
        return self.wait_until(lambda calls: len(calls) >= count, timeout)

    def message_ids(self) -> set[str | None]:
        with self._changed:
            return {event.message_id for event, _ in self.calls}


def eventually(check: Callable[[], bool], *, timeout: float = 15.0, what: str = "") -> None:
    """Wait until ``check()`` holds (polling a condition under a deadline)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout} s: {what or check}")
        time.sleep(0.02)


def take_all(rabbit: Rabbit, queue: str) -> list[Any]:
    """Every message now in ``queue`` (removed from it)."""
    messages = []
    with Connection(rabbit.amqp_url) as conn:
        channel = conn.default_channel
        channel.auto_decode = False  # bodies exactly as they are in the queue
        bound = Queue(queue, no_declare=True)(channel)
        while (message := bound.get(no_ack=True)) is not None:
            messages.append(message)
    return messages


def body_of(message: Any) -> bytes:
    """A message's body as bytes (py-amqp gives an empty body as ``""``)."""
    body = message.body
    return body.encode() if isinstance(body, str) else bytes(body)


def publish_raw(
    rabbit: Rabbit,
    bodies: list[bytes],
    *,
    exchange: str = "nova",
    routing_key: str = "versioned_notifications.info",
    headers: dict[str, Any] | None = None,
) -> None:
    """Publish ``bodies`` exactly as given (confirmed by the broker)."""
    with Connection(rabbit.amqp_url, transport_options={"confirm_publish": True}) as conn:
        producer = Producer(conn.default_channel)
        target = Exchange(exchange, type="topic", durable=False, no_declare=True)
        for body in bodies:
            producer.publish(
                body,
                exchange=target if exchange else "",
                routing_key=routing_key,
                content_type="application/json",
                content_encoding="utf-8",
                headers=dict(headers or {}),
            )


@contextmanager
def nova_notifier(conf: cfg.ConfigOpts) -> Iterator[Any]:
    """oslo.messaging's Notifier as Nova's compute service builds it."""
    transport = oslo_messaging.get_notification_transport(conf)
    try:
        yield oslo_messaging.Notifier(
            transport,
            publisher_id="nova-compute:compute-1",
            driver="messagingv2",
            topics=["versioned_notifications"],
        )
    finally:
        transport.cleanup()


def request_body(request_id: str = "req-1", **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "quota.request.approved",
        "id": request_id,
        "timestamp": "2026-11-25T09:10:00Z",
        "server": {"id": SERVER},
        "flavor": "m1.large",
    }
    body.update(fields)
    return body


def oslo_message_id(body: bytes) -> str:
    """The message id inside an oslo.messaging envelope."""
    return str(json.loads(json.loads(body)["oslo.message"])["message_id"])
