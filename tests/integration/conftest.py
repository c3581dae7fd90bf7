"""Fixtures of the integration tests.

``rabbit``        a RabbitMQ vhost of the test's own (tests/integration/bus_support.py;
                  ``rabbit_vhosts`` makes them ahead and deletes them after).
``stack``         the daemon's operating stack in this process, on a sandbox Nova with
                  m1.small and m1.large (tests/integration/stack.py).
``daemon_world``  a sandbox Nova on the test's vhost, and a configuration for the real
                  daemon process next to it (tests/integration/daemon_support.py).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from nova_autopilot.sandbox import Sandbox
from tests.integration import bus_support
from tests.integration.daemon_support import POLICIES, DaemonWorld
from tests.integration.stack import Stack, add_flavors, clouds_yaml

rabbit = bus_support.rabbit
rabbit_vhosts = bus_support.rabbit_vhosts


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    s = Stack(tmp_path).start().with_flavors()
    yield s
    s.stop()


@contextlib.contextmanager
def daemon_world_on(
    rabbit: bus_support.Broker, tmp_path: Path, sandbox: Sandbox, extra: str = ""
) -> Iterator[DaemonWorld]:
    """``daemon_world`` with a sandbox of the caller's (started on ``rabbit``) and
    ``extra`` lines at the end of the configuration."""
    add_flavors(sandbox)
    clouds = clouds_yaml(tmp_path / "clouds.yaml", sandbox.url)
    (tmp_path / "policies.yaml").write_text(POLICIES)
    keys = tmp_path / "signing-keys.yaml"
    keys.write_text("keys:\n  test-key: " + "s3cr3t-" * 4 + "\n")
    keys.chmod(0o600)
    conf = tmp_path / "nova-autopilot.conf"
    conf.write_text(
        f"[DEFAULT]\ntransport_url = {rabbit.transport_url}\nstate_dir = {tmp_path / 'state'}\n"
        "stop_timeout = 20\n"
        f"[policies]\npath = {tmp_path / 'policies.yaml'}\n"
        "[cloud]\ncloud = sandbox\npoll_interval = 2\n"
        f"[requests]\nsigning_keys_file = {keys}\nsigning_key_id = test-key\n"
        "[logging]\nformat = json\n[metrics]\nport = 0\n" + extra
    )
    env = {**os.environ, "OS_CLIENT_CONFIG_FILE": str(clouds)}
    try:
        yield sandbox, conf, env
    finally:
        sandbox.stop()


@pytest.fixture
def daemon_world(rabbit: bus_support.Rabbit, tmp_path: Path) -> Iterator[DaemonWorld]:
    """The sandbox Nova (m1.small, m1.large) on ``rabbit``, the configuration file of a
    daemon for it (daemon_support.POLICIES, a signing key, JSON logs, metrics on a free
    port) and the environment to run it in."""
    sandbox = Sandbox(transport_url=rabbit.transport_url).start()
    with daemon_world_on(rabbit, tmp_path, sandbox) as world:
        yield world
