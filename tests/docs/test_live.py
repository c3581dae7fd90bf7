"""The pages' commands that need a daemon, RabbitMQ or the sandbox, run against them.

One world for the module: a vhost of its own on the local RabbitMQ, the
sandbox Nova publishing there (web-1, web-2 ACTIVE, db-1 in RESCUE), and the
daemon started by the README's own ``nova-autopilot run``, configured as
docs/local.md configures it (with one more policy, in ``mode: approve``, so
that ``approve`` and ``reject`` have an operation to answer). Then:

- every ``nova-autopilot`` command of the pages (tests/docs/commands.py,
  ``LIVE``), each of its synopsis's forms, runs in document order with the
  world's ``--config-file``: it must end with its documented exit code and,
  when it fails, say so in one line, never with a traceback; the ones that
  must succeed do; jq pipelines run on its output, journalctl's filters on
  the daemon's own log lines;
- every ``rabbitmqctl`` command (``BROKER``) runs on the world's vhost, with
  users of the test's own, and the connection listing of docs/broker.md shows
  the daemon's connections under the names the page gives;
- docs/sandbox.md's command line and HTTP calls (``SANDBOX``) run against a
  sandbox started as the page starts it;
- the troubleshooting page's tap (``TAP``) records what the sandbox publishes,
  and its grep, replay and explain work on what it wrote.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from nova_autopilot.sandbox import Sandbox
from tests.docs import commands as c
from tests.docs.commands import ROOT, Command
from tests.integration import bus_support
from tests.unavailable import unavailable
from tests.waiting import until

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.xdist_group("docs-live")]

BIN = Path(sys.executable).parent
EXAMPLES = c.DOCS / "examples" / "local"
APPROVAL_POLICY = """
  - name: resize-after-approval
    description: Resize once an operator approved it (nova-autopilot approve).
    mode: approve
    when:
      source: request
      event: quota.request.approved
      match:
        - {field: payload.flavor, exists: true}
        - {field: payload.parameters.check, equals: approval}
    do: {action: resize, params: {server: "{{ payload.server }}", flavor: "{{ payload.flavor }}"}}
    confirm: {timeout: 30m, gate: [{console: {contains: "login:"}}], gate_timeout: 1m}
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _ctl(*args: str) -> str:
    done = subprocess.run(
        [bus_support.RABBITMQCTL, "-q", *args], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, f"rabbitmqctl {' '.join(args)}: {done.stdout}{done.stderr}"
    return done.stdout


@dataclass
class World:
    root: Path
    vhost: str
    sandbox: Sandbox
    conf: Path
    env: dict[str, str]
    daemon: subprocess.Popen[str] | None = None
    daemon_argv: list[str] = field(default_factory=list)
    pending: str = ""

    @property
    def transport_url(self) -> str:
        return bus_support.Rabbit(self.vhost).transport_url

    @property
    def amqp_url(self) -> str:
        return bus_support.Rabbit(self.vhost).amqp_url

    @property
    def log(self) -> Path:
        return self.root / "daemon.log"

    def nova_autopilot(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "nova-autopilot"), "--config-file", str(self.conf), *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def bash(self, text: str, **env: str) -> subprocess.CompletedProcess[str]:
        """``text`` in bash, where ``nova-autopilot`` is the command with the world's
        configuration (also inside the pages' loops)."""
        configured = (
            f'nova-autopilot() {{ command nova-autopilot --config-file {self.conf} "$@"; }}'
        )
        return subprocess.run(
            ["bash", "-c", f"set -o pipefail\n{configured}\n{text}"],
            cwd=self.root,  # what the pages' commands write (week.csv) goes there
            env={**self.env, "PATH": f"{BIN}:{self.env['PATH']}", **env},
            capture_output=True,
            text=True,
            timeout=120,
        )

    def server_id(self, name: str) -> str:
        (server,) = [s for s in self.sandbox.servers() if s.name == name]
        return server.id


def _broker() -> None:
    if shutil.which(bus_support.RABBITMQCTL) is None:
        unavailable(f"RABBITMQ UNAVAILABLE: no {bus_support.RABBITMQCTL!r} to create a vhost")
    try:
        with socket.create_connection((bus_support.HOST, bus_support.PORT), timeout=5):
            pass
    except OSError as exc:
        unavailable(f"RABBITMQ UNAVAILABLE: {bus_support.HOST}:{bus_support.PORT}: {exc}")


def _run_command() -> Command:
    """The README's ``nova-autopilot run``: the world's daemon is started by it."""
    (command,) = [
        m
        for m in c.all_commands()
        if m.page == "README.md" and m.words[:2] == ["nova-autopilot", "run"]
    ]
    return command


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    _broker()
    root = tmp_path_factory.mktemp("docs-live")
    vhost = f"docs-live-{uuid.uuid4().hex[:8]}"
    _ctl("add_vhost", vhost)
    _ctl("set_permissions", "-p", vhost, bus_support.USER, ".*", ".*", ".*")
    sandbox = Sandbox(transport_url=bus_support.Rabbit(vhost).transport_url).start()
    world = World(root, vhost, sandbox, root / "nova-autopilot.conf", {})
    try:
        for name, vcpus, ram in (("m1.small", 1, 512), ("m1.large", 2, 1024)):
            sandbox.add_flavor(name, vcpus=vcpus, ram=ram, disk=10)
        sandbox.add_server("web-1", "m1.small")
        sandbox.add_server("web-2", "m1.small")
        sandbox.add_server("db-1", "m1.small", state="RESCUE")
        (root / "clouds.yaml").write_text(sandbox.clouds_yaml())
        policies = (EXAMPLES / "policies.yaml").read_text() + APPROVAL_POLICY
        (root / "policies.yaml").write_text(policies)
        keys = root / "signing-keys.yaml"
        keys.write_text("keys:\n  local: " + "docs-" * 8 + "\n")
        keys.chmod(0o600)
        conf = (EXAMPLES / "nova-autopilot.conf").read_text()
        conf = conf.replace(
            "rabbit://guest:guest@127.0.0.1:5672/autopilot-local", world.transport_url
        )
        conf = re.sub(r"^port = 9464$", f"port = {_free_port()}", conf, flags=re.M)
        for name in ("state", "policies.yaml", "signing-keys.yaml"):
            conf = re.sub(rf"= {re.escape(name)}$", f"= {root / name}", conf, flags=re.M)
        world.conf.write_text(conf + "\n[logging]\nformat = json\n")
        world.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("OS_")},
            "OS_CLIENT_CONFIG_FILE": str(root / "clouds.yaml"),
        }
        # The synopsis without its optional parts: the world's configuration says the rest.
        run = c.nova_autopilot_args(c.variants(" ".join(_run_command().words))[0])
        world.daemon_argv = [str(BIN / "nova-autopilot"), "--config-file", str(world.conf), *run]
        with world.log.open("w") as log:
            world.daemon = subprocess.Popen(
                world.daemon_argv, cwd=root, env=world.env, stdout=log, stderr=subprocess.STDOUT
            )
        until(
            lambda: '"daemon.started"' in world.log.read_text() or world.daemon.poll() is not None,
            60,
            "the daemon to start",
        )
        assert world.daemon.poll() is None, world.log.read_text()
        held = world.nova_autopilot(
            "send", "--type", "quota.request.approved", "--server", "web-2", "--flavor",
            "m1.large", "--param", "check=approval", "--wait", "--json", "--timeout", "60",
        )  # fmt: skip
        assert held.returncode == 0, held.stderr
        world.pending = json.loads(held.stdout)["operation_id"]
        yield world
    finally:
        if world.daemon is not None and world.daemon.poll() is None:
            world.daemon.send_signal(signal.SIGTERM)
            world.daemon.wait(40)
        sandbox.stop()
        _ctl("delete_vhost", vhost)


