"""docs/local.md, run as written: the daemon against the simulated Nova and the local
RabbitMQ, a first request, its history.

The page's commands run in one bash, in order, as a newcomer types them into
three terminals: the commands that serve until Ctrl-C (the sandbox, ``run``)
go to the background and the next command waits until they are ready, as a
reader waits for their first lines; "Ctrl-C" is a SIGINT to them. What makes
the run the test's own and nothing else: HOME is a temporary directory (so
``~/autopilot-local`` is), the checkout is a copy of the files the page copies
(with the real ``.venv``), the vhost ``autopilot-local`` is a name of the
test's own, the sandbox and the daemon's status server listen on free ports.
``make demo`` is not run (it plays the demo, tested elsewhere, and would
reinstall the shared ``.venv``); the rest is the page's text.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.docs.commands import DOCS, ROOT, Command, page_commands
from tests.integration import bus_support
from tests.unavailable import unavailable

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PAGE = DOCS / "local.md"
EXAMPLES = DOCS / "examples" / "local"
VENV = ROOT / ".venv"
#: Serve until Ctrl-C: started in the background, then waited for until ready.
SERVING = {
    "sandbox": (re.compile(r"nova_autopilot\.sandbox (?!.*--print-clouds-yaml)"), "/v2.1"),
    "daemon": (re.compile(r"nova-autopilot .* run$"), '"daemon.started"'),
}
HELPERS = r"""
set -euo pipefail
set -m  # background jobs keep SIGINT, as in a terminal
ready() {  # ready LOG TEXT: wait until LOG shows TEXT, as a reader waits for it
    for _ in $(seq 900); do
        if grep -q -- "$2" "$1"; then return 0; fi
        sleep 0.1
    done
    echo "never ready: $1" >&2; cat "$1" >&2; return 1
}
stop() {  # stop NAME: Ctrl-C to it, and how it ended
    pid=$(cat "$LOGS/$1.pid")
    kill -INT "$pid"
    code=0; wait "$pid" || code=$?
    echo "$1 exit $code" >> "$LOGS/exits"
}
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _broker() -> None:
    if shutil.which(bus_support.RABBITMQCTL) is None:
        unavailable(f"RABBITMQ UNAVAILABLE: no {bus_support.RABBITMQCTL!r} for the page's vhost")
    try:
        with socket.create_connection((bus_support.HOST, bus_support.PORT), timeout=5):
            pass
    except OSError as exc:
        unavailable(f"RABBITMQ UNAVAILABLE: {bus_support.HOST}:{bus_support.PORT}: {exc}")


def _blocks(name: str) -> list[str]:
    """The page's ```NAME blocks."""
    text = PAGE.read_text(encoding="utf-8")
    return re.findall(rf"^```{name}\n(.*?)^```", text, re.M | re.S)


def test_the_page_needs_the_three_commands_it_is_about() -> None:
    texts = [command.text for command in page_commands(PAGE)]
    assert any("--print-clouds-yaml > clouds.yaml" in text for text in texts)
    assert any(re.search(r"nova-autopilot .*check --start$", text) for text in texts)
    assert any(re.search(r"nova-autopilot .*send .* --wait$", text) for text in texts)
    assert any(re.search(r"nova-autopilot .*history$", text) for text in texts)
    assert texts[0] == "make demo"
    assert "demo:" in (ROOT / "Makefile").read_text(encoding="utf-8")


def _script(commands: list[Command], vhost: str, port: int, logs: Path) -> tuple[str, list[str]]:
    """The page as one bash script, and the names of its commands' outputs."""
    lines = [f"LOGS={logs}", HELPERS]
    names: list[str] = []
    stopped = False
    for number, command in enumerate(commands):
        text = command.text.replace("autopilot-local", vhost).replace("8774", str(port))
        text = re.sub(r"^sudo rabbitmqctl", bus_support.RABBITMQCTL, text)
        name = f"{command.page}:{command.line}"
        names.append(name)
        lines.append(f"printf '\\n### {number}\\n'")
        if text == "make demo":
            lines.append("echo 'make demo: the package is in .venv already'")
            continue
        if command.section == "Stop and clean up" and not stopped:
            lines += ["stop daemon", "stop sandbox"]  # Ctrl-C in the second, then the first
            stopped = True
        serving = next((k for k, (shape, _) in SERVING.items() if shape.search(text)), None)
        if serving:
            ready_text = SERVING[serving][1]
            log = logs / f"{serving}.log"
            lines.append(f"{text} > {log} 2>&1 &")
            lines.append(f"echo $! > {logs / serving}.pid")
            lines.append(f"ready {log} '{ready_text}'")
        else:
            lines.append(text)
    return "\n".join(lines) + "\n", names


