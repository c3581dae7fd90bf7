"""Messages become events: every accepted form, and clear errors for the rest."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nova_autopilot.errors import BadMessage
from nova_autopilot.events import MISSING, parse_message
from tests.samples import on_the_wire, sample, sample_names

SAMPLE_INSTANCE = "178b0921-8f85-4257-88b6-2e743b5a975c"
SAMPLE_PROJECT = "6f70656e737461636b20342065766572"
TASK_INSTANCE = "d5e6a7b7-80e5-4166-85a3-cd6115201082"


def request(**fields: object) -> dict[str, object]:
    body: dict[str, object] = {
        "type": "quota.request.approved",
        "id": "req-1",
        "timestamp": "2026-11-25T20:30:46Z",
        "server": {"id": SAMPLE_INSTANCE},
        "flavor": "m1.large",
    }
    body.update(fields)
    return {k: v for k, v in body.items() if v is not None}


@pytest.mark.parametrize("name", sample_names())
def test_every_nova_sample_parses_on_the_wire_with_its_type_instance_and_project(name: str) -> None:
    notification = sample(name)
    event = parse_message(on_the_wire(notification))
    assert event.source == "nova"
    assert event.format == "versioned"
    assert event.event_type == notification["event_type"]
    assert event.priority == notification["priority"]
    if name == "compute-exception":
        assert event.instance_id is None
        assert event.project_id is None
    elif name.startswith("compute_task"):
        assert event.instance_id == TASK_INSTANCE
        assert event.project_id == SAMPLE_PROJECT
    else:
        assert event.instance_id == SAMPLE_INSTANCE
        assert event.project_id == SAMPLE_PROJECT


@pytest.mark.parametrize("name", sample_names())
def test_a_bare_sample_dict_parses_like_its_wire_form(name: str) -> None:
    bare = parse_message(sample(name))
    wired = parse_message(on_the_wire(sample(name)))
    assert (bare.event_type, bare.instance_id, bare.project_id, bare.payload) == (
        wired.event_type,
        wired.instance_id,
        wired.project_id,
        wired.payload,
    )


def test_nova_objects_are_unwrapped_recursively_into_plain_dicts() -> None:
    event = parse_message(sample("instance-update"))
    assert event.get(("payload", "flavor", "name")) == "test_flavor"
    assert event.get(("payload", "state_update", "state")) == "building"
    assert event.get(("payload", "ip_addresses")) == []
    assert "nova_object.data" not in json.dumps(event.payload)


def test_list_items_are_addressed_by_index_and_missing_paths_are_missing() -> None:
    event = parse_message(sample("instance-rescue-end"))
    assert event.get(("payload", "block_devices", "0", "boot_index")) is None
    assert event.get(("payload", "block_devices", "0", "device_name")) == "/dev/sdb"
    assert event.get(("payload", "block_devices", "7")) is MISSING
    assert event.get(("payload", "no", "such")) is MISSING
    assert event.get(("nonsense",)) is MISSING


def test_wire_metadata_gives_message_id_timestamp_and_request_id() -> None:
    event = parse_message(on_the_wire(sample("instance-rescue-end")))
    assert event.timestamp == datetime(2026, 11, 25, 20, 30, 46, 205459, tzinfo=timezone.utc)
    assert event.message_id is not None
    assert event.request_id is not None
    assert event.request_id.startswith("req-")
    assert event.dedupe_key == f"nova:{event.message_id}"


def test_packed_auth_context_never_survives_intake() -> None:
    event = parse_message(on_the_wire(sample("instance-rescue-end")))
    assert "gAAAAA-secret-token" not in json.dumps(event.raw)
    assert "_context_request_id" in event.raw


def test_host_comes_from_the_payload_or_else_the_publisher() -> None:
    assert parse_message(sample("instance-rescue-end")).host == "compute"
    assert parse_message(sample("compute-exception")).host == "fake-mini"


def test_a_legacy_notification_parses_with_its_ids() -> None:
    legacy = {
        "event_type": "compute.instance.update",
        "priority": "INFO",
        "publisher_id": "compute.compute-1",
        "message_id": "1c9b4b1c-legacy",
        "timestamp": "2026-11-25 20:30:46.205459",
        "payload": {
            "instance_id": SAMPLE_INSTANCE,
            "tenant_id": SAMPLE_PROJECT,
            "host": "compute-1",
            "state": "error",
            "old_state": "active",
            "instance_type": "m1.small",
        },
    }
    event = parse_message(json.dumps(legacy))
    assert event.format == "legacy"
    assert (event.instance_id, event.project_id, event.host) == (
        SAMPLE_INSTANCE,
        SAMPLE_PROJECT,
        "compute-1",
    )
    assert event.get(("payload", "state")) == "error"


def test_a_request_parses_into_a_request_event() -> None:
    event = parse_message(json.dumps(request(project_id=SAMPLE_PROJECT, approved_by="bob")))
    assert (event.source, event.format, event.event_type) == (
        "request",
        "request",
        "quota.request.approved",
    )
    assert event.instance_id == SAMPLE_INSTANCE
    assert event.message_id == "req-1"
    assert event.project_id == SAMPLE_PROJECT
    assert event.get(("payload", "approved_by")) == "bob"
    assert event.get(("payload", "version")) == 1


def test_a_request_may_name_its_server_by_name_or_by_a_bare_id() -> None:
    by_name = parse_message(request(server="web-1"))
    assert by_name.instance_id is None
    assert by_name.get(("payload", "server")) == {"name": "web-1"}
    by_id = parse_message(request(server=SAMPLE_INSTANCE))
    assert by_id.instance_id == SAMPLE_INSTANCE


def test_an_approval_names_an_operation_and_may_leave_out_the_server() -> None:
    body = request(type="operation.approve", operation_id="op-1", server=None, flavor=None)
    event = parse_message(json.dumps({**body, "approved_by": "carol"}))
    assert (event.source, event.event_type, event.instance_id) == (
        "request",
        "operation.approve",
        None,
    )
    assert event.get(("payload", "operation_id")) == "op-1"
    named = parse_message(request(type="operation.reject", operation_id="op-1", flavor=None))
    assert named.instance_id == SAMPLE_INSTANCE


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (request(approver="mallory"), "unknown_field"),
        (request(id=None), "missing_field"),
        (request(type="Quota Approved"), "bad_request"),
        (request(version=2), "unsupported_version"),
        (request(server={"uuid": "x"}), "bad_request"),
        (request(flavor=""), "bad_request"),
        (request(timestamp="yesterday"), "bad_timestamp"),
        (request(parameters={"Bad-Key": 1}), "bad_request"),
        (request(parameters={"nested": {"a": 1}}), "bad_request"),
        (request(operation_id="op-1"), "bad_request"),
        (request(type="operation.approve", flavor=None), "missing_field"),
        (request(type="operation.reject", operation_id="op 1"), "bad_request"),
    ],
)
def test_an_invalid_request_is_refused_with_a_precise_reason(
    body: dict[str, object], reason: str
) -> None:
    with pytest.raises(BadMessage) as caught:
        parse_message(json.dumps(body))
    assert caught.value.reason == reason
    assert caught.value.detail


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (b"", "empty"),
        (b"\xff\xfe", "not_utf8"),
        (b"{nope", "not_json"),
        (b"[1, 2]", "not_an_object"),
        (b'{"a": NaN}', "not_json"),
        (b'{"hello": "world"}', "unknown_shape"),
        (b'{"oslo.version": "1.0", "oslo.message": "{}"}', "bad_envelope"),
        (b'{"oslo.version": "2.0", "oslo.message": {"a": 1}}', "bad_envelope"),
        (b'{"event_type": "x y", "payload": {}}', "bad_event_type"),
        (b'{"event_type": "instance.update", "payload": []}', "bad_payload"),
        (b'{"event_type": "a.b", "payload": {}, "timestamp": "soon"}', "bad_timestamp"),
        (b"[" * 100_000 + b"]" * 100_000, "too_deep"),
    ],
)
def test_malformed_messages_are_refused_with_a_reason(message: bytes, reason: str) -> None:
    with pytest.raises(BadMessage) as caught:
        parse_message(message)
    assert caught.value.reason == reason


def test_oversized_and_overdeep_messages_are_refused_before_use() -> None:
    with pytest.raises(BadMessage, match="limit is 100"):
        parse_message(b"{" + b" " * 200 + b"}", max_bytes=100)
    deep: dict[str, object] = {"leaf": 1}
    for _ in range(40):
        deep = {"d": deep}
    message = {"event_type": "instance.update", "payload": deep}
    with pytest.raises(BadMessage) as caught:
        parse_message(message, max_depth=32)
    assert caught.value.reason == "too_deep"


def test_the_channel_decides_what_it_accepts() -> None:
    with pytest.raises(BadMessage) as caught:
        parse_message(sample("instance-update"), expect="request")
    assert caught.value.reason == "unexpected_source"
    with pytest.raises(BadMessage):
        parse_message(request(), expect="nova")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=30,
)
shaped = st.fixed_dictionaries(
    {"event_type": st.text(max_size=20) | json_values, "payload": json_values},
    optional={"timestamp": json_values, "publisher_id": json_values, "message_id": json_values},
) | st.fixed_dictionaries(
    {"type": json_values, "id": json_values, "timestamp": json_values, "server": json_values},
    optional={"flavor": json_values, "parameters": json_values},
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_random_bytes_give_an_event_or_a_bad_message_never_a_crash(data: bytes) -> None:
    try:
        parse_message(data)
    except BadMessage as exc:
        assert exc.reason
        assert exc.detail


@settings(max_examples=300, deadline=None)
@given(json_values | shaped)
def test_random_json_gives_an_event_or_a_bad_message_never_a_crash(value: object) -> None:
    for form in (json.dumps(value).encode(), value if isinstance(value, dict) else None):
        if form is None:
            continue
        try:
            parse_message(form)
        except BadMessage as exc:
            assert exc.reason
            assert exc.detail