# -- nova-autopilot ------------------------------------------------------------------------

#: Commands the pages show failing on purpose, or that fail in this world: a fragment
#: of the command -> the exit status and what its one line on stderr (or stdout) says.
EXPECTED_FAILURES = {
    # operations.md: web-1 already has m1.large after the README's send
    "--server web-1 --flavor m1.large --approved-by bob": (1, r"refused"),
    # operations.md: ids of another journal than the world's
    "approve 5b0f1c2e9d8a4b7c8e6f5a4b3c2d1e0f": (
        2,
        r"no operation '5b0f1c2e9d8a4b7c8e6f5a4b3c2d1e0f'",
    ),
    "reject 0e1d2c3b4a5f6e8c7b4a8d9e2c1f0b5a": (
        2,
        r"no operation '0e1d2c3b4a5f6e8c7b4a8d9e2c1f0b5a'",
    ),
}
#: Commands that may end either way in this world, with why.
EITHER_WAY = {
    # the README's approve and reject answer one operation: the second answer is refused
    "approve PENDING --reason": "approved before, without --wait",
    "reject PENDING": "approved before",
}


def _values(world: World) -> dict[str, str]:
    return {
        "SERVER": "web-1",
        "SERVER-UUID": world.server_id("web-1"),
        "NAME": "resize-on-approved-quota",
        "X": "confirmed",
        "ID": world.pending,
        "OPERATION_ID": world.pending,
        "OPERATION-ID": world.pending,
        "TEXT": "docs",
        "KEY_ID": "local",
        "R": "bad_signature",
        "COLUMN": "outcome",
    }


