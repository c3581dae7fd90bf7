"""The sandbox's compute API through openstacksdk over HTTP: discovery, servers, flavors, lists."""

from __future__ import annotations

from typing import Any

import openstack
import openstack.exceptions
import pytest
from openstack.connection import Connection

from nova_autopilot.sandbox import IMAGE_ID, Sandbox
from tests.unit import sandbox_support
from tests.unit.sandbox_support import connect

nova, conn = sandbox_support.nova, sandbox_support.conn  # the fixtures


def get(conn: Connection, path: str, version: str = "2.100", **params: Any) -> Any:
    return conn.compute.get(path, microversion=version, params=params or None)


# -- discovery and microversions ----------------------------------------------------------


def test_openstacksdk_discovers_the_api_as_it_discovers_novas(
    nova: Sandbox, conn: Connection
) -> None:
    assert conn.compute.get_endpoint().rstrip("/") == nova.url
    versions = get(conn, nova.base_url + "/").json()["versions"]
    assert [(v["id"], v["status"]) for v in versions] == [
        ("v2.0", "DEPRECATED"),
        ("v2.1", "CURRENT"),
    ]
    current = get(conn, nova.url + "/").json()["version"]
    assert (current["min_version"], current["version"]) == ("2.1", "2.104")
    assert list(conn.compute.flavors()) == []


def test_every_answer_says_which_microversion_it_used(nova: Sandbox, conn: Connection) -> None:
    flavor = nova.add_flavor("small")
    response = get(conn, f"/flavors/{flavor.id}", "2.61")

    assert response.headers["OpenStack-API-Version"] == "compute 2.61"
    assert response.headers["X-OpenStack-Nova-API-Version"] == "2.61"
    assert response.headers["x-openstack-request-id"].startswith("req-")
    too_high = conn.compute.get(
        f"/flavors/{flavor.id}", headers={"OpenStack-API-Version": "compute 2.105"}
    )
    assert too_high.status_code == 406


def test_a_request_without_a_token_is_unauthorized(nova: Sandbox, conn: Connection) -> None:
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(nova.url + "/servers/detail", timeout=5)
    assert refused.value.code == 401


# -- servers ------------------------------------------------------------------------------


def test_a_booted_server_shows_the_fields_openstacksdk_reads(
    nova: Sandbox, conn: Connection
) -> None:
    small = conn.compute.create_flavor(name="small", vcpus=1, ram=128, disk=1)
    created = conn.compute.create_server(
        name="web-1", flavor_id=small.id, image_id=IMAGE_ID, networks="none"
    )
    assert created.admin_password

    server = conn.compute.wait_for_server(created, interval=0.02, wait=10)

    assert (server.status, server.vm_state, server.task_state) == ("ACTIVE", "active", None)
    assert server.power_state == 1
    assert server.launched_at is not None
    assert server.flavor.original_name == "small"
    assert server.flavor.name == "small"
    assert (server.flavor.vcpus, server.flavor.ram, server.flavor.disk) == (1, 128, 1)
    assert server.compute_host == "sandbox"
    assert server.host_id
    assert server.project_id == "admin"
    assert server.is_locked is False
    assert server.fault is None


def test_a_server_before_2_47_names_its_flavor_by_id(nova: Sandbox, conn: Connection) -> None:
    small = nova.add_flavor("small")
    server = nova.add_server("web-1", small)

    old = get(conn, f"/servers/{server.id}", "2.46").json()["server"]
    new = get(conn, f"/servers/{server.id}", "2.100").json()["server"]

    assert old["flavor"]["id"] == small.id
    assert old["flavor"]["links"][0]["rel"] == "bookmark"
    assert new["flavor"]["original_name"] == "small"
    assert "locked_reason" in new
    assert "locked_reason" not in get(conn, f"/servers/{server.id}", "2.72").json()["server"]


def test_a_server_placed_from_python_is_seen_through_the_api(
    nova: Sandbox, conn: Connection
) -> None:
    small = nova.add_flavor("small")
    broken = nova.add_server("never-booted", small, state="ERROR", launched=False)
    stopped = nova.add_server("stopped", "small", state="SHUTOFF")

    assert conn.compute.get_server(broken.id).launched_at is None
    assert conn.compute.get_server(broken.id).fault["code"] == 500
    assert conn.compute.get_server(stopped.id).status == "SHUTOFF"
    with pytest.raises(ValueError, match="never launched"):
        nova.add_server("odd", small, state="ACTIVE", launched=False)


def test_an_unknown_server_is_novas_404(nova: Sandbox, conn: Connection) -> None:
    with pytest.raises(openstack.exceptions.NotFoundException) as missing:
        conn.compute.get_server("00000000-0000-0000-0000-000000000000")
    assert "Instance 00000000-0000-0000-0000-000000000000 could not be found." in str(missing.value)