def _outputs(stdout: str, count: int) -> list[str]:
    parts = re.split(r"^### (\d+)\n", stdout, flags=re.M)
    found = {int(parts[i]): parts[i + 1] for i in range(1, len(parts) - 1, 2)}
    return [found.get(i, "").strip("\n") for i in range(count)]


def test_the_local_page_runs_as_written(tmp_path: Path) -> None:
    _broker()
    vhost = f"docs-local-{uuid.uuid4().hex[:8]}"
    port, metrics_port = _free_port(), _free_port()
    checkout, home, logs = tmp_path / "checkout", tmp_path / "home", tmp_path / "logs"
    for folder in (checkout / "docs" / "examples" / "local", home, logs):
        folder.mkdir(parents=True)
    for example in EXAMPLES.iterdir():
        text = example.read_text(encoding="utf-8").replace("autopilot-local", vhost)
        text = text.replace("port = 9464", f"port = {metrics_port}")
        (checkout / "docs" / "examples" / "local" / example.name).write_text(text)
    (checkout / ".venv").symlink_to(VENV)
    commands = page_commands(PAGE)
    script, names = _script(commands, vhost, port, logs)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OS_", "VIRTUAL_ENV"))}
    env["HOME"] = str(home)
    try:
        done = subprocess.run(
            ["bash", "-c", script],
            cwd=checkout,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    finally:
        for pid in logs.glob("*.pid"):  # a run that failed halfway leaves them serving
            subprocess.run(["kill", "-TERM", pid.read_text().strip()], capture_output=True)
        if (
            vhost
            in subprocess.run(
                [bus_support.RABBITMQCTL, "-q", "list_vhosts"], capture_output=True, text=True
            ).stdout.split()
        ):
            subprocess.run([bus_support.RABBITMQCTL, "-q", "delete_vhost", vhost])
    daemon_log = (logs / "daemon.log").read_text() if (logs / "daemon.log").exists() else ""
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{daemon_log[-3000:]}"
    out = dict(zip(names, _outputs(done.stdout, len(names)), strict=True))

    def output_of(shape: str) -> str:
        (found,) = [
            out[name]
            for name, command in zip(names, commands, strict=True)
            if re.search(shape, command.text)
        ]
        return found

    assert "policies.yaml: 4 policies valid (4 enabled)" in output_of(r"check --start$")
    first, ssh = _blocks("text")[0], _blocks("text")[1]
    confirmed = output_of(r"--server web-1 .*--wait$")
    reverted = output_of(r"--param check=ssh --wait$")
    # what the page shows is what came, line for line but the ids
    assert confirmed.splitlines()[0] == first.splitlines()[0] == "resize confirmed: ok"
    assert [line.split(":")[0] for line in confirmed.splitlines()] == [
        line.split(":")[0] for line in first.splitlines()
    ]
    assert (
        reverted.splitlines()[0]
        == ssh.splitlines()[0]
        == ("resize reverted: health gate failed: tcp: the server has no address to check")
    )
    assert [line.split(":")[0] for line in reverted.splitlines()] == [
        line.split(":")[0] for line in ssh.splitlines()
    ]

    history = output_of(r"nova-autopilot .*history$").splitlines()
    assert re.search(r"resize\s+web-2 \(.*\)\s+resize-checking-ssh\s+reverted", history[1])
    assert re.search(r"resize\s+web-1 \(.*\)\s+resize-on-approved-quota\s+confirmed", history[2])
    assert history[0] == _blocks("text")[2].splitlines()[0]  # the same columns as the page's
    assert "\nready\n" in output_of(r"nova-autopilot .*status$")

    daemon_pid = (logs / "daemon.pid").read_text().strip()
    named = set(output_of(r"list_connections").split())
    prefix = f"nova-autopilot:{socket.gethostname()}:{daemon_pid}"
    assert {f"{prefix}:notifications", f"{prefix}:requests"} <= named  # as docs/broker.md says

    lines = [json.loads(line) for line in daemon_log.splitlines() if line.startswith("{")]
    assert [line["event"] for line in lines if line["event"] == "daemon.started"]
    assert not [line for line in lines if str(line.get("logger", "")).startswith("alembic")]
    assert (logs / "exits").read_text().splitlines() == ["daemon exit 0", "sandbox exit 0"]
    assert not (home / vhost).exists()  # rm -r ~/autopilot-local