def _live_runs(world: World) -> Iterator[tuple[Command, str, str]]:
    """(command, what runs in bash, its key for the expectations), in document order."""
    for command in c.commands_tried_by(c.LIVE):
        if command.program == "journalctl":
            jq = command.text.split("|", 1)[1]
            yield command, f"cat {world.log} |{jq}", command.text
            continue
        first, rest = c.synopsis_and_pipe(command)
        args = c.nova_autopilot_args(first)
        if c.subcommand(args) == "run":
            continue  # the world's daemon is the README's run: test_the_daemon_...
        for words in c.variants(" ".join(_quote(w) for w in args), _values(world)):
            if words[:1] == ["--config-file"]:
                words = words[2:]
            line = " ".join(_quote(w) for w in words)
            key = line.replace(world.pending, "PENDING")
            yield command, f"nova-autopilot {line} {rest}".rstrip(), key


def _quote(word: str) -> str:
    return word if re.fullmatch(r"[\w./:=@,+\[\]|$-]+|\.\.\.", word) else repr(word)


def test_the_daemon_runs_as_the_readme_starts_it(world: World) -> None:
    assert world.daemon is not None
    assert world.daemon.poll() is None
    every_run = [
        m
        for m in c.commands_tried_by(c.LIVE)
        if m.program == "nova-autopilot" and m.words[-1] == "run"
    ]
    assert [m.page for m in every_run] == ["README.md", "installation.md", "operations.md"]
    for command in every_run:  # the same command; operations.md names its config file
        assert c.subcommand(c.nova_autopilot_args(command.words)) == "run"
        assert c.nova_autopilot_args(command.words)[-1:] == world.daemon_argv[-1:]


#: nova-autopilot's commands that change nothing (in the journal, the daemon, its breakers).
READS = ("history", "status", "pending", "refusals", "breaker list", "sweep --dry-run")
#: How many of them run at once.
READERS = 4


def _reads_only(command: Command, shell: str, key: str) -> bool:
    """Whether the run only reads: journalctl's filters (on the daemon's log), or one
    nova-autopilot command of :data:`READS` and no other nova-autopilot in its pipeline."""
    if command.program == "journalctl":
        return True
    words = [w for w in key.split() if not w.startswith("-") or w == "--dry-run"]
    return shell.count("nova-autopilot") == 1 and any(
        words[: len(read.split())] == read.split() for read in READS
    )


