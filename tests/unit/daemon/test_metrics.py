"""The Prometheus collector over fake parts: every figure the parts keep comes
out under its documented name and labels, read at scrape time, and two
daemons' registries never mix."""

from __future__ import annotations

import dataclasses

from nova_autopilot.daemon.metrics import Metrics
from tests.unit.daemon.metrics_support import Parts, scrape, value


def test_the_engine_counts_come_out_with_their_labels() -> None:
    parts = Parts()
    parts.tally.received("nova", "instance.update", matched=True)
    parts.tally.received("nova", "instance.update", matched=False)
    parts.tally.received("request", "quota.request.approved", matched=True)
    parts.tally.decided("resize-approved", "run")
    parts.tally.decided("resize-approved", "refused", guard="cooldown")
    parts.tally.decided("rescue-failed-boot", "dry_run")
    parts.tally.finished("resize", "confirmed", duration_s=42.0)
    parts.tally.finished("resize", "refused", duration_s=None)
    parts.tally.duplicate("request", "quota.request.approved")
    parts.tally.duplicate("nova", "instance.update")
    parts.tally.duplicate("nova", "instance.update")
    samples = scrape(Metrics(parts.sources()))

    received = "nova_autopilot_events_received_total"
    assert value(samples, received, source="nova", event_type="instance.update") == 2
    assert value(samples, received, source="request", event_type="quota.request.approved") == 1
    matched = "nova_autopilot_events_matched_total"
    assert value(samples, matched, source="nova", event_type="instance.update") == 1
    decisions = "nova_autopilot_decisions_total"
    assert value(samples, decisions, policy="resize-approved", outcome="run") == 1
    assert value(samples, decisions, policy="resize-approved", outcome="refused") == 1
    assert value(samples, decisions, policy="rescue-failed-boot", outcome="dry_run") == 1
    assert value(samples, "nova_autopilot_guard_refusals_total", guard="cooldown") == 1
    finished = "nova_autopilot_operations_finished_total"
    assert value(samples, finished, action="resize", outcome="confirmed") == 1
    assert value(samples, finished, action="resize", outcome="refused") == 1
    # Every action's every outcome is there from the start, at 0: an alert on the
    # increase of a series sees its first operation too.
    assert value(samples, finished, action="resize", outcome="timed_out") == 0
    assert value(samples, finished, action="unrescue", outcome="failed") == 0
    dropped = "nova_autopilot_events_dropped_total"
    request = {"source": "request", "event_type": "quota.request.approved"}
    assert value(samples, dropped, reason="duplicate", **request) == 1
    update = {"source": "nova", "event_type": "instance.update"}
    assert value(samples, dropped, reason="duplicate", **update) == 2


def test_durations_form_a_histogram_of_the_operations_that_ran() -> None:
    parts = Parts()
    for seconds in (0.5, 3.0, 42.0, 4000.0):
        parts.tally.finished("rescue", "rescued", duration_s=seconds)
    parts.tally.finished("rescue", "refused", duration_s=None)
    samples = scrape(Metrics(parts.sources()))

    name = "nova_autopilot_operation_duration_seconds"
    labels = {"action": "rescue", "outcome": "rescued"}
    assert value(samples, f"{name}_bucket", le="1.0", **labels) == 1
    assert value(samples, f"{name}_bucket", le="5.0", **labels) == 2
    assert value(samples, f"{name}_bucket", le="60.0", **labels) == 3
    assert value(samples, f"{name}_bucket", le="3600.0", **labels) == 3
    assert value(samples, f"{name}_bucket", le="+Inf", **labels) == 4
    assert value(samples, f"{name}_count", **labels) == 4
    assert value(samples, f"{name}_sum", **labels) == 4045.5
    assert (f"{name}_count", (("action", "rescue"), ("outcome", "refused"))) not in samples


