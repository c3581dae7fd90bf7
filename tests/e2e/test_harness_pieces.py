"""The pure pieces of the harness, without a Nova: fast, and run with every test run.

The fault vocabulary is shared by the tests and the driver inside
nova-compute; the paste rewrite and the envelope decoding are where a new
Nova or oslo.messaging would break the box first.
"""

import json

import pytest

from tests.novabox import config, faults
from tests.novabox.notifications import Notification
from tests.novabox.runs import RunId


def test_a_name_prefix_asks_for_a_fault_and_metadata_overrides_it() -> None:
    assert faults.FaultPlan.for_server("fail-spawn-web", {}).fails("spawn")
    assert faults.FaultPlan.for_server("fail-boot-web", {}).fail == {"reboot", "power_on"}
    assert faults.FaultPlan.for_server("slow-resize-web", {}).resize_delay > 0
    assert faults.FaultPlan.for_server("fail-boot-web", {faults.FAIL_KEY: ""}).fail == set()
    assert not faults.FaultPlan.for_server("web", {}).fail


def test_metadata_round_trips_a_plan_and_ignores_what_it_does_not_know() -> None:
    plan = faults.FaultPlan.failing({"rescue", "resize"}, console="emergency")
    assert faults.FaultPlan.for_server("web", plan.metadata()) == plan
    slow = faults.FaultPlan(fail=frozenset({"reboot"}), resize_delay=2.0, error_delay=3.0)
    assert faults.FaultPlan.for_server("web", slow.metadata()) == slow
    odd = {
        faults.FAIL_KEY: "spawn, nonsense",
        faults.RESIZE_DELAY_KEY: "soon",
        faults.ERROR_DELAY_KEY: "later",
    }
    assert faults.FaultPlan.for_server("web", odd) == faults.FaultPlan.failing({"spawn"})
    with pytest.raises(ValueError, match="unknown operations"):
        faults.FaultPlan.failing({"explode"})


def test_the_console_logs_say_what_happened() -> None:
    assert "Kernel panic - not syncing" in faults.console_log("panic", "web")
    assert "emergency mode" in faults.console_log("emergency", "web")
    assert faults.console_log("ok", "web").endswith("web login:\n")


def test_the_api_pipeline_swaps_authtoken_for_the_box_middleware() -> None:
    shipped = (
        "[composite:openstack_compute_api_v21]\n"
        "use = call:nova.api.auth:pipeline_factory_v21\n"
        "keystone = cors faultwrap authtoken keystonecontext osapi_compute_app_v21\n"
    )
    paste = config.api_paste(shipped)
    assert "keystone = cors faultwrap novabox_auth keystonecontext" in paste
    assert "tests.novabox.authmiddleware:filter_factory" in paste
    with pytest.raises(ValueError, match="authtoken"):
        config.api_paste("[pipeline:main]\npipeline = app\n")


def test_a_notification_is_read_out_of_its_oslo_messaging_envelope() -> None:
    inner = {
        "event_type": "instance.update",
        "priority": "INFO",
        "publisher_id": "nova-compute:novabox",
        "message_id": "m-1",
        "timestamp": "2026-01-01 00:00:00.000001",
        "payload": {
            "nova_object.name": "InstanceUpdatePayload",
            "nova_object.data": {"uuid": "u-1", "state": "active", "task_state": None},
        },
    }
    envelope = {"oslo.version": "2.0", "oslo.message": json.dumps(inner)}

    notification = Notification.from_message(json.dumps(envelope))

    assert notification.event_type == "instance.update"
    assert notification.instance_uuid == "u-1"
    assert (notification.state, notification.task_state) == ("active", None)


def test_run_ids_name_their_vhost_and_databases_and_are_recognised_back() -> None:
    run_id = RunId(1234, "abc123")
    assert run_id.vhost == "novabox-1234-abc123"
    assert RunId.from_vhost(run_id.vhost) == run_id
    assert RunId.from_database(f"{run_id.database_prefix}_nova_cell0") == run_id
    assert RunId.from_vhost("novabox-someone-else") is None
    assert RunId.from_database("nova_api") is None