def _run_in_order(world: World, runs: list[tuple[Command, str, str]]) -> list[Any]:
    """Each run's result, in the pages' order. Those that change something run alone and
    one after the other; those that only read run a few at once, between the change
    before them and the one after them, as they come in the pages."""
    results: dict[int, subprocess.CompletedProcess[str]] = {}
    waiting: list[int] = []
    with ThreadPoolExecutor(READERS) as pool:

        def read_the_waiting() -> None:
            shells = [runs[i][1] for i in waiting]
            for i, done in zip(waiting, pool.map(_bash_of(world), shells), strict=True):
                results[i] = done
            waiting.clear()

        for i, run in enumerate(runs):
            if _reads_only(*run):
                waiting.append(i)
                continue
            read_the_waiting()
            results[i] = _bash_of(world)(run[1])
        read_the_waiting()
    return [results[i] for i in range(len(runs))]


def _bash_of(world: World) -> Callable[[str], subprocess.CompletedProcess[str]]:
    return lambda shell: world.bash(shell, OP=world.pending)


def test_every_live_command_of_the_pages_runs(world: World) -> None:
    problems = []
    ran = 0
    runs = list(_live_runs(world))
    assert any(_reads_only(*run) for run in runs)
    assert not _reads_only(*next(run for run in runs if " approve" in run[1]))
    for (command, shell, key), done in zip(runs, _run_in_order(world, runs), strict=True):
        ran += 1
        print(f"{command}: {key} -> {done.returncode}")  # shown when the test fails
        said = (done.stderr.strip() or done.stdout.strip()).splitlines()
        where = f"{command}: `{key}`"
        if "Traceback" in done.stdout + done.stderr:
            problems.append(f"{where}: a traceback\n{done.stderr}")
            continue
        expected = next((v for k, v in EXPECTED_FAILURES.items() if k in key), None)
        if expected is not None:
            code, text = expected
            if done.returncode != code or not re.search(text, "\n".join(said)):
                problems.append(f"{where}: expected exit {code} saying {text!r}, got "
                                f"{done.returncode}: {said}")  # fmt: skip
            continue
        if any(key.startswith(k) for k in EITHER_WAY) and done.returncode in (0, 1):
            continue
        if done.returncode != 0:
            problems.append(f"{where}: exit {done.returncode}: {done.stderr.strip()}")
        elif "--json" in key and "|" not in shell:
            try:
                json.loads(done.stdout)
            except ValueError:
                problems.append(f"{where}: --json printed no JSON: {done.stdout[:200]!r}")
        if done.returncode != 0 and len(done.stderr.strip().splitlines()) > 1:
            problems.append(f"{where}: more than one line on stderr: {done.stderr}")
    assert ran > 40
    assert not problems, "\n".join(problems)


def test_the_readmes_request_was_carried_out_and_shows_in_history(world: World) -> None:
    history = world.nova_autopilot("history", "--server", "web-1", "--json")
    assert history.returncode == 0, history.stderr
    outcomes = [op["outcome"] for op in json.loads(history.stdout)["operations"]]
    assert "confirmed" in outcomes  # README: send --type quota.request.approved --server web-1
    unrescue = world.nova_autopilot("history", "--server", "db-1", "--json")
    assert [op["outcome"] for op in json.loads(unrescue.stdout)["operations"]] == ["unrescued"]
    assert world.sandbox.server(world.server_id("db-1")).status == "ACTIVE"


# -- RabbitMQ ------------------------------------------------------------------------------


