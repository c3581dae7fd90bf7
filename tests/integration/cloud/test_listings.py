"""Listings read as Nova writes them (``GET /servers/detail``, every page, without
openstacksdk's resources), over real HTTP to the sandbox Nova: the same servers, in
the same state, as openstacksdk's own reading of each one."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest

from nova_autopilot.cloud import Cloud
from nova_autopilot.sandbox import Sandbox, Settings

pytestmark = pytest.mark.integration


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    box = Sandbox(settings=Settings(max_limit=7)).start()  # pages of 7 servers
    yield box
    box.stop()


def test_listed_servers_are_every_page_and_read_as_openstacksdk_reads_one(
    sandbox: Sandbox,
) -> None:
    sandbox.add_flavor("m1.small", vcpus=1, ram=512, disk=1)
    errors = [sandbox.add_server(f"broken-{n}", "m1.small", state="ERROR").id for n in range(25)]
    rescued = sandbox.add_server("rescued", "m1.small", state="RESCUE", project_id="other").id
    sandbox.add_server("fine", "m1.small")
    cloud = Cloud.from_endpoint(sandbox.url)

    listing = cloud.servers_in(("ERROR", "RESCUE"))
    since = cloud.changed_since(datetime.now(timezone.utc) - timedelta(hours=1))

    assert sorted(s.id for s in listing.servers) == sorted([*errors, rescued])
    for state in listing.servers:
        assert state == cloud.server(state.id)
    assert {s.name for s in since} >= {"fine", "rescued", "broken-0"}
    assert all(s == cloud.server(s.id) for s in since)
