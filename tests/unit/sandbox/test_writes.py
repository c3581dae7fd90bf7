"""The sandbox counts every write call to a server, per server and action, however it
was answered: a refused repeat leaves no instance action, but it shows here."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import openstack.exceptions
import pytest
from openstack.connection import Connection

from nova_autopilot.sandbox import Sandbox
from tests.unit import sandbox_support

nova, conn = sandbox_support.nova, sandbox_support.conn  # the fixtures


def call(nova: Sandbox, method: str, path: str, body: Any = None, *, raw: bytes = b"") -> int:
    data = raw or (b"" if body is None else json.dumps(body).encode())
    request = urllib.request.Request(
        nova.url + path,
        data=data or None,
        method=method,
        headers={"X-Auth-Token": "admin:admin", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_each_write_call_is_counted_for_its_server_whatever_the_answer(
    nova: Sandbox, conn: Connection
) -> None:
    nova.add_flavor("small")
    large = nova.add_flavor("large", vcpus=2)
    web = nova.add_server("web-1", "small").id
    other = nova.add_server("web-2", "small").id

    conn.compute.get_server(web)  # reads are not writes
    conn.compute.resize_server(web, large.id)
    with pytest.raises(openstack.exceptions.ConflictException):
        conn.compute.resize_server(web, large.id)  # refused: the first is under way
    nova.wait_for_status(web, "VERIFY_RESIZE")
    conn.compute.confirm_server_resize(web)
    nova.wait_for_status(web, "ACTIVE")
    with pytest.raises(openstack.exceptions.ConflictException):
        conn.compute.confirm_server_resize(web)  # nothing left to confirm
    nova.http_fault(503, action="lock", server_id=other)
    with pytest.raises(openstack.exceptions.HttpException):
        conn.compute.lock_server(other)  # answered by an injected fault

    assert nova.write_counts() == {
        web: {"confirmResize": 2, "resize": 2},
        other: {"lock": 1},
    }
    calls = nova.write_calls(web)
    assert [(c.name, c.status) for c in calls] == [
        ("resize", 202),
        ("resize", 409),
        ("confirmResize", 204),
        ("confirmResize", 409),
    ]
    assert all(c.arrived <= c.answered for c in calls)
    assert [c.arrived for c in calls] == sorted(c.arrived for c in calls)
    assert [c.at for c in calls] == sorted(c.at for c in calls)
    # Nova recorded only the calls it accepted.
    assert [a.action for a in nova.server(web).actions if a.action != "create"] == [
        "resize",
        "confirmResize",
    ]
    assert [(c.name, c.status) for c in nova.write_calls(other)] == [("lock", 503)]
    assert len(nova.write_calls()) == 5


def test_write_calls_the_api_cannot_route_count_for_the_server_they_name(
    nova: Sandbox,
) -> None:
    nova.add_flavor("small")
    web = nova.add_server("web-1", "small").id
    missing = "00000000-0000-0000-0000-00000000dead"

    assert call(nova, "POST", f"/servers/{web}/action", raw=b"{not json") == 400
    assert call(nova, "POST", f"/servers/{web}/action", {"one": 1, "two": 2}) == 400
    assert call(nova, "PUT", f"/servers/{web}", {"server": {"name": "x"}}) == 405
    assert call(nova, "POST", f"/servers/{missing}/action", {"lock": None}) == 404
    assert call(nova, "GET", f"/servers/{web}") == 200  # not a write
    assert call(nova, "DELETE", f"/servers/{web}") == 204

    assert nova.write_counts() == {
        web: {
            "(none)": 2,
            "DELETE /v2.1/servers/{server_id}": 1,
            "PUT (unknown)": 1,
        },
        missing: {"lock": 1},
    }
    assert [c.status for c in nova.write_calls(web)] == [400, 400, 405, 204]


def test_forgetting_the_request_counts_forgets_the_write_calls(
    nova: Sandbox, conn: Connection
) -> None:
    nova.add_flavor("small")
    web = nova.add_server("web-1", "small").id
    conn.compute.lock_server(web)
    assert nova.write_counts() == {web: {"lock": 1}}

    nova.reset_request_counts()

    assert nova.write_counts() == {}
    assert nova.write_calls() == []
    conn.compute.unlock_server(web)
    assert nova.write_counts() == {web: {"unlock": 1}}