def test_every_rabbitmqctl_command_of_the_pages_runs_on_a_vhost_of_its_own(world: World) -> None:
    prefix = f"docs-{uuid.uuid4().hex[:6]}-"
    users: set[str] = set()
    commands = c.commands_tried_by(c.BROKER)
    assert {m.page for m in commands} == {"broker.md", "messaging.md", "nova-setup.md"}
    try:
        for command in commands:
            words = command.pipeline()[0]
            mine = f"{prefix}{command.page[:-3]}-"  # the same user on two pages: two users
            text = command.text
            for vhost in ("nova-notifications", "nova", "VHOST"):  # the pages' vhosts
                text = text.replace(f"-p {vhost} ", f"-p {world.vhost} ")
            if words[1] in ("add_user", "set_permissions"):
                user = words[2] if words[1] == "add_user" else words[4]
                users.add(mine + user)
                text = re.sub(rf"(add_user|{re.escape(world.vhost)}) {re.escape(user)} ",
                              rf"\1 {mine}{user} ", text)  # fmt: skip
            if words[1] == "add_vhost":
                text = text.replace("add_vhost", "list_vhosts #")  # the world has its own
            done = world.bash(text.replace("rabbitmqctl", bus_support.RABBITMQCTL, 1))
            assert done.returncode == 0, f"{command}: {text}\n{done.stdout}{done.stderr}"
            if words[1] == "list_connections":
                _check_connection_listing(world, done.stdout)
        permissions = _ctl("list_permissions", "-p", world.vhost)
        for user in users:
            assert user in permissions
        policies = _ctl("list_policies", "-p", world.vhost)
        assert "nova-autopilot-retry" in policies
        assert "nova-notifications-cap" in policies
    finally:
        for user in users:
            subprocess.run(
                [bus_support.RABBITMQCTL, "-q", "delete_user", user], capture_output=True
            )
        for name in ("nova-autopilot-retry", "nova-notifications-cap"):
            subprocess.run(
                [bus_support.RABBITMQCTL, "-q", "clear_policy", "-p", world.vhost, name],
                capture_output=True,
            )


def _check_connection_listing(world: World, listing: str) -> None:
    """docs/broker.md's listing shows the daemon's connections by the names it gives."""
    assert world.daemon is not None
    rows = [line.split("\t") for line in listing.splitlines() if line.startswith(world.vhost)]
    names = [row[2] for row in rows]
    daemon = f"nova-autopilot:{socket.gethostname()}:{world.daemon.pid}"
    assert names.count(f"{daemon}:notifications") == 1, names
    assert 1 <= names.count(f"{daemon}:requests") <= 2, names
    assert all(" -> " in row[1] for row in rows)  # the name close_connection takes
    page = (c.DOCS / "broker.md").read_text(encoding="utf-8")
    for purpose in ("notifications", "requests"):
        assert f"`nova-autopilot:<host>:<pid>:{purpose}`" in page


# -- the sandbox's page --------------------------------------------------------------------


