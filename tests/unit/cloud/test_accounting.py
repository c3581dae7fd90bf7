"""The calls an operation made, as the request counter keeps them for its steps."""

from __future__ import annotations

from nova_autopilot.cloud.accounting import CALLS_KEPT, RequestCounter, counting_for

SID = "5e1f7a52-0000-4000-8000-000000000001"


def test_an_operations_calls_are_kept_in_order_with_ids_templated_and_queries_dropped() -> None:
    counter = RequestCounter()
    with counting_for("op-1"):
        counter.record("GET", f"/v2.1/servers/{SID}", 200)
        counter.record("POST", f"/v2.1/servers/{SID}/action", 202)
        counter.record("GET", "/v2.1/servers/detail?name=web&password=hunter2", 200)
    counter.record("GET", "/v2.1/flavors/detail", 200)  # no operation: counted, not kept
    calls = [(c.method, c.path, c.status) for c in counter.take_calls("op-1")]
    assert calls == [
        ("GET", "/v2.1/servers/{id}", 200),
        ("POST", "/v2.1/servers/{id}/action", 202),
        ("GET", "/v2.1/servers/detail", 200),
    ]
    assert counter.total == 4
    assert counter.for_operation("op-1") == 3


def test_taking_the_calls_empties_them_but_not_the_count() -> None:
    counter = RequestCounter()
    with counting_for("op-1"):
        counter.record("GET", f"/servers/{SID}", 200)
    assert len(counter.take_calls("op-1")) == 1
    assert counter.take_calls("op-1") == []
    assert counter.for_operation("op-1") == 1


def test_at_most_so_many_calls_are_kept_per_operation_while_the_count_stays_exact() -> None:
    counter = RequestCounter()
    with counting_for("op-1"):
        for _ in range(CALLS_KEPT + 7):
            counter.record("GET", f"/servers/{SID}", 200)
    assert len(counter.take_calls("op-1")) == CALLS_KEPT
    assert counter.for_operation("op-1") == CALLS_KEPT + 7


def test_forgetting_an_operation_drops_its_calls() -> None:
    counter = RequestCounter()
    with counting_for("op-1"):
        counter.record("DELETE", f"/servers/{SID}/os-lock", 409)
    counter.forget("op-1")
    assert counter.take_calls("op-1") == []
    assert counter.for_operation("op-1") == 0


def test_a_call_says_only_which_call_method_path_and_status() -> None:
    counter = RequestCounter()
    with counting_for("op-1"):
        counter.record("POST", f"/servers/{SID}/action", 202)
    (call,) = counter.take_calls("op-1")
    assert call.as_dict() == {
        "call": None,
        "method": "POST",
        "path": "/servers/{id}/action",
        "status": 202,
    }
