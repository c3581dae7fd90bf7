"""What the sandbox's own tests share: a sandbox Nova, and openstacksdk talking to it
over HTTP with a static token (the sandbox has no Keystone)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import openstack
import pytest
from openstack.compute.v2.flavor import Flavor
from openstack.connection import Connection

from nova_autopilot.sandbox import Durations, Sandbox
from nova_autopilot.sandbox.clock import Clock
from nova_autopilot.sandbox.scheduler import Scheduler


def connect(url: str, token: str = "admin:admin") -> Connection:
    return openstack.connect(
        auth_type="admin_token",
        auth={"endpoint": url, "token": token},
        compute_endpoint_override=url,
    )


@pytest.fixture
def nova() -> Iterator[Sandbox]:
    """A sandbox at five times Nova's speed; no transition may have failed inside it."""
    with Sandbox(durations=Durations().scaled(0.2)) as sandbox:
        yield sandbox
        assert sandbox.flow_errors == []


@pytest.fixture
def conn(nova: Sandbox) -> Connection:
    return connect(nova.url)


@pytest.fixture
def small(nova: Sandbox) -> Flavor:
    return nova.add_flavor("small", vcpus=1, ram=128, disk=1)


@pytest.fixture
def large(nova: Sandbox) -> Flavor:
    return nova.add_flavor("large", vcpus=2, ram=256, disk=1)


@contextlib.contextmanager
def running_scheduler(clock: Clock) -> Iterator[Scheduler]:
    """A scheduler on ``clock``, started, then stopped; none of its flows may have failed."""
    errors: list[tuple[str, BaseException]] = []
    scheduler = Scheduler(
        clock=clock, lock=threading.RLock(), on_error=lambda k, e: errors.append((k, e))
    )
    scheduler.start()
    yield scheduler
    scheduler.stop()
    assert errors == []
