"""What the sandbox's own tests share: a sandbox Nova, and openstacksdk talking to it
over HTTP with a static token (the sandbox has no Keystone)."""

from __future__ import annotations

from collections.abc import Iterator

import openstack
import pytest
from openstack.compute.v2.flavor import Flavor
from openstack.connection import Connection

from nova_autopilot.sandbox import Durations, Sandbox


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