def test_a_boot_with_an_unknown_flavor_or_image_is_a_400(nova: Sandbox, conn: Connection) -> None:
    small = nova.add_flavor("small")
    with pytest.raises(openstack.exceptions.BadRequestException, match="Flavor nope"):
        conn.compute.create_server(name="x", flavor_id="nope", image_id=IMAGE_ID, networks="none")
    with pytest.raises(openstack.exceptions.BadRequestException, match="Can not find requested"):
        conn.compute.create_server(name="x", flavor_id=small.id, image_id="nope", networks="none")


# -- lists --------------------------------------------------------------------------------


def test_changes_since_lists_what_changed_including_deleted_servers(
    nova: Sandbox, conn: Connection
) -> None:
    small = nova.add_flavor("small")
    keep = nova.add_server("keep", small)
    gone = nova.add_server("gone", small)
    conn.compute.delete_server(gone.id)
    conn.compute.wait_for_delete(conn.compute.get_server(keep.id).__class__(id=gone.id), wait=10)

    since = keep.created_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    listed = {s.name: s.status for s in conn.compute.servers(changes_since=since)}
    plain = {s.name for s in conn.compute.servers()}

    assert listed == {"keep": "ACTIVE", "gone": "DELETED"}
    assert plain == {"keep"}
    later = {s.name for s in conn.compute.servers(changes_since="2999-01-01T00:00:00Z")}
    assert later == set()
    bad = get(conn, "/servers/detail", **{"changes-since": "yesterday"})
    assert bad.status_code == 400


def test_names_are_regular_expressions_and_statuses_map_to_states(
    nova: Sandbox, conn: Connection
) -> None:
    small = nova.add_flavor("small")
    for name, state in (("web-1", "ACTIVE"), ("web-2", "SHUTOFF"), ("db-1", "ACTIVE")):
        nova.add_server(name, small, state=state)

    assert {s.name for s in conn.compute.servers(name="^web-")} == {"web-1", "web-2"}
    assert {s.name for s in conn.compute.servers(status="SHUTOFF")} == {"web-2"}
    assert get(conn, "/servers/detail", status="NOPE").json() == {
        "badRequest": {"code": 400, "message": "Invalid status value"}
    }


def test_paging_with_limit_and_marker_returns_every_server_once(
    nova: Sandbox, conn: Connection
) -> None:
    small = nova.add_flavor("small")
    names = {nova.add_server(f"s-{i}", small).name for i in range(7)}

    first = get(conn, "/servers/detail", limit="3").json()
    assert len(first["servers"]) == 3
    assert first["servers_links"][0]["rel"] == "next"
    assert {s.name for s in conn.compute.servers(limit=3)} == names
    assert get(conn, "/servers/detail", marker="nope").status_code == 400


def test_a_member_sees_its_own_project_and_may_not_ask_for_all(nova: Sandbox) -> None:
    small = nova.add_flavor("small")
    nova.add_server("theirs", small, project_id="other")
    mine = nova.add_server("mine", small, project_id="alice-project")
    alice = connect(nova.url, "alice:alice-project")
    admin = connect(nova.url)

    assert {s.name for s in alice.compute.servers()} == {"mine"}
    assert get(alice, "/servers/detail", all_tenants="1").status_code == 403
    assert {s.name for s in admin.compute.servers(all_projects=True)} == {"mine", "theirs"}
    assert [s.name for s in admin.compute.servers(all_projects=True, id=mine.id)] == ["mine"]
    assert "OS-EXT-SRV-ATTR:host" not in get(alice, f"/servers/{mine.id}").json()["server"]


# -- flavors ------------------------------------------------------------------------------


def test_flavors_are_found_by_name_as_openstacksdk_looks_them_up(
    nova: Sandbox, conn: Connection
) -> None:
    nova.add_flavor("small", vcpus=1, ram=512, disk=10)
    large = conn.compute.create_flavor(name="large", vcpus=4, ram=4096, disk=40)

    found = conn.compute.find_flavor("large")
    assert found is not None
    assert (found.id, found.vcpus, found.ram, found.disk) == (large.id, 4, 4096, 40)
    assert {f.name for f in conn.compute.flavors()} == {"small", "large"}
    assert conn.compute.find_flavor("medium") is None
    old = get(conn, f"/flavors/{large.id}", "2.1").json()["flavor"]
    assert old["swap"] == ""
    assert "extra_specs" not in old


def test_the_requests_received_are_counted_per_route_and_action(
    nova: Sandbox, conn: Connection
) -> None:
    small = nova.add_flavor("small")
    server = nova.add_server("web-1", small)
    conn.compute.get_server(server.id)  # the connection discovers the API first
    assert nova.request_counts()["GET /v2.1"] == 2
    nova.reset_request_counts()

    conn.compute.get_server(server.id)
    conn.compute.get_server(server.id)
    conn.compute.lock_server(server.id)

    assert nova.request_counts() == {
        "GET /v2.1/servers/{server_id}": 2,
        "POST /v2.1/servers/{server_id}/action lock": 1,
    }
