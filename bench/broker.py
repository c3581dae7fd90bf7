"""The benchmarks' RabbitMQ: a vhost of each run's own, removed afterwards.

``NOVA_AUTOPILOT_RABBIT_HOST``, ``_PORT``, ``_USER``, ``_PASSWORD`` and
``NOVA_AUTOPILOT_RABBITMQCTL`` override the defaults (127.0.0.1:5672,
guest/guest, ``rabbitmqctl``).
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

HOST = os.environ.get("NOVA_AUTOPILOT_RABBIT_HOST", "127.0.0.1")
PORT = int(os.environ.get("NOVA_AUTOPILOT_RABBIT_PORT", "5672"))
USER = os.environ.get("NOVA_AUTOPILOT_RABBIT_USER", "guest")
PASSWORD = os.environ.get("NOVA_AUTOPILOT_RABBIT_PASSWORD", "guest")
RABBITMQCTL = os.environ.get("NOVA_AUTOPILOT_RABBITMQCTL", "rabbitmqctl")


def _ctl(*args: str) -> None:
    subprocess.run([RABBITMQCTL, "-q", *args], check=True, capture_output=True, timeout=60)


@contextmanager
def vhost(purpose: str) -> Iterator[str]:
    """A fresh vhost for the test user, deleted with everything in it at the end."""
    name = f"bench-{purpose}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    _ctl("add_vhost", name)
    try:
        _ctl("set_permissions", "-p", name, USER, ".*", ".*", ".*")
        yield name
    finally:
        _ctl("delete_vhost", name)


def amqp_url(name: str) -> str:
    """kombu's form of the vhost's URL."""
    return f"amqp://{quote(USER)}:{quote(PASSWORD)}@{HOST}:{PORT}/{quote(name)}"


def transport_url(name: str) -> str:
    """oslo.messaging's form, as in Nova's configuration."""
    return f"rabbit://{quote(USER)}:{quote(PASSWORD)}@{HOST}:{PORT}/{quote(name)}"
