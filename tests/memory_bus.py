"""The bus on kombu's in-process broker (``memory://``), for tests that need a bus
but not RabbitMQ.

The in-process broker is shared by the whole test process, so ``conf`` gives every
test exchange and queue names of its own. Bind the fixtures in a test module or a
conftest as ``conf = memory_bus.conf`` and ``broker = memory_bus.broker``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kombu import Connection, Queue
from oslo_config import cfg

from nova_autopilot import settings
from nova_autopilot.bus import Bus
from nova_autopilot.bus.connection import register_oslo_options


@pytest.fixture
def conf() -> cfg.ConfigOpts:
    """The daemon's configuration on the in-process broker, every name of the test's own."""
    suffix = uuid.uuid4().hex[:8]
    conf = settings.build_conf()
    conf(args=[], default_config_files=[])
    register_oslo_options(conf)
    conf.set_override("transport_url", "kombu+memory:////")
    conf.set_override("control_exchange", f"nova-{suffix}")
    for name, value in {
        "exchange": f"nova-{suffix}",
        "pool": f"pool-{suffix}",
        "dead_letter_queue": f"dead-{suffix}",
        "executor_threads": 4,
    }.items():
        conf.set_override(name, value, group="notifications")
    for name in ("exchange", "queue", "results_exchange", "dead_letter_exchange"):
        conf.set_override(name, f"{name}-{suffix}", group="requests")
    conf.set_override("max_message_bytes", 8192, group="intake")
    return conf


@pytest.fixture
def broker() -> Iterator[Connection]:
    """A connection to the in-process broker."""
    with Connection("memory://") as connection:
        yield connection


def started(bus: Bus) -> Bus:
    bus.start()
    assert bus.wait_ready(5)
    return bus


def wait_for_messages(
    broker: Connection, queue: str, count: int, timeout: float = 5.0
) -> list[Any]:
    """Take messages from ``queue`` until there are ``count`` (a deadline, not a sleep)."""
    messages: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(messages) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(messages)} of {count} messages in {queue}")
        message = Queue(queue)(broker.default_channel).get(no_ack=True)
        if message is None:
            time.sleep(0.01)  # polling the broker with a deadline
        else:
            messages.append(message)
    return messages