@pytest.fixture
def page_sandbox(world: World) -> Iterator[tuple[int, subprocess.Popen[str]]]:
    """The sandbox as docs/sandbox.md starts it, on a free port and the world's vhost."""
    (start,) = [m for m in c.commands_tried_by(c.SANDBOX) if "--server web-1:small" in m.text]
    port = _free_port()
    text = start.text.replace("8774", str(port))
    text = text.replace("rabbit://guest:guest@127.0.0.1:5672/", world.transport_url)
    args = c.Command(start.page, start.line, text, start.section, start.block).words
    process = subprocess.Popen(
        [sys.executable, *args[1:]], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == f"http://127.0.0.1:{port}/v2.1"
        yield port, process
    finally:
        process.terminate()
        process.wait(10)


def test_the_sandbox_pages_commands_run_against_a_sandbox_started_as_it_says(
    world: World, page_sandbox: tuple[int, subprocess.Popen[str]]
) -> None:
    port, _ = page_sandbox
    servers = world.bash(
        f"curl -s -H 'X-Auth-Token: admin:admin' http://127.0.0.1:{port}/v2.1/servers?name=db-1"
    )
    (db1,) = json.loads(servers.stdout)["servers"]
    ran = 0
    for command in c.commands_tried_by(c.SANDBOX):
        if "--server web-1:small" in command.text:
            continue  # the fixture's start
        text = command.text.replace("8774", str(port)).replace("<id>", db1["id"])
        if "--print-clouds-yaml" in text:
            done = world.bash(text.replace("python -m", f"{sys.executable} -m", 1))
            assert done.returncode == 0, done.stderr
            shown = _shown_output(command).replace("8774", str(port))
            assert done.stdout == shown, f"{command}: the page shows another clouds.yaml"
            assert (
                yaml.safe_load(done.stdout)["clouds"]["sandbox"]["auth"]["token"] == "admin:admin"
            )
            ran += 1
            continue
        text = re.sub(r"\s+#.*$", "", text)  # its comment, after which -w would be one too
        text = re.sub(r"\s+#.*$", "", text)  # its comment: -w after it would be one too
        done = world.bash(text + " -w '\\n%{http_code}'")
        body, status = done.stdout.rsplit("\n", 1)
        assert done.returncode == 0, f"{command}: {done.stderr}"
        assert status.startswith("2"), f"{command}: HTTP {status}: {body}"
        if body.strip():
            json.loads(body)
        ran += 1
    assert ran == 11


def _shown_output(command: Command) -> str:
    """What a console block shows after the command (up to the next prompt)."""
    text = (c.DOCS / command.page).read_text(encoding="utf-8").splitlines()
    out = []
    for line in text[command.line :]:
        if line.startswith(("$ ", "```")):
            break
        out.append(line)
    return "\n".join(out) + "\n"


# -- the troubleshooting page's tap --------------------------------------------------------


def _page_block(page: str, section: str, kind: str) -> str:
    text = (c.DOCS / page).read_text(encoding="utf-8")
    part = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(rf"^```{kind}\n(.*?)^```", part, re.M | re.S)[:1]
    return str(block)


def test_the_tap_records_what_nova_sends_and_the_pages_grep_and_explain_use_it(
    world: World, tmp_path: Path
) -> None:
    (tmp_path / "tap.py").write_text(
        _page_block("troubleshooting.md", "Tap Nova's notifications", "python")
    )
    stream = tmp_path / "stream.jsonl"
    tap = subprocess.Popen(
        [sys.executable, "tap.py", world.amqp_url, str(stream)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(2)  # bound to Nova's exchange
        assert tap.poll() is None, tap.stderr.read() if tap.stderr else ""
        server = world.sandbox.add_server("tap-1", "m1.small")
        world.sandbox.fail(server.id, "reboot")
        reboot = json.dumps({"reboot": {"type": "HARD"}})
        done = world.bash(
            "curl -s -X POST -H 'X-Auth-Token: admin:admin' -H 'Content-Type: application/json' "
            f"-d '{reboot}' {world.sandbox.url}/servers/{server.id}/action"
        )
        assert done.returncode == 0
        try:
            until(lambda: stream.exists() and "compute.exception" in stream.read_text(), 30,
                  "the tap to write the failed reboot")  # fmt: skip
        except AssertionError:
            tap.terminate()
            raise AssertionError(
                f"{done.stdout}\n{stream.read_text() if stream.exists() else 'no stream'}\n"
                f"{tap.communicate()}"
            ) from None
    finally:
        tap.send_signal(signal.SIGINT)  # the page: stop the script
        tap.wait(10)
    commands = c.commands_tried_by(c.TAP)
    assert [m.program for m in commands] == ["nova-autopilot", "grep", "nova-autopilot"]
    outputs = []
    for command in commands:
        text = command.text.replace(
            "/etc/nova-autopilot/policies.yaml", str(world.root / "policies.yaml")
        )
        done = subprocess.run(
            ["bash", "-c", "set -o pipefail\n" + text],
            cwd=tmp_path,
            env={**world.env, "PATH": f"{BIN}:{world.env['PATH']}"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, f"{command}: {text}\n{done.stdout}{done.stderr}"
        outputs.append(done.stdout)
    event = json.loads((tmp_path / "event.json").read_text())
    assert event["event_type"] == "instance.update"
    assert event["payload"]["nova_object.data"]["display_name"] == "tap-1"
    replayed, _, explained = outputs
    assert "rescue-failed-boot" in replayed  # the failed reboot of a launched server
    assert explained.startswith("event instance.update  (nova, versioned)")
    assert "rescue-failed-boot" in explained
