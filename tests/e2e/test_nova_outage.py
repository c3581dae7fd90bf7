"""The real Nova's API stopped for 30 s under a waiting resize and a rescue being
asked (a row of the fault matrix of "Faults survived, measured"), through
`nova-autopilot run`, `send --wait` and `history`.

Only the box's nova-api (gunicorn, its own process group) is stopped: conductor,
scheduler, compute, placement and RabbitMQ stay up, so Nova finishes moving the
disk and reaches VERIFY_RESIZE while nobody can ask it anything, and its
notifications still reach the daemon. The daemon asked for the resize just before
the API went away; it is woken by ``instance.resize_finish.end`` during the outage,
cannot read the server, and retries with backoff. A rescue of a server whose boot
failed (ERROR after a failed reboot) is asked for by an operator just after the API
went away: the rescue's first look at the server meets the outage, and is retried
with backoff too.

- Within the deadlines (300 s): the resize ends ``confirmed`` and the rescue
  ``rescued`` once Nova answers again (the daemon's background check finds it back
  and runs the retries that wait, then: ``operations.retried_now``): one operation
  each; one resize and one confirmation asked of Nova, the new flavor, ACTIVE; one
  rescue asked (Nova records one), RESCUE, then unrescued on the operator's word;
  /readyz names the cloud during the outage and is ready after it; no breaker opens.
- Past the deadlines (20 s, both passing during the outage, the rescue's a few
  seconds after the resize's): as docs/runbook.md ("Nova or Keystone unreachable")
  says, each operation retries with backoff until its deadline and ends ``timed_out``
  then, while Nova is still unreachable, its reason naming the phase and Nova's error
  (the resize used to be retried at once, again and again, past its deadline, until
  the retry delay's arithmetic overflowed and the operation ended as an internal
  error); the rescue asked Nova nothing, and its server is left as it was.

The daemon sends the rescue's request right after its first look at the server, so
nova-api cannot be stopped between the two at a moment the test chooses. That case
is tried on the runner instead (tests/integration/actions/test_runner.py): a request
Nova never received is asked again after a new look at the server; one Nova took,
whose answer was lost, is not asked again.

Whatever happens, the box's nova-api is started again before the test ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from openstack.compute.v2.flavor import Flavor
from openstack.compute.v2.server import Server

from tests.e2e.support import daemon_config, history
from tests.integration.daemon_support import BIN, Running, start_daemon, stop_daemon
from tests.novabox import faults, probes, processes
from tests.novabox import services as definitions
from tests.novabox.client import NovaBox
from tests.novabox.config import RunConfig
from tests.novabox.runs import pid_alive
from tests.waiting import until

pytestmark = pytest.mark.e2e

OUTAGE_S = 30.0
RESIZE_DELAY = 5  # seconds Nova spends moving the disk: it reaches VERIFY_RESIZE in the outage
CLOUD_CHECK_S = 3  # /readyz names the cloud after three checks without an answer
POLICIES = """
policies:
  - name: resize-on-approved-quota
    when: {source: request, event: quota.request.approved}
    do: {action: resize, params: {server: "{{ payload.server }}", flavor: "{{ payload.flavor }}"}}
    confirm: {timeout: TIMEOUT, gate: [{console: {contains: "login:"}}], gate_timeout: 30s}
    limits: {cooldown: 0}
  - name: rescue-on-request
    when: {source: request, event: server.rescue.requested}
    do: {action: rescue, params: {server: "{{ payload.server }}"}}
    confirm: {timeout: TIMEOUT}
    limits: {cooldown: 0}
  - name: unrescue-when-repaired
    when: {source: request, event: server.repair.done}
    do: {action: unrescue, params: {server: "{{ payload.server }}"}}
    confirm: {timeout: TIMEOUT}
    limits: {cooldown: 0}