def test_the_bus_cloud_and_runner_figures_are_read_at_scrape_time() -> None:
    parts = Parts()
    metrics = Metrics(parts.sources())
    samples = scrape(metrics)

    dead = "nova_autopilot_dead_lettered_total"
    notifications, requests_queue = "notifications.nova-autopilot", "nova-autopilot.requests"
    assert value(samples, dead, queue=notifications, reason="not_json") == 2
    assert value(samples, dead, queue=notifications, reason="retries_exhausted") == 1
    assert value(samples, dead, queue=requests_queue, reason="bad_signature") == 1
    assert value(samples, dead, queue=requests_queue, reason="unknown_request") == 1
    dropped = "nova_autopilot_events_dropped_total"
    # A message that never became an event has no type: unknown.
    assert value(samples, dropped, source="nova", event_type="unknown", reason="not_json") == 2
    exhausted = {"source": "nova", "event_type": "instance.update", "reason": "retries_exhausted"}
    assert value(samples, dropped, **exhausted) == 1
    unsigned = {"source": "request", "event_type": "unknown", "reason": "bad_signature"}
    assert value(samples, dropped, **unsigned) == 1
    unhandled = {"source": "request", "event_type": "x.y", "reason": "unknown_request"}
    assert value(samples, dropped, **unhandled) == 1
    assert value(samples, "nova_autopilot_broker_reconnects_total", consumer="notifications") == 2
    assert value(samples, "nova_autopilot_consumer_up", consumer="notifications") == 1
    assert value(samples, "nova_autopilot_consumer_up", consumer="requests") == 0
    requests = "nova_autopilot_nova_requests_total"
    assert value(samples, requests, call="POST /v2.1/servers/{id}/action", status="202") == 3
    assert value(samples, requests, call="GET /v2.1/servers/{id}", status="404") == 1
    assert value(samples, "nova_autopilot_operations_in_flight", action="resize") == 1
    assert value(samples, "nova_autopilot_operations_in_flight", action="rescue") == 0
    assert value(samples, "nova_autopilot_operations_held", phase="queued") == 2
    assert value(samples, "nova_autopilot_operations_held", phase="awaiting_approval") == 1
    assert value(samples, "nova_autopilot_build_info", version="1.2.3") == 1

    parts.dead["not_json", "unknown"] = 5
    parts.in_flight["resize"] = 0
    parts.held = {"queued": 0, "awaiting_approval": 3}
    parts.calls["POST /v2.1/servers/{id}/action", 202] = 4
    samples = scrape(metrics)
    assert value(samples, dead, queue=notifications, reason="not_json") == 5
    assert value(samples, dropped, source="nova", event_type="unknown", reason="not_json") == 5
    assert value(samples, "nova_autopilot_operations_in_flight", action="resize") == 0
    assert value(samples, "nova_autopilot_operations_held", phase="queued") == 0
    assert value(samples, "nova_autopilot_operations_held", phase="awaiting_approval") == 3
    assert value(samples, requests, call="POST /v2.1/servers/{id}/action", status="202") == 4


def test_breaker_states_are_numbered_closed_half_open_open() -> None:
    parts = Parts()
    parts.breakers = {"global": "closed", "project:p1": "half-open", "policy:resize": "open"}
    samples = scrape(Metrics(parts.sources()))
    state = "nova_autopilot_breaker_state"
    assert value(samples, state, scope="global") == 0
    assert value(samples, state, scope="project:p1") == 1
    assert value(samples, state, scope="policy:resize") == 2


def test_two_daemons_in_one_process_keep_their_figures_apart() -> None:
    first, second = Parts(), Parts()
    first.tally.received("nova", "instance.update", matched=False)
    a, b = Metrics(first.sources()), Metrics(second.sources())
    name = "nova_autopilot_events_received_total"
    key = (name, (("event_type", "instance.update"), ("source", "nova")))
    assert scrape(a)[key] == 1
    assert key not in scrape(b)


def test_the_leader_gauge_follows_the_group() -> None:
    parts = Parts()
    alone = scrape(Metrics(parts.sources()))
    assert value(alone, "nova_autopilot_leader") == 1  # alone, it always leads
    leading = [False]
    grouped = Metrics(dataclasses.replace(parts.sources(), leader=lambda: leading[0]))
    assert value(scrape(grouped), "nova_autopilot_leader") == 0
    leading[0] = True
    assert value(scrape(grouped), "nova_autopilot_leader") == 1


def test_the_ready_and_alive_gauges_say_what_readyz_and_the_watchdog_say() -> None:
    parts = Parts()
    state = {"ready": True, "alive": True}
    metrics = Metrics(
        dataclasses.replace(
            parts.sources(), ready=lambda: state["ready"], alive=lambda: state["alive"]
        )
    )
    samples = scrape(metrics)
    assert (value(samples, "nova_autopilot_ready"), value(samples, "nova_autopilot_alive")) == (
        1,
        1,
    )
    state["ready"] = False  # the broker went away: not ready, still alive
    samples = scrape(metrics)
    assert (value(samples, "nova_autopilot_ready"), value(samples, "nova_autopilot_alive")) == (
        0,
        1,
    )
    state["alive"] = False
    assert value(scrape(metrics), "nova_autopilot_alive") == 0
