"""A daemon killed with SIGKILL halfway through an operation: another one
resumes it from the journal by reading the server's real state, without
asking Nova twice for the same thing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nova_autopilot.cloud import Cloud
from nova_autopilot.journal import Journal
from nova_autopilot.sandbox import Durations, Sandbox
from nova_autopilot.sandbox.faults import ServerFaults
from tests.integration.stack import Stack, add_flavors, utc_now
from tests.waiting import until

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(durations=Durations().scaled(2)) as s:
        yield add_flavors(s)


def start_worker(
    sandbox: Sandbox, journal: Path, kind: str, server_id: str, **fields: str
) -> subprocess.Popen[str]:
    request = {
        "type": kind,
        "id": f"crash-{kind}",
        "timestamp": utc_now().isoformat(),
        "server": {"id": server_id},
        **fields,
    }
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.integration.crash_worker",
            sandbox.url,
            str(journal),
            json.dumps(request),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def phase_of(journal_path: Path) -> str | None:
    with Journal.open(f"sqlite:///{journal_path}") as journal:
        unfinished = journal.unfinished()
        return unfinished[0].phase if unfinished else None


def state_of(journal_path: Path) -> dict[str, Any]:
    with Journal.open(f"sqlite:///{journal_path}") as journal:
        unfinished = journal.unfinished()
        return dict(unfinished[0].state) if unfinished else {}


def kill(worker: subprocess.Popen[str]) -> None:
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=10)
    assert worker.returncode == -signal.SIGKILL


def test_killed_while_the_server_waits_in_verify_resize_it_is_confirmed_once_after(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    journal = tmp_path / "journal.sqlite"
    server = sandbox.add_server("web-1", "m1.small")
    sandbox.faults.add_server(server.id, ServerFaults(console="emergency"))  # the gate waits
    worker = start_worker(sandbox, journal, "quota.request.approved", server.id, flavor="m1.large")
    try:
        until(lambda: journal.exists() and phase_of(journal) == "gate", 30, "the gate")
        assert sandbox.server(server.id).vm_state == "resized"
    finally:
        kill(worker)
    sandbox.faults.add_server(server.id, ServerFaults(console="ok"))  # the guest came up
    stack = Stack(tmp_path, sandbox=sandbox, journal_path=journal, poll_interval_s=0.2).start()
    try:
        assert stack.engine.resume() == 1
        (op,) = stack.journal.history()
        op = stack.outcome(op.id)
        assert (op.outcome, op.reason) == ("confirmed", None)
        assert stack.nova_calls("resize") == 1
        assert stack.nova_calls("confirmResize") == 1
    finally:
        stack.stop()


def test_killed_after_asking_for_a_rescue_it_does_not_ask_again(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    journal = tmp_path / "journal.sqlite"
    server = sandbox.add_server("db-1", "m1.small", state="ERROR")
    sandbox.faults.add_server(server.id, ServerFaults(delays={"rescue": 3.0}))
    worker = start_worker(sandbox, journal, "server.rescue.requested", server.id)
    try:
        until(lambda: journal.exists() and phase_of(journal) == "wait", 30, "the rescue request")
        assert sandbox.server(server.id).task_state == "rescuing"
    finally:
        kill(worker)
    stack = Stack(tmp_path, sandbox=sandbox, journal_path=journal, poll_interval_s=0.2).start()
    try:
        assert stack.engine.resume() == 1
        (op,) = stack.journal.history()
        op = stack.outcome(op.id)
        assert op.outcome == "rescued"
        assert stack.nova_calls("rescue") == 1
    finally:
        stack.stop()


def test_killed_while_waiting_for_novas_task_it_keeps_the_wait_and_rescues_after(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    journal = tmp_path / "journal.sqlite"
    server = sandbox.add_server("app-1", "m1.small")
    sandbox.faults.add_server(
        server.id, ServerFaults(fail=frozenset({"reboot"}), delays={"reboot_error": 4.0})
    )
    cloud = Cloud.from_endpoint(sandbox.url)
    try:
        cloud.connection.compute.reboot_server(server.id, "HARD")
    finally:
        cloud.close()
    sandbox.wait_for(lambda s: s.vm_state == "error", server.id)  # the reboot task still set
    worker = start_worker(sandbox, journal, "server.rescue.requested", server.id)
    try:
        until(
            lambda: journal.exists() and "task_wait" in state_of(journal),
            30,
            "the wait for the task",
        )
        assert sandbox.server(server.id).task_state == "reboot_started_hard"
    finally:
        kill(worker)
    busy = state_of(journal)["task_wait"]
    stack = Stack(tmp_path, sandbox=sandbox, journal_path=journal, poll_interval_s=0.2).start()
    try:
        assert stack.engine.resume() == 1
        (op,) = stack.journal.history()
        op = stack.outcome(op.id)
        assert (op.outcome, op.reason) == ("rescued", None)
        assert stack.journal.get(op.id).state["task_wait"]["until"] == busy["until"]
        names = [step.name for step in stack.journal.steps(op.id)]
        assert names.count("waiting_for_task") == 1
        assert "task_ended" in names
        assert stack.nova_calls("rescue") == 1
    finally:
        stack.stop()
