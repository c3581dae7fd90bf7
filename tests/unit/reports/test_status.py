"""`nova-autopilot status`: it asks the daemon at the configured address and
prints tables or JSON; when nobody answers it says so, lists the journal's
unfinished operations and exits 1."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from nova_autopilot import settings
from nova_autopilot.cli import main
from nova_autopilot.daemon.endpoints import Endpoints
from nova_autopilot.daemon.health import Readiness
from nova_autopilot.journal import Journal, NewOperation
from nova_autopilot.reports import status

DOCUMENT: dict[str, Any] = {
    "daemon": {"version": "0.1.0", "pid": 42, "uptime_s": 3725, "policies": 3, "dry_run": False},
    "readiness": {"ready": False, "problems": {"cloud": "Nova last answered 120 s ago"}},
    "operations": [
        {
            "operation_id": "op-1",
            "action": "resize",
            "server_id": "srv-1",
            "phase": "wait_verify",
            "age_s": 75.2,
        }
    ],
    "consumers": [
        {"name": "notifications", "up": True, "queue": "q-n", "reconnects": 0, "last_error": None},
        {"name": "requests", "up": False, "queue": "q-r", "reconnects": 2, "last_error": "refused"},
    ],
    "breakers": {"global": "open"},
    "sweeps": {
        "interval_s": 300.0,
        "sweeps": 7,
        "last": {
            "at": "2026-11-25T10:00:00+00:00",
            "statuses": ["ERROR"],
            "servers": 12,
            "events": 3,
            "operations": 1,
            "nova_requests": 1,
            "duration_s": 0.42,
            "skipped": None,
            "error": None,
        },
    },
    "counters": {
        "decisions": [{"policy": "resize-approved", "outcome": "run", "count": 4}],
        "operations_finished": [{"action": "resize", "outcome": "confirmed", "count": 3}],
        "nova_requests": [{"call": "POST /v2.1/servers/{id}/action", "status": 202, "count": 6}],
        "guard_refusals": {"cooldown": 1},
    },
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_conf(tmp_path: Path, port: int, **metrics: str) -> Path:
    conf = tmp_path / "nova-autopilot.conf"
    extra = "".join(f"{k} = {v}\n" for k, v in metrics.items())
    conf.write_text(
        f"[DEFAULT]\nstate_dir = {tmp_path / 'state'}\n[metrics]\nport = {port}\n{extra}"
    )
    return conf


@pytest.fixture
def daemon() -> Iterator[Endpoints]:
    endpoints = Endpoints(
        host="127.0.0.1",
        port=0,
        metrics=lambda: (b"", "text/plain"),
        alive=lambda: True,
        readiness=lambda: Readiness(True, {}),
        status=lambda: DOCUMENT,
    )
    endpoints.start()
    try:
        yield endpoints
    finally:
        endpoints.stop()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_a_live_daemon_is_shown_as_tables(
    daemon: Endpoints, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = write_conf(tmp_path, daemon.address[1])
    code, out, _ = run(capsys, "--config-file", str(conf), "status")
    assert code == 0
    assert out.splitlines()[0] == "nova-autopilot 0.1.0 (pid 42), up 1h02m, 3 policies"
    assert "NOT READY\n  cloud: Nova last answered 120 s ago" in out
    assert (
        "OPERATION  ACTION  SERVER  PHASE        AGE\nop-1       resize  srv-1   wait_verify  75s"
        in out
    )
    assert "requests       no   q-r    2           refused" in out
    assert "SCOPE   STATE\nglobal  open" in out
    assert (
        "Sweeps\n  7 sweeps every 300 s; the last at 2026-11-25T10:00:00+00:00: 12 servers, "
        "3 events, 1 operations, 1 Nova requests in 0.42 s" in out
    )
    assert "POST /v2.1/servers/{id}/action  202     6" in out
    assert "cooldown  1" in out


def test_a_live_daemon_is_shown_as_json(
    daemon: Endpoints, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = write_conf(tmp_path, daemon.address[1])
    code, out, _ = run(capsys, "--config-file", str(conf), "status", "--json")
    assert code == 0
    assert json.loads(out) == DOCUMENT


def test_a_silent_daemon_is_reported_with_the_journals_unfinished_operations(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = write_conf(tmp_path, free_port())
    now = datetime.now(timezone.utc)
    waiting = NewOperation(
        policy="p",
        action="rescue",
        project_id=None,
        server_id="srv-9",
        server_name=None,
        params={},
        mode="enforce",
        event={},
        why="test",
        deadline_at=now + timedelta(hours=1),
    )
    with Journal.open(f"sqlite:///{tmp_path / 'state' / 'journal.sqlite'}") as journal:
        journal.accept(message_key="m", operations=[waiting], now=now - timedelta(seconds=300))

    code, out, _ = run(capsys, "--config-file", str(conf), "status")
    assert code == 1
    assert out.startswith("the daemon does not answer: no answer from http://127.0.0.1:")
    assert f"{waiting.id}  rescue  srv-9   start  5m00s" in out

    code, out, _ = run(capsys, "--config-file", str(conf), "status", "--json")
    assert code == 1
    document = json.loads(out)
    assert document["answered"] is False
    assert [o["operation_id"] for o in document["journal"]["unfinished"]] == [waiting.id]


def test_without_a_journal_it_says_so_and_creates_none(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = write_conf(tmp_path, free_port())
    code, out, _ = run(capsys, "--config-file", str(conf), "status", "--json")
    assert code == 1
    assert "there is no journal at" in json.loads(out)["journal"]["error"]
    assert not (tmp_path / "state").exists()


def test_the_address_comes_from_the_configuration(tmp_path: Path) -> None:
    def endpoint(port: int, **metrics: str) -> str:
        return status.endpoint(
            settings.load(config_files=[str(write_conf(tmp_path, port, **metrics))])
        )

    assert endpoint(9464) == "http://127.0.0.1:9464/status"
    assert endpoint(9000, bind_host="0.0.0.0") == "http://127.0.0.1:9000/status"
    assert endpoint(9000, bind_host="::") == "http://[::1]:9000/status"
    assert endpoint(9000, bind_host="10.0.0.5") == "http://10.0.0.5:9000/status"
    with pytest.raises(status.DaemonSilent, match="port = 0"):
        endpoint(0)
    with pytest.raises(status.DaemonSilent, match="enabled = false"):
        endpoint(9464, enabled="false")