"""


# -- the box's nova-api, stopped and started again ------------------------------------


class NovaApi:
    """The box's nova-api alone: stopped (SIGINT to its process group, gunicorn's quick
    shutdown: its graceful one would wait up to 3 s for the daemon's kept-alive
    connections; SIGKILL after 10 s) and started again with the command line,
    environment and port the box started it with (tests.novabox.services), recorded
    in the box as before."""

    NAME = "nova-api"

    def __init__(self, novabox: NovaBox) -> None:
        self.novabox = novabox
        self.box = novabox.box
        self.down = False

    def answers(self) -> bool:
        return probes.compute(self.novabox.compute_url, "/") is not None

    def stop(self) -> None:
        service = self.box.services[self.NAME]
        self.down = True
        for signum, wait in ((signal.SIGINT, 10.0), (signal.SIGKILL, 10.0)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(service.pid, signum)
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and self._members(service.pid):
                service.exited()  # reaps the leader: it is this process's child
                time.sleep(0.1)
            if not self._members(service.pid):
                break
        assert not self._members(service.pid), "nova-api did not stop"
        assert not self.answers(), "the compute API still answers with nova-api stopped"

    def start(self) -> None:
        box = self.box
        cfg = RunConfig(
            run_dir=box.run_dir,
            compute_port=_port(box.compute_url),
            placement_port=_port(box.placement_url),
            transport_url=box.transport_url,
            database_urls={},  # not part of nova-api's command line nor environment
        )
        sqlite = box.state.database_kind == "sqlite"
        service = processes.start(
            self.NAME,
            definitions.commands(box.venv, cfg)[self.NAME],
            env=definitions.environment(box.venv, cfg, box.run_id, sqlite=sqlite),
            cwd=box.run_dir,
            log_dir=box.run_dir / "logs",
        )
        box.services[self.NAME] = service
        box.state.services[self.NAME] = service.pid
        box.state.save()
        until(lambda: self.answers() or service.exited() is not None, 90, "nova-api to answer")
        assert service.exited() is None, box.log_tail(self.NAME)
        self.down = False
        until(  # the control plane's view of the rest of the box: untouched
            lambda: all(
                state == "up"
                for state in probes.services_up(
                    self.novabox.compute_url, definitions.NOVA_SERVICES
                ).values()
            ),
            60,
            "conductor, scheduler and compute to be up",
        )

    def _members(self, pgid: int) -> list[int]:
        """Live processes of the run in nova-api's process group."""
        members = []
        for pid in processes.processes_of_run(self.box.run_dir):
            with contextlib.suppress(ProcessLookupError):
                if os.getpgid(pid) == pgid and pid_alive(pid):
                    members.append(pid)
        return members


