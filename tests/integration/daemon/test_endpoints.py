"""The HTTP endpoints and readiness: on an ephemeral loopback port, /healthz,
/readyz (503 naming what is not ready), /status and /metrics answer from the
functions they are given; Nova's reachability is remembered, never asked per
probe; the journal's write check leaves nothing behind."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from nova_autopilot.actions.runner import Running
from nova_autopilot.bus import IntakeHealth
from nova_autopilot.daemon.endpoints import Endpoints
from nova_autopilot.daemon.health import Reachability, Readiness, operations_section, readiness
from nova_autopilot.errors import CloudUnavailable
from nova_autopilot.journal import Journal, JournalError


def get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read().decode()


class Switches:
    def __init__(self) -> None:
        self.alive = True
        self.ready = Readiness(True, {})
        self.fail_status = False

    def status(self) -> dict[str, Any]:
        if self.fail_status:
            raise RuntimeError("boom")
        return {"daemon": {"version": "1"}, "operations": []}


@pytest.fixture
def served() -> Any:
    switches = Switches()
    endpoints = Endpoints(
        host="127.0.0.1",
        port=0,
        metrics=lambda: (b"nova_autopilot_build_info 1.0\n", "text/plain; version=0.0.4"),
        alive=lambda: switches.alive,
        readiness=lambda: switches.ready,
        status=switches.status,
    )
    endpoints.start()
    try:
        yield endpoints, switches
    finally:
        endpoints.stop()


def test_an_ephemeral_port_is_chosen_and_every_endpoint_answers(served: Any) -> None:
    endpoints, _switches = served
    host, port = endpoints.address
    assert host == "127.0.0.1"
    assert port > 0
    assert get(f"{endpoints.url}/healthz")[0] == 200
    code, kind, body = get(f"{endpoints.url}/metrics")
    assert (code, kind, body) == (
        200,
        "text/plain; version=0.0.4",
        "nova_autopilot_build_info 1.0\n",
    )
    code, kind, body = get(f"{endpoints.url}/status")
    assert (code, kind) == (200, "application/json")
    assert json.loads(body)["daemon"] == {"version": "1"}
    assert get(f"{endpoints.url}/readyz")[0] == 200
    assert get(f"{endpoints.url}/nothing")[0] == 404


def test_not_ready_is_503_with_what_is_not_ready(served: Any) -> None:
    endpoints, switches = served
    switches.ready = Readiness(False, {"consumers": "requests not attached to q"})
    code, kind, body = get(f"{endpoints.url}/readyz")
    assert (code, kind) == (503, "application/json")
    assert json.loads(body) == {
        "ready": False,
        "problems": {"consumers": "requests not attached to q"},
    }
    switches.alive = False
    assert get(f"{endpoints.url}/healthz")[0] == 503


def test_a_failing_endpoint_answers_500_and_the_server_goes_on(served: Any) -> None:
    endpoints, switches = served
    switches.fail_status = True
    code, _, body = get(f"{endpoints.url}/status")
    assert code == 500
    assert "boom" in json.loads(body)["error"]
    assert get(f"{endpoints.url}/healthz")[0] == 200


def test_a_port_in_use_is_refused_at_start(served: Any) -> None:
    endpoints, _ = served
    with pytest.raises(OSError, match="in use"):
        Endpoints(
            host="127.0.0.1",
            port=endpoints.address[1],
            metrics=lambda: (b"", "text/plain"),
            alive=lambda: True,
            readiness=lambda: Readiness(True, {}),
            status=dict,
        )


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_nova_counts_as_reachable_for_three_intervals_after_its_last_answer() -> None:
    clock, answers = Clock(), [True]
    calls = []

    def check() -> None:
        calls.append(clock.now)
        if not answers[-1]:
            raise CloudUnavailable("connection refused", call="ping")

    reach = Reachability(check=check, interval_s=10, clock=clock)
    assert reach.state()["reachable"] is False  # never answered yet
    assert reach.refresh() is True
    answers.append(False)
    clock.now += 25
    assert reach.refresh() is False
    state = reach.state()
    assert state["reachable"] is True
    assert state["last_error"] == "connection refused"
    clock.now += 6  # 31 s since the last answer
    state = reach.state()
    assert state["reachable"] is False
    assert state["last_ok_age_s"] == 31
    assert len(calls) == 2  # reading the state never calls Nova


def test_nova_answering_again_after_failed_checks_is_told_once() -> None:
    answers = [False, False, True, True, False, True]
    backs: list[int] = []

    def check() -> None:
        if not answers.pop(0):
            raise CloudUnavailable("connection refused", call="ping")

    reach = Reachability(check=check, interval_s=10, on_back=lambda: backs.append(len(answers)))
    results = [reach.refresh() for _ in range(6)]
    assert results == [False, False, True, True, False, True]
    assert backs == [3, 0]  # after the third check, and after the sixth


def health(name: str, *, attached: bool) -> IntakeHealth:
    return IntakeHealth(
        name=name,
        source="nova",
        queue=f"{name}-queue",
        broker="amqp://h//",
        alive=attached,
        attached=attached,
        connected_since=None,
        reconnects=0,
        last_error=None if attached else "connection refused",
        in_flight=0,
        oldest_in_flight_s=None,
    )


def test_readiness_names_every_part_that_is_not_ready() -> None:
    def broken_journal() -> None:
        raise JournalError("journal database unavailable")

    ready = readiness(
        intakes=[health("notifications", attached=True)],
        check_journal=lambda: None,
        cloud={"reachable": True},
    )
    assert ready == Readiness(True, {})
    not_ready = readiness(
        intakes=[health("notifications", attached=True), health("requests", attached=False)],
        check_journal=broken_journal,
        cloud={"reachable": False, "last_ok_age_s": None, "last_error": "timed out"},
    )
    assert not not_ready.ready
    assert not_ready.problems == {
        "consumers": "requests not attached to requests-queue (connection refused)",
        "journal": "not writable: journal database unavailable",
        "cloud": "Nova never answered (timed out)",
    }


def test_the_journal_write_check_leaves_no_trace(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/journal.sqlite"
    with Journal.open(url) as journal:
        journal.check_writable()
        journal.check_writable()
        assert journal.history() == []
    read_only = f"sqlite:///file:{tmp_path}/journal.sqlite?mode=ro&uri=true"
    with (
        Journal.open(read_only, migrate_schema=False) as journal,
        pytest.raises(JournalError, match="readonly"),
    ):
        journal.check_writable()


def test_in_flight_operations_are_listed_with_their_age() -> None:
    now = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
    running = [
        Running("op-1", "resize", "srv-1", "wait_verify", now - timedelta(seconds=90), True, 0)
    ]
    (listed,) = operations_section(running, now=now)
    assert listed["operation_id"] == "op-1"
    assert (listed["action"], listed["server_id"], listed["phase"]) == (
        "resize",
        "srv-1",
        "wait_verify",
    )
    assert listed["age_s"] == 90
    assert listed["waiting"] is True
