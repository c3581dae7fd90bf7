"""The authorisation table: a key may send only the request types, for the
projects, with the actions and flavors its entry grants; the project is the
server's real one, read from Nova."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import structlog

from nova_autopilot.errors import BadMessage, CloudUnavailable, Rejected
from nova_autopilot.events import Event
from nova_autopilot.security.authorization import Authorization, AuthorizationError, load_grants
from tests.unit.fakes import FakeCloud, FakeServer
from tests.unit.policy_helpers import request_event

SID = "11111111-2222-4333-8444-555555555555"
OTHER = "99999999-2222-4333-8444-555555555555"
TABLE = """
keys:
  team-a:
    types: [quota.request.approved, server.repair.done]
    projects: [project-a]
    actions: [resize, unrescue]
    flavors: {names: [m1.small, m1.large, m1.huge], max_vcpus: 2}
  ops:
    types: "*"
    projects: "*"
    actions: "*"
    flavors: "*"
"""


def write(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "authorization.yaml"
    path.write_text(text)
    path.chmod(mode)
    return path


@pytest.fixture
def cloud() -> FakeCloud:
    cloud = FakeCloud(flavors=("m1.small", "m1.large", "m1.huge"))
    cloud.add(FakeServer(id=SID, name="web-a", flavor="m1.small", project="project-a"))
    cloud.add(FakeServer(id=OTHER, name="web-b", flavor="m1.small", project="project-b"))
    return cloud


@pytest.fixture
def table(tmp_path: Path, cloud: FakeCloud) -> Authorization:
    return Authorization.from_file(write(tmp_path, TABLE), cloud=cloud)


def signed(key_id: str | None, event_type: str = "quota.request.approved", **fields: Any) -> Event:
    return dataclasses.replace(request_event(event_type, **fields), key_id=key_id)


def refused_at_intake(table: Authorization, event: Event) -> str:
    with pytest.raises(BadMessage) as caught:
        table.check_request(event)
    assert caught.value.reason == "not_authorized"
    return caught.value.detail


def operation(
    table: Authorization, event: Event, action: str = "resize", **params: Any
) -> str | None:
    server = event.payload["server"]
    return table.check_operation(
        event,
        action=action,
        params={"server": server, **params},
        server_id=server.get("id"),
        server_name=server.get("name"),
    )


def test_a_key_may_send_the_types_and_claim_the_projects_of_its_entry(
    table: Authorization,
) -> None:
    table.check_request(signed("team-a", project_id="project-a"))
    table.check_request(signed("team-a", "server.repair.done"))
    table.check_request(signed("ops", "anything.at.all", project_id="project-z"))


def test_another_type_another_project_an_unknown_key_or_no_key_is_refused_at_intake(
    table: Authorization,
) -> None:
    assert "may not send server.rescue.requested" in refused_at_intake(
        table, signed("team-a", "server.rescue.requested")
    )
    assert "may not act on project project-b" in refused_at_intake(
        table, signed("team-a", project_id="project-b")
    )
    assert "key stolen has no entry" in refused_at_intake(table, signed("stolen"))
    assert "unsigned" in refused_at_intake(table, signed(None))


def test_without_a_table_every_signed_request_is_allowed(cloud: FakeCloud) -> None:
    table = Authorization.from_file("", cloud=cloud)
    assert not table.enforced
    table.check_request(signed("whoever", "server.rescue.requested"))
    assert operation(table, signed("whoever"), "rescue") is None
    assert cloud.calls == {}


def test_notifications_are_not_checked(table: Authorization) -> None:
    event = Event(source="nova", format="versioned", event_type="instance.update", payload={})
    table.check_request(event)


def test_the_action_of_the_matched_policy_must_be_granted(table: Authorization) -> None:
    assert operation(table, signed("team-a"), "rescue", flavor=None) == "key team-a may not rescue"


def test_the_servers_real_project_decides_not_the_claim(
    table: Authorization, cloud: FakeCloud
) -> None:
    ours = signed("team-a", server={"id": SID}, project_id="project-a")
    assert operation(table, ours, flavor="m1.large") is None
    theirs = signed("team-a", server={"id": OTHER})
    assert operation(table, theirs, flavor="m1.large") == (
        f"key team-a may not act on project project-b (server {OTHER})"
    )
    lying = signed("team-a", server={"id": OTHER}, project_id="project-a")
    assert operation(table, lying, flavor="m1.large") == (
        f"the request claims project project-a, server {OTHER} is in project-b"
    )
    by_name = signed("team-a", server={"name": "web-b"})
    assert "may not act on project project-b" in str(operation(table, by_name, flavor="m1.large"))
    assert cloud.calls["resize"] == 0


def test_a_server_that_cannot_be_found_cannot_be_authorised(table: Authorization) -> None:
    gone = "00000000-0000-4000-8000-000000000000"
    missing = signed("team-a", server={"id": gone})
    assert operation(table, missing, flavor="m1.large") == (
        f"key team-a: server {gone} not found in Nova, its project cannot be checked"
    )
    by_name = signed("team-a", server={"name": "web-z"})
    assert operation(table, by_name, flavor="m1.large") == (
        "key team-a: server web-z not found in Nova, its project cannot be checked"
    )


def test_nova_refusing_the_lookup_is_a_refusal_nova_failing_it_is_retried(
    table: Authorization, cloud: FakeCloud
) -> None:
    event = signed("team-a", server={"id": SID})
    cloud.fail["server"] = [Rejected("Policy doesn't allow it", status=403, call="server")]
    assert operation(table, event, flavor="m1.large") == (
        f"key team-a: server {SID} cannot be looked up in Nova (403: Policy doesn't allow it), "
        "its project cannot be checked"
    )
    unavailable = CloudUnavailable("503 Service Unavailable", status=503, call="server")
    cloud.fail["server"] = [unavailable]
    with pytest.raises(CloudUnavailable):  # a TemporaryError: the bus retries the request
        operation(table, event, flavor="m1.large")
    assert operation(table, event, flavor="m1.large") is None  # Nova is back


def test_the_flavor_must_be_named_and_within_the_size_limits(
    table: Authorization, cloud: FakeCloud
) -> None:
    event = signed("team-a", server={"id": SID})
    assert operation(table, event, flavor="m1.large") is None
    assert operation(table, event, flavor="m1.huge") == (
        "key team-a: flavor m1.huge has vcpus 3, more than max_vcpus 2"
    )
    cloud.flavors = (*cloud.flavors, "m1.tiny")
    assert "not among" in str(operation(table, event, flavor="m1.tiny"))
    assert operation(table, event, flavor="m9.none") == (
        "key team-a: flavor m9.none not found in Nova"
    )


def test_the_file_must_be_private_and_complete(tmp_path: Path) -> None:
    with pytest.raises(AuthorizationError, match="open to group or others"):
        load_grants(write(tmp_path, TABLE, 0o644))
    with pytest.raises(AuthorizationError, match="missing: flavors"):
        load_grants(write(tmp_path, "keys: {k: {types: '*', projects: '*', actions: '*'}}"))
    with pytest.raises(AuthorizationError, match="unknown: flavour"):
        load_grants(
            write(
                tmp_path,
                "keys: {k: {types: '*', projects: '*', actions: '*', flavors: '*', flavour: 1}}",
            )
        )
    with pytest.raises(AuthorizationError, match="list of names"):
        load_grants(
            write(tmp_path, "keys: {k: {types: resize, projects: '*', actions: '*', flavors: '*'}}")
        )
    with pytest.raises(AuthorizationError, match="max_vcpus must be a number"):
        load_grants(
            write(
                tmp_path,
                "keys: {k: {types: '*', projects: '*', actions: '*', flavors: {max_vcpus: x}}}",
            )
        )
    with pytest.raises(AuthorizationError, match="No such file"):
        load_grants(tmp_path / "absent.yaml")


def test_new_grants_replace_the_table_in_force(tmp_path: Path, cloud: FakeCloud) -> None:
    path = write(tmp_path, TABLE)
    table = Authorization.from_file(path, cloud=cloud)
    assert table.path == path
    path.write_text(TABLE.replace("server.repair.done", "server.rescue.requested"))
    table.use_grants(load_grants(path))
    table.check_request(signed("team-a", "server.rescue.requested"))


def test_sighup_reloads_the_table_with_the_other_files_or_keeps_them_all(
    tmp_path: Path, cloud: FakeCloud
) -> None:
    from nova_autopilot import settings
    from nova_autopilot.daemon.reload import Reloader
    from nova_autopilot.daemon.wiring import PolicyHolder

    table_path = write(tmp_path, TABLE)
    policies = tmp_path / "policies.yaml"
    policies.write_text("policies: []\n")
    conf_path = tmp_path / "nova-autopilot.conf"
    conf_path.write_text(
        f"[policies]\npath = {policies}\n[requests]\nrequire_signatures = false\n"
        f"authorization_file = {table_path}\n"
    )
    conf = settings.load(config_files=[str(conf_path)])
    table = Authorization.from_file(table_path, cloud=cloud)
    reloader = Reloader(
        conf=conf,
        policies=PolicyHolder(str(policies)),
        verifier=None,
        authorization=table,
        apply_level=lambda level: None,
    )
    rescue = signed("team-a", "server.rescue.requested")

    table_path.write_text(TABLE.replace("server.repair.done", "server.rescue.requested"))
    assert reloader.reload()
    table.check_request(rescue)

    table_path.write_text(TABLE)
    table_path.chmod(0o644)
    with structlog.testing.capture_logs() as logged:
        assert not reloader.reload()
    table.check_request(rescue)  # the table in force stays
    events = [line["event"] for line in logged]
    assert events == ["authorization.reload_refused", "daemon.reload_refused"]