def _port(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None, url
    return port


@dataclass
class Outage:
    """What was seen while nova-api was down."""

    stopped_at: float = 0.0
    started_at: float = 0.0
    readyz: list[tuple[float, int, dict[str, Any]]] = field(default_factory=list)


@contextlib.contextmanager
def nova_api_down(api: NovaApi) -> Iterator[Outage]:
    """nova-api stopped for the block; started again at its end, whatever happens."""
    outage = Outage()
    try:
        api.stop()
        outage.stopped_at = time.monotonic()
        yield outage
    finally:
        if api.down or not api.answers():
            api.start()
        outage.started_at = time.monotonic()


@pytest.fixture
def nova_api(novabox: NovaBox) -> Iterator[NovaApi]:
    api = NovaApi(novabox)
    assert api.answers(), "the box's nova-api is not up before the test"
    try:
        yield api
    finally:  # the box is shared by the worker's other e2e tests
        if api.down or not api.answers():
            api.start()


# -- the daemon and the operator's request ----------------------------------------------


@dataclass
class Request:
    """`nova-autopilot send --wait` running in the background, its progress read."""

    process: subprocess.Popen[str]
    progress: list[str] = field(default_factory=list)
    out: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for stream, into in ((self.process.stderr, self.progress), (self.process.stdout, self.out)):
            threading.Thread(target=_read, args=(stream, into), daemon=True).start()

    def entered(self, phase: str) -> bool:
        return any(line.rstrip().endswith(f": {phase}") for line in list(self.progress))

    def answer(self, timeout: float) -> tuple[int, dict[str, Any]]:
        code = self.process.wait(timeout=timeout)
        until(lambda: self.out, 5, "send's answer")  # the reader thread may lag behind
        return code, json.loads("".join(self.out))


def _read(stream: Any, into: list[str]) -> None:
    for line in stream:
        into.append(line)


def send(
    conf: Path, env: dict[str, str], kind: str, server: Server, *options: str, timeout: float
) -> Request:
    """`nova-autopilot send --wait` of a request of type ``kind`` about ``server``."""
    argv = [
        str(BIN / "nova-autopilot"), "--config-file", str(conf), "send", "--unsigned",
        "--type", kind, "--server", server.id, *options,
        "--wait", "--json", "--timeout", str(int(timeout)),
    ]  # fmt: skip
    process = subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    return Request(process)


def readyz(daemon: Running) -> tuple[int, dict[str, Any]]:
    (listening,) = daemon.logged("endpoints.listening")
    url = f"http://127.0.0.1:{listening['port']}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def ready(daemon: Running) -> tuple[int, dict[str, Any]] | None:
    """/readyz's answer once it is 200, else None."""
    answer = readyz(daemon)
    return answer if answer[0] == 200 else None


def breakers(conf: Path, env: dict[str, str]) -> Any:
    done = subprocess.run(
        [str(BIN / "nova-autopilot"), "--config-file", str(conf), "breaker", "list", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


Log = list[dict[str, Any]]


def counts(lines: Log, *events: str, operation: str | None = None) -> dict[str, int]:
    """How many of ``lines`` (the daemon's log, or a part of it) are each of ``events``;
    with ``operation``, only that operation's."""
    return {
        event: sum(
            1
            for line in lines
            if line.get("event") == event and operation in (None, line.get("operation_id"))
        )
        for event in events
    }


DAEMON_EVENTS = ("operation.retry", "poll.failed", "cloud.unreachable", "operation.finished")
OPERATION_EVENTS = ("operation.retry", "operation.finished")


def steps(op: dict[str, Any]) -> list[str]:
    return [step["name"] for step in op["steps"]]


def nova_calls(op: dict[str, Any], call: str) -> list[int]:
    """The statuses of the requests of ``call`` (``rescue``, ``resize``...) that reached
    Nova for the operation, as its history lists them."""
    return [c["status"] for step in op["steps"] for c in step["calls"] if c.get("call") == call]


@pytest.fixture
def server(novabox: NovaBox, small: Flavor) -> Iterator[Server]:
    """A server to resize; Nova takes RESIZE_DELAY seconds to move its disk."""
    booted = novabox.boot(
        f"outage-{uuid.uuid4().hex[:6]}",
        small,
        metadata={faults.CONSOLE_KEY: "ok", faults.RESIZE_DELAY_KEY: str(RESIZE_DELAY)},
    )
    try:
        yield booted
    finally:
        novabox.delete(booted, timeout=120)


@pytest.fixture
def failed_boot(novabox: NovaBox, small: Flavor) -> Iterator[Server]:
    """A server to rescue: it had launched, then its reboot failed (ERROR)."""
    booted = novabox.boot(f"outage-rescue-{uuid.uuid4().hex[:6]}", small)
    try:
        yield novabox.make_fail_boot(booted)
    finally:
        novabox.delete(booted, timeout=120)


def running_daemon(
    tmp_path: Path, novabox: NovaBox, timeout: str
) -> tuple[Path, dict[str, str], Running]:
    conf, env = daemon_config(tmp_path, novabox, POLICIES.replace("TIMEOUT", timeout))
    text = conf.read_text()
    assert text.endswith("[metrics]\nport = 0\n"), text
    conf.write_text(text + f"cloud_check_interval = {CLOUD_CHECK_S}\n")
    return conf, env, start_daemon(conf, env)


def hold_outage(
    outage: Outage, daemon: Running, until_s: float, done: Callable[[], object] = lambda: False
) -> None:
    """Keep nova-api down until ``until_s`` after it stopped, or until ``done()``, asking
    /readyz meanwhile."""
    while time.monotonic() < outage.stopped_at + until_s and not done():
        code, body = readyz(daemon)
        outage.readyz.append((time.monotonic() - outage.stopped_at, code, body))
        time.sleep(0.5)  # one look at /readyz each half second: a sample, not a wait


# -- the tests ----------------------------------------------------------------------------


def test_a_waiting_resize_and_a_rescue_being_asked_outlive_30s_without_novas_api(
    novabox: NovaBox,
    nova_api: NovaApi,
    server: Server,
    failed_boot: Server,
    large: Flavor,
    small: Flavor,
    tmp_path: Path,
) -> None:
    conf, env, daemon = running_daemon(tmp_path, novabox, "300s")
    try:
        with novabox.notifications() as log:
            resizing = send(
                conf, env, "quota.request.approved", server, "--flavor", large.name, timeout=300
            )
            until(lambda: resizing.entered("wait_verify"), 90, "the resize asked of Nova")
            before = list(daemon.lines)
            with nova_api_down(nova_api) as outage:
                # The rescue is asked for now: its first look at the server meets the outage.
                rescuing = send(conf, env, "server.rescue.requested", failed_boot, timeout=300)
                # Nova goes on without its API: the disk moved, VERIFY_RESIZE.
                log.wait_for_event("instance.resize_finish.end", server.id, timeout=OUTAGE_S)
                reached_verify_s = time.monotonic() - outage.stopped_at
                hold_outage(outage, daemon, OUTAGE_S)
                during = list(daemon.lines)
            rescue_code, rescued = rescuing.answer(timeout=240)
            rescued_s = time.monotonic() - outage.started_at
            unrescuing = send(conf, env, "server.repair.done", failed_boot, timeout=120)
            code, answer = resizing.answer(timeout=240)
            resized_s = time.monotonic() - outage.started_at
            unrescue_code, unrescued = unrescuing.answer(timeout=120)
            log.wait_for_event("instance.resize_confirm.end", server.id)
        back = until(lambda: ready(daemon), 3 * CLOUD_CHECK_S + 10, "/readyz ready again")
        assert back is not None
        ready_code, ready_body = back
        ended = list(daemon.lines)
    finally:
        stop_daemon(daemon)

    (resize,) = history(conf, env, "--server", server.id)
    rescue, unrescue = sorted(
        history(conf, env, "--server", failed_boot.id), key=lambda op: op["action"]
    )
    nova_actions = [a.action for a in novabox.conn.compute.server_actions(failed_boot)]
    ops = {"resize": resize["id"], "rescue": rescue["id"]}
    print(
        f"\nnova-api down {outage.started_at - outage.stopped_at:.1f} s; VERIFY_RESIZE reached "
        f"{reached_verify_s:.1f} s into it\n"
        f"answers after it came back: resize {resized_s:.1f} s {answer.get('outcome')} "
        f"({answer.get('reason')}); rescue {rescued_s:.1f} s {rescued.get('outcome')} "
        f"({rescued.get('reason')}); then unrescue {unrescued.get('outcome')}\n"
        f"daemon log before/during/at the end: {counts(before, *DAEMON_EVENTS)} / "
        f"{counts(during, *DAEMON_EVENTS)} / {counts(ended, *DAEMON_EVENTS)}\n"
        f"per operation during the outage: "
        f"{ {a: counts(during, *OPERATION_EVENTS, operation=i) for a, i in ops.items()} }\n"
        f"rescue: {rescue['nova_requests']} Nova requests, steps {steps(rescue)}; "
        f"Nova's actions on its server: {nova_actions}\n"
        f"/readyz during the outage: "
        f"{[(round(t, 1), c, b.get('problems')) for t, c, b in outage.readyz[::10]]}\n"
        f"/readyz after: {ready_code} {ready_body}"
    )
    # The resize: confirmed once Nova answers again, asked once.
    assert reached_verify_s < OUTAGE_S, "Nova reached VERIFY_RESIZE only after the outage"
    assert (code, answer["outcome"], answer.get("reason")) == (0, "confirmed", None), answer
    assert (resize["id"], resize["outcome"]) == (answer["operation_id"], "confirmed")
    names = steps(resize)
    assert names.count("resize_requested") == 1, names
    assert names.count("confirm_requested") == 1, names
    assert "wait_verify.retry" in names, names  # woken during the outage, could not read
    current = novabox.conn.compute.get_server(server.id)
    assert (current.status, current.flavor.name) == ("ACTIVE", large.name)
    assert log.event_types(server.id).count("instance.resize_confirm.end") == 1

    # The rescue: retried while Nova was away, asked once it answered, rescued once.
    assert (rescue_code, rescued["outcome"], rescued.get("reason")) == (0, "rescued", None)
    assert (rescue["id"], rescue["outcome"]) == (rescued["operation_id"], "rescued")
    names = steps(rescue)
    assert names[0] == "check.retry", names  # its first look met the outage
    assert names.count("rescue_requested") == 1, names
    (rescue_status,) = nova_calls(rescue, "rescue")  # one rescue reached Nova, which took it
    assert 200 <= rescue_status < 300, rescue["steps"]
    assert nova_actions.count("rescue") == 1, nova_actions
    assert log.event_types(failed_boot.id).count("instance.rescue.end") == 1
    # ... and unrescued on the operator's word, the server ACTIVE again.
    assert (unrescue_code, unrescued["outcome"]) == (0, "unrescued"), unrescued
    assert unrescue["outcome"] == "unrescued"
    assert novabox.conn.compute.get_server(failed_boot.id).status == "ACTIVE"

    for op in ops.values():
        assert counts(during, "operation.retry", operation=op)["operation.retry"] >= 1, op
    assert counts(during, "cloud.unreachable")["cloud.unreachable"] >= 1, during
    # Once the daemon's check found Nova back, the waiting retries ran then, not at the
    # end of their delays (up to a couple of minutes by then).
    assert counts(ended, "cloud.reachable")["cloud.reachable"] == 1
    assert counts(ended, "operations.retried_now")["operations.retried_now"] >= 1
    unready = [body for _, status, body in outage.readyz if status == 503]
    assert unready, outage.readyz
    assert all("cloud" in body["problems"] for body in unready), unready
    assert outage.readyz[-1][1] == 503, outage.readyz[-1]  # 30 s > three checks
    assert ready_body["problems"] == {}
    # The outage failed no operation: no breaker opened (docs/guards.md).
    assert not [b for b in _rows(breakers(conf, env)) if b.get("state") != "closed"]


def test_a_resize_and_a_rescue_whose_deadlines_pass_without_novas_api_end_timed_out(
    novabox: NovaBox,
    nova_api: NovaApi,
    server: Server,
    failed_boot: Server,
    large: Flavor,
    small: Flavor,
    tmp_path: Path,
) -> None:
    deadline_s = 20
    conf, env, daemon = running_daemon(tmp_path, novabox, f"{deadline_s}s")
    try:
        with novabox.notifications() as log:
            resizing = send(
                conf, env, "quota.request.approved", server, "--flavor", large.name, timeout=180
            )
            until(lambda: resizing.entered("wait_verify"), 90, "the resize asked of Nova")
            (started,) = daemon.logged("operation.started")
            before = list(daemon.lines)
            with nova_api_down(nova_api) as outage:
                rescuing = send(conf, env, "server.rescue.requested", failed_boot, timeout=180)
                log.wait_for_event("instance.resize_finish.end", server.id, timeout=OUTAGE_S)
                reached_verify_s = time.monotonic() - outage.stopped_at
                # Down until both operations end (both deadlines pass during the outage,
                # the rescue's a few seconds after the resize's), at most OUTAGE_S: what
                # they do past their deadlines is what is looked at.
                hold_outage(
                    outage, daemon, OUTAGE_S, lambda: len(daemon.logged("operation.finished")) >= 2
                )
                time.sleep(1.0)  # a moment more without the API: nothing else may happen
                during = list(daemon.lines)
                finished_during = list(daemon.logged("operation.finished"))
            code, answer = resizing.answer(timeout=180)
            rescue_code, rescued = rescuing.answer(timeout=180)
        after_s = time.monotonic() - outage.started_at
        ended = list(daemon.lines)
        crashed = [line.get("exception", "").strip().splitlines()[-1:] for line in
                   daemon.logged("operation.crashed")]  # fmt: skip
    finally:
        stop_daemon(daemon)

    current = novabox.conn.compute.get_server(server.id)
    (resize,) = history(conf, env, "--server", server.id)
    (rescue,) = history(conf, env, "--server", failed_boot.id)
    left = novabox.conn.compute.get_server(failed_boot.id)
    nova_actions = [a.action for a in novabox.conn.compute.server_actions(failed_boot)]
    retries = {
        op["action"]: [
            line.get("delay_s")
            for line in ended
            if line.get("event") == "operation.retry" and line.get("operation_id") == op["id"]
        ]
        for op in (resize, rescue)
    }
    print(
        f"\ndeadline {deadline_s} s (resize started {started.get('timestamp')}); nova-api "
        f"down {outage.started_at - outage.stopped_at:.1f} s; VERIFY_RESIZE reached "
        f"{reached_verify_s:.1f} s into it\n"
        f"answers {after_s:.1f} s after nova-api came back: resize {answer.get('outcome')} "
        f"({answer.get('reason')}); rescue {rescued.get('outcome')} ({rescued.get('reason')})\n"
        f"finished during the outage: "
        f"{[(line['action'], line['outcome'], line['timestamp']) for line in finished_during]}\n"
        f"daemon log before/during/at the end: {counts(before, *DAEMON_EVENTS)} / "
        f"{counts(during, *DAEMON_EVENTS)} / {counts(ended, *DAEMON_EVENTS)}\n"
        f"retry delays per operation: {retries}\n"
        f"steps: resize {len(steps(resize))}, of which "
        f"{steps(resize).count('wait_verify.retry')} wait_verify.retry, the others: "
        f"{[n for n in steps(resize) if n != 'wait_verify.retry']}; rescue {steps(rescue)}\n"
        f"Nova is left with: {current.status} task={current.task_state} "
        f"flavor={current.flavor.name}; the rescue's server {left.status}, its actions "
        f"{nova_actions}; operation.crashed: {crashed}"
    )
    # What holds: one operation each, each ended, and one failure in each of two policies
    # opens no breaker (3 of a policy's open its own, 5 of all the global one).
    assert (resize["id"], resize["outcome"]) == (answer["operation_id"], answer["outcome"])
    assert (rescue["id"], rescue["outcome"]) == (rescued["operation_id"], rescued["outcome"])
    assert steps(resize).count("resize_requested") == 1, steps(resize)
    assert not [b for b in _rows(breakers(conf, env)) if b.get("state") != "closed"]
    # What docs/runbook.md promises: retries with backoff until the deadline, then
    # timed_out, while Nova is still unreachable.
    for op in (resize, rescue):
        retried = counts(during, "operation.retry", operation=op["id"])["operation.retry"]
        assert retried <= 10, f"{op['action']}: {retried} retries while the API was away"
    outcomes = {line["action"]: line["outcome"] for line in finished_during}
    assert outcomes == {"resize": "timed_out", "rescue": "timed_out"}, finished_during
    assert (code, answer["outcome"]) == (1, "timed_out"), answer
    # The rescue never reached Nova: its reason says where it stood and why.
    assert (rescue_code, rescued["outcome"]) == (1, "timed_out"), rescued
    assert rescued["reason"].startswith("check: past the deadline, ConnectFailure"), rescued
    assert "rescue_requested" not in steps(rescue), steps(rescue)
    assert "rescue" not in nova_actions, nova_actions
    assert left.status == "ERROR"


def _rows(listing: Any) -> list[dict[str, Any]]:
    """The rows of a `--json` listing (a list of records, or a document holding one)."""
    if isinstance(listing, dict):
        listing = next((v for v in listing.values() if isinstance(v, list)), [])
    return [row for row in listing if isinstance(row, dict)]
