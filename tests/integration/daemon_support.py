"""The real daemon process (`nova-autopilot run`) in tests: starting it, reading what it
logs, stopping it, and the command line's `send` against it.

The ``daemon_world`` fixture (tests/integration/conftest.py) gives a sandbox Nova
on the test's own RabbitMQ vhost and a configuration for the daemon next to it.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nova_autopilot.sandbox import Sandbox
from tests.waiting import until

#: Where the console script ``nova-autopilot`` of this interpreter is.
BIN = Path(sys.executable).parent
#: The policies of ``daemon_world``'s configuration.
POLICIES = """
policies:
  - name: resize-on-approved-quota
    when: {source: request, event: quota.request.approved}
    do: {action: resize, params: {server: "{{ payload.server }}", flavor: "{{ payload.flavor }}"}}
    confirm: {timeout: 60s, gate: [{console: {contains: "login:"}}], gate_timeout: 10s}
  - name: rescue-failed-boot
    when:
      source: nova
      event: instance.update
      match:
        - {field: payload.state_update.state, equals: error}
        - {field: payload.state_update.old_state, not_equals: error}
        - {field: payload.launched_at, exists: true}
    do: {action: rescue, params: {server: {id: "{{ instance_id }}"}}}
    confirm: {timeout: 60s}
"""
#: The daemon's world: the sandbox Nova, the configuration file, the environment.
DaemonWorld = tuple[Sandbox, Path, dict[str, str]]


class Running:
    """The daemon process and everything it printed (JSON log lines)."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.raw.append(line)
            try:
                self.lines.append(json.loads(line))
            except ValueError:
                continue

    def logged(self, event: str) -> list[dict[str, Any]]:
        return [line for line in list(self.lines) if line.get("event") == event]


def launch(conf: Path, env: Mapping[str, str]) -> Running:
    """`nova-autopilot run` with ``conf``, not waited for."""
    process = subprocess.Popen(
        [str(BIN / "nova-autopilot"), "--config-file", str(conf), "run"],
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return Running(process)


def start_daemon(conf: Path, env: Mapping[str, str]) -> Running:
    """`nova-autopilot run`, once it logged that it started, and ready."""
    daemon = launch(conf, env)
    process = daemon.process
    until(lambda: daemon.logged("daemon.started") or process.poll() is not None, 60, "start")
    assert process.poll() is None, "".join(daemon.raw)
    assert daemon.logged("daemon.started")[0]["ready"] is True
    return daemon


def stop_daemon(daemon: Running, timeout: float = 40) -> None:
    """SIGTERM, and the clean exit it must lead to."""
    daemon.process.send_signal(signal.SIGTERM)
    code = daemon.process.wait(timeout=timeout)
    assert code == 0, "".join(daemon.raw[-30:])


def send(conf: Path, env: Mapping[str, str], *args: str) -> tuple[int, dict[str, Any]]:
    """`nova-autopilot send ... --wait --json`: its exit status and its answer."""
    done = subprocess.run(
        [
            str(BIN / "nova-autopilot"),
            "--config-file",
            str(conf),
            "send",
            *args,
            "--wait",
            "--json",
            "--timeout",
            "60",
        ],
        env=dict(env),
        capture_output=True,
        text=True,
        check=False,
        timeout=90,
    )
    assert done.stdout, done.stderr
    return done.returncode, json.loads(done.stdout)


def endpoints(daemon: Running) -> str:
    return f"http://127.0.0.1:{daemon.logged('endpoints.listening')[0]['port']}"


def get(url: str) -> tuple[int, dict[str, Any]]:
    """An endpoint's status and JSON answer; status 0 when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, _json(response.read())
    except urllib.error.HTTPError as refused:
        return refused.code, _json(refused.read())
    except OSError as exc:  # connection refused: the daemon is gone
        return 0, {"error": str(exc)}


def _json(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except ValueError:
        return {"text": body.decode(errors="replace")}
    return value if isinstance(value, dict) else {"value": value}
