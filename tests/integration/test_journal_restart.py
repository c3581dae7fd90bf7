"""The journal's PostgreSQL crashes and comes back under a running daemon (a row of the
fault matrix "Faults survived, measured").

The journal lives on a private PostgreSQL cluster (tests/integration/private_postgres.py),
never on the machine's shared one, and the real ``nova-autopilot run`` process works on
it. Its server is killed (``pg_ctl stop -m immediate``: what a crash or a power cut
does) and started again (crash recovery):

* in the middle of a stream of Nova notifications and signed operator requests, each
  matched by a ``mode: dry-run`` policy: the decisions the outage stopped are retried
  through the delay queues and, once the database is back, every message is decided
  exactly once (one operation and one processed key each in the journal), the pool,
  request, delay and dead-letter queues are empty, and the daemon never stopped: it
  says it is not ready while the journal takes no write (/readyz), and ready again
  after, by itself;
* while a resize waits for Nova's slow disk move: the resize ends confirmed, once in
  the journal, and Nova got one resize and one confirm.

And two cases the daemon once did not survive:

* the journal out of reach when the main loop prunes it (its first turn, a second
  after the start, then hourly): the prune is tried again a minute later, and the
  daemon goes on (it used to let the JournalError out of run() and exit);
* the journal out of reach when a parked resize wakes (its disk move ended): the
  phase runs again once the journal takes writes, and the resize is confirmed (the
  write of its step used to "crash" the operation, which then stayed in flight until
  the daemon was restarted).
"""

from __future__ import annotations

import itertools
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from kombu import Connection, Exchange, Producer

from nova_autopilot import settings
from nova_autopilot.bus import RequestClient
from nova_autopilot.journal import Journal, Operation
from nova_autopilot.sandbox import Sandbox
from nova_autopilot.sandbox.clock import JumpClock
from nova_autopilot.sandbox.faults import ServerFaults
from nova_autopilot.security import signing
from tests.integration import bus_support
from tests.integration import private_postgres as pg_support
from tests.integration.conftest import daemon_world_on
from tests.integration.daemon_support import (
    POLICIES,
    Running,
    endpoints,
    get,
    send,
    start_daemon,
    stop_daemon,
)
from tests.integration.private_postgres import PrivatePostgres
from tests.samples import on_the_wire, sample
from tests.waiting import until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

rabbit = bus_support.rabbit
private_postgres_cluster = pg_support.private_postgres_cluster
private_postgres = pg_support.private_postgres

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
KEY_ID, SECRET = "test-key", "s3cr3t-" * 4  # daemon_world's signing key
#: Both policies of daemon_world, deciding and recording without acting on Nova.
DRY_RUN_POLICIES = re.sub(r"(  - name: [^\n]+\n)", r"\1    mode: dry-run\n", POLICIES)
#: Short delays, so that what the outage stopped comes back within the test's time;
#: together (19 s) far longer than the outage, which lasts until a message failed
#: for the third time (1 + 2 s at least).
RETRY_DELAYS = (1, 2, 3, 5, 8)
#: The stream: PER_ROUND notifications a round, a round every ROUND_S, and a request
#: every REQUEST_EVERY rounds for each of REQUESTS servers (as long as the test needs).
PER_ROUND = 10
ROUND_S = 0.05
REQUEST_EVERY = 4
REQUESTS = 80
#: The daemon's uptime by which its main loop has pruned the journal once: its first
#: turn comes a second (the loop's tick) after the start.
FIRST_PRUNE_S = 3.0
#: The main loop's first turn (and prune) comes no sooner than this after the start.
FIRST_TURN = timedelta(seconds=0.9)
#: How long the slow resize's disk move (``resize_migrate``) takes, in the sandbox's time.
SLOW_S = 20.0


# -- the world --------------------------------------------------------------------------


@dataclass
class World:
    sandbox: Sandbox
    conf: Path
    env: dict[str, str]
    journal_url: str
    postgres: PrivatePostgres


@pytest.fixture
def clock() -> JumpClock:
    return JumpClock()


@pytest.fixture
def world(
    rabbit: bus_support.Rabbit,
    tmp_path: Path,
    clock: JumpClock,
    private_postgres: PrivatePostgres,
) -> Iterator[World]:
    """``daemon_world`` on a JumpClock, its journal on a database of the private cluster,
    retries after RETRY_DELAYS."""
    name = f"journal_{uuid.uuid4().hex[:8]}"
    url = private_postgres.create_database(name)
    extra = (
        f"[journal]\nconnection = {url}\n"
        f"[notifications]\nretry_delays = {', '.join(map(str, RETRY_DELAYS))}\n"
    )
    sandbox = Sandbox(transport_url=rabbit.transport_url, clock=clock).start()
    try:
        with daemon_world_on(rabbit, tmp_path, sandbox, extra) as (_, conf, env):
            yield World(sandbox, conf, env, url, private_postgres)
    finally:
        private_postgres.ensure_started()  # a test that failed may have left it down
        private_postgres.drop_database(name)


def uptime(daemon: Running) -> float:
    """The daemon's uptime as /status says it (0 when it does not answer)."""
    _, status = get(f"{endpoints(daemon)}/status")
    return float(status.get("daemon", {}).get("uptime_s") or 0)


def past_first_prune(daemon: Running) -> None:
    """Wait until the daemon's main loop has pruned the journal once: an outage at a
    prune is a case of its own (below), not what the other tests measure."""
    until(lambda: uptime(daemon) >= FIRST_PRUNE_S, 30, "the daemon's first prune")


@dataclass
class Watch:
    """What /healthz and /readyz said, every 100 ms, while the test ran."""

    base: str
    seen: list[tuple[float, int, int, dict[str, Any]]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._run, name="watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            health, _ = get(f"{self.base}/healthz")
            ready, body = get(f"{self.base}/readyz")
            self.seen.append((time.monotonic(), health, ready, body.get("problems", {})))
            self._stop.wait(0.1)

    def journal_problems(self) -> list[str]:
        return [str(problems["journal"]) for _, _, _, problems in list(self.seen)
                if "journal" in problems]  # fmt: skip

    def ready_since(self, moment: float) -> bool:
        return any(at > moment and ready == 200 for at, _, ready, _ in list(self.seen))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=15)


def retries(daemon: Running, source: str, *, attempt: int = 1) -> list[dict[str, Any]]:
    """The daemon's retries of ``source``'s messages, of the given attempt or later."""
    return [line for line in daemon.logged("intake.retry_scheduled")
            if line.get("source") == source and int(line.get("attempt", 0)) >= attempt]  # fmt: skip


def decided(url: str) -> int:
    """How many operations the journal holds."""
    with Journal.open(url, migrate_schema=False) as journal:
        return journal.count(since=EPOCH)


def operations(url: str, limit: int) -> list[Operation]:
    with Journal.open(url, migrate_schema=False) as journal:
        return journal.history(limit=limit)


def each_decided_once(url: str, keys: list[str]) -> None:
    """Every message decided exactly once: one operation, one processed key, each a
    dry run."""
    ops = operations(url, limit=len(keys) + 100)
    by_key = Counter(op.message_key for op in ops)
    assert len(ops) == len(keys), (len(ops), len(keys))
    assert set(by_key) == set(keys)
    assert max(by_key.values()) == 1, by_key.most_common(3)
    assert {op.outcome for op in ops} == {"dry_run"}, Counter(op.outcome for op in ops)
    with Journal.open(url, migrate_schema=False) as journal:
        assert set(journal.processed(keys)) == set(keys)


def nothing_acknowledged_undecided(
    daemon: Running, queues: dict[str, int], status: dict[str, Any]
) -> None:
    """Nothing dead-lettered, nothing left in any queue (pool, requests, delays, dead
    letters), every message received either handled or retried (``status``: the
    daemon's /status at the end)."""
    assert "nova-autopilot.notifications.dead" in queues, queues
    assert "nova-autopilot.requests.dead" in queues, queues
    assert set(queues.values()) == {0}, queues
    assert not daemon.logged("intake.dead_lettered")
    messages = status["counters"]["messages"]
    for counts in messages.values():
        assert not counts["dead_lettered"], messages
        assert not counts["abandoned"], messages
        assert counts["received"] == counts["handled"] + counts["retried"], messages


def errors_logged(daemon: Running) -> list[tuple[str, str]]:
    """The daemon's error lines: each event with its error, or the end of its traceback."""
    return [
        (line["event"], str(line.get("error") or line.get("exception", ""))[-600:])
        for line in daemon.lines
        if line.get("level") in ("error", "critical")
    ]


def report(
    daemon: Running, watch: Watch, outage_s: float, extra: dict[str, Any] | None = None
) -> None:
    """What the daemon said about the outage (``pytest -s`` shows it)."""
    levels = Counter(
        f"{line.get('level')} {line.get('event')}"
        for line in daemon.lines
        if line.get("level") in ("warning", "error", "critical")
    )
    problems = watch.journal_problems()
    print(f"\noutage {outage_s:.1f} s; warnings and errors logged: {dict(levels)}")
    print(f"/readyz named the journal {len(problems)} times: {problems[:1]}")
    for name, value in (extra or {}).items():
        print(f"{name}: {value}")


# -- the stream -------------------------------------------------------------------------


def notification(server_id: str) -> tuple[str, bytes]:
    """A launched server entering ERROR, as Nova puts it on the wire; its message id."""
    notice = sample("instance-update")
    data = notice["payload"]["nova_object.data"]
    data["state_update"]["nova_object.data"].update(old_state="active", state="error")
    data["launched_at"] = "2026-11-25T09:00:00Z"
    data["uuid"] = server_id
    message_id = str(uuid.uuid4())
    notice["message_id"] = message_id
    return message_id, on_the_wire(notice)


def quota_request(server_id: str, request_id: str) -> dict[str, Any]:
    return {"version": 1, "type": "quota.request.approved", "id": request_id,
            "timestamp": datetime.now(timezone.utc).isoformat(),
            "server": {"id": server_id}, "flavor": "m1.large", "requested_by": "test"}  # fmt: skip


def publish_request(conf: Path, body: dict[str, Any]) -> None:
    """A signed request, without waiting for its answer."""
    with RequestClient.from_conf(settings.load(config_files=[str(conf)])) as client:
        client.publish_request(body, headers=signing.sign(body, KEY_ID, SECRET))


class Stream:
    """Publishes, in rounds until stopped, PER_ROUND notifications (each about a server of
    its own) and, every REQUEST_EVERY rounds, a signed request (while any of ``servers``
    is left: one each); confirmed by the broker. ``keys`` are the message keys the
    engine de-duplicates them by."""

    def __init__(self, rabbit: bus_support.Rabbit, conf: Path, servers: list[str]) -> None:
        self._rabbit = rabbit
        self._conf = conf
        self._servers = list(servers)
        self._lock = threading.Lock()
        self._keys: list[str] = []
        self._stop = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="stream", daemon=True)

    def start(self) -> Stream:
        self._thread.start()
        return self

    def published(self) -> int:
        with self._lock:
            return len(self._keys)

    def halt(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def stop(self) -> list[str]:
        """Stop publishing; every key published."""
        self.halt()
        assert not self._thread.is_alive(), "the stream did not stop"
        if self.error is not None:
            raise AssertionError(f"the stream failed: {self.error!r}") from self.error
        with self._lock:
            return list(self._keys)

    def _run(self) -> None:
        try:
            client = RequestClient.from_conf(settings.load(config_files=[str(self._conf)]))
            confirmed = {"confirm_publish": True}
            with client, Connection(self._rabbit.amqp_url, transport_options=confirmed) as conn:
                producer = Producer(conn.default_channel)
                nova = Exchange("nova", type="topic", durable=False, no_declare=True)
                for round_ in itertools.count():
                    if self._stop.is_set():
                        return
                    for _ in range(PER_ROUND):
                        message_id, body = notification(str(uuid.uuid4()))
                        producer.publish(
                            body,
                            exchange=nova,
                            routing_key="versioned_notifications.info",
                            content_type="application/json",
                            content_encoding="utf-8",
                        )
                        with self._lock:
                            self._keys.append(f"nova:{message_id}")
                    if self._servers and round_ % REQUEST_EVERY == 0:
                        request_id = f"quota-{uuid.uuid4().hex[:12]}"
                        request = quota_request(self._servers.pop(), request_id)
                        client.publish_request(
                            request, headers=signing.sign(request, KEY_ID, SECRET)
                        )
                        with self._lock:
                            self._keys.append(f"request:{request_id}")
                    self._stop.wait(ROUND_S)
        except BaseException as exc:  # noqa: BLE001 - reported by stop()
            self.error = exc


# -- the tests --------------------------------------------------------------------------


def test_a_stream_is_decided_exactly_once_across_a_journal_crash(
    world: World, rabbit: bus_support.Rabbit
) -> None:
    (world.conf.parent / "policies.yaml").write_text(DRY_RUN_POLICIES)
    servers = [world.sandbox.add_server(f"app-{i}", "m1.small").id for i in range(REQUESTS)]
    daemon = start_daemon(world.conf, world.env)
    pid = daemon.process.pid
    watch = Watch(endpoints(daemon))
    stream = Stream(rabbit, world.conf, servers)
    try:
        past_first_prune(daemon)
        stream.start()
        # Decisions flow: the stream is in full swing when the journal's server dies.
        until(lambda: decided(world.journal_url) >= 100, 30, "the first decisions")
        world.postgres.stop(mode="immediate")
        down_at = time.monotonic()
        published_at_crash = stream.published()
        # The outage lasts until a notification failed for the third time (its first two
        # retries came back from the delay queues and failed again: 1 + 2 s at least), a
        # request was retried, and /readyz said why the daemon is not ready.
        until(lambda: retries(daemon, "nova", attempt=3), 60, "a third failed attempt")
        until(lambda: retries(daemon, "request"), 30, "a request retried")
        until(watch.journal_problems, 30, "/readyz naming the journal")
        world.postgres.start()
        up_at = time.monotonic()
        published_at_restart = stream.published()
        # Every message published before the restart is decided, while the stream goes on.
        until(lambda: decided(world.journal_url) >= published_at_restart, 60, "the backlog")
        until(lambda: watch.ready_since(up_at), 30, "ready again")
        keys = stream.stop()
        until(lambda: decided(world.journal_url) >= len(keys), 60, "every decision")
        until(lambda: not any(rabbit.queues().values()), 30, "every queue empty")
        queues = rabbit.queues()
        _, status = get(f"{endpoints(daemon)}/status")
    finally:
        stream.halt()
        watch.stop()
        world.postgres.ensure_started()
        stop_daemon(daemon)

    each_decided_once(world.journal_url, keys)
    # The outage was in the middle of the stream, and stopped decisions of both kinds.
    assert 100 <= published_at_crash < published_at_restart < len(keys)
    assert retries(daemon, "nova")
    assert retries(daemon, "request")
    nothing_acknowledged_undecided(daemon, queues, status)
    # The daemon never stopped (one process, healthy all along), needed no restart.
    assert daemon.process.pid == pid
    assert {health for _, health, _, _ in watch.seen} == {200}, watch.seen[-5:]
    assert not errors_logged(daemon)
    report(
        daemon,
        watch,
        up_at - down_at,
        {"/status counters.messages": status["counters"]["messages"]},
    )


def test_a_resize_waiting_for_nova_survives_a_journal_restart(
    world: World, clock: JumpClock
) -> None:
    slow = world.sandbox.add_server("slow-1", "m1.small")
    world.sandbox.faults.add_server(slow.id, ServerFaults(delays={"resize_migrate": SLOW_S}))
    daemon = start_daemon(world.conf, world.env)
    pid = daemon.process.pid
    watch = Watch(endpoints(daemon))
    sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="slow-send")
    jumped = False
    try:
        past_first_prune(daemon)
        now = datetime.now(timezone.utc).isoformat()
        slow_send = sender.submit(
            send, world.conf, world.env, "--type", "quota.request.approved",
            "--server", slow.id, "--flavor", "m1.large", "--timestamp", now, "--id", "slow-1",
        )  # fmt: skip
        with Journal.open(world.journal_url, migrate_schema=False) as journal:
            waiting = until(
                lambda: [op for op in journal.unfinished() if op.phase == "wait_verify"],
                30,
                "the resize waiting for VERIFY_RESIZE",
            )[0]
        until(
            lambda: world.sandbox.server(slow.id).task_state == "resize_migrating",
            30,
            "the slow disk move under way",
        )

        # The journal's server dies while the resize waits, and comes back.
        world.postgres.stop(mode="immediate")
        down_at = time.monotonic()
        until(watch.journal_problems, 30, "/readyz naming the journal")
        world.postgres.start()
        up_at = time.monotonic()
        until(lambda: watch.ready_since(up_at), 30, "ready again")
        assert world.sandbox.server(slow.id).task_state == "resize_migrating"

        # The disk move ends now, not SLOW_S after it began.
        clock.jump(SLOW_S)
        jumped = True
        code, answer = slow_send.result(timeout=90)  # send's own limit: 60 s to answer
    finally:
        if not jumped:
            clock.jump(SLOW_S)  # so that the send thread ends
        sender.shutdown(wait=True, cancel_futures=True)
        watch.stop()
        world.postgres.ensure_started()
        stop_daemon(daemon)

    assert (code, answer["outcome"]) == (0, "confirmed"), answer
    assert answer["operation_id"] == waiting.id
    with Journal.open(world.journal_url, migrate_schema=False) as journal:
        ops = journal.history(server_id=slow.id)
        steps = [step.name for step in journal.steps(waiting.id)]
    assert [(op.id, op.outcome) for op in ops] == [(waiting.id, "confirmed")]
    assert steps.count("resize_requested") == 1, steps
    assert steps.count("confirm_requested") == 1, steps
    writes = world.sandbox.write_counts()[slow.id]
    writes.pop("os-getConsoleOutput", None)  # the health gate reading the console
    assert writes == {"resize": 1, "confirmResize": 1}
    assert world.sandbox.server(slow.id).flavor.name == "m1.large"
    assert daemon.process.pid == pid
    assert {health for _, health, _, _ in watch.seen} == {200}, watch.seen[-5:]
    assert not errors_logged(daemon)
    report(daemon, watch, up_at - down_at, {"steps": steps})


def test_a_journal_crash_at_the_daemons_first_prune_leaves_it_running(world: World) -> None:
    daemon = start_daemon(world.conf, world.env)
    try:
        # Before the main loop's first turn (a second after the start), which prunes.
        world.postgres.stop(mode="immediate")
        stamp = daemon.logged("daemon.started")[0]["timestamp"].replace("Z", "+00:00")
        if datetime.now(timezone.utc) - datetime.fromisoformat(stamp) >= FIRST_TURN:
            pytest.skip("inconclusive: the journal went down after the daemon's first prune")
        until(
            lambda: daemon.process.poll() is not None or uptime(daemon) >= FIRST_PRUNE_S,
            30,
            "the first prune",
        )
        world.postgres.start()
        exited = daemon.process.poll()
    finally:
        world.postgres.ensure_started()
        if daemon.process.poll() is None:
            stop_daemon(daemon)
    assert exited is None, "".join(daemon.raw[-2:])
    assert daemon.logged("journal.prune_failed")


def test_a_resize_whose_wait_ends_while_the_journal_is_down_is_confirmed(
    world: World, clock: JumpClock
) -> None:
    slow = world.sandbox.add_server("slow-1", "m1.small")
    world.sandbox.faults.add_server(slow.id, ServerFaults(delays={"resize_migrate": SLOW_S}))
    daemon = start_daemon(world.conf, world.env)
    watch = Watch(endpoints(daemon))
    try:
        past_first_prune(daemon)
        publish_request(world.conf, quota_request(slow.id, "slow-1"))
        until(
            lambda: world.sandbox.server(slow.id).task_state == "resize_migrating",
            30,
            "the slow disk move under way",
        )
        world.postgres.stop(mode="immediate")
        until(watch.journal_problems, 30, "/readyz naming the journal")
        # The disk move ends while the journal is away: the resize wakes and must write.
        clock.jump(SLOW_S)
        until(
            lambda: daemon.logged("operation.crashed") or daemon.logged("operation.retry"),
            30,
            "the woken resize meeting the outage",
        )
        world.postgres.start()
        with Journal.open(world.journal_url, migrate_schema=False) as journal:
            until(
                lambda: (
                    daemon.logged("operation.crashed")
                    or journal.history(server_id=slow.id)[0].outcome
                ),
                60,
                "the resize's end",
            )
            ops = journal.history(server_id=slow.id)
    finally:
        watch.stop()
        world.postgres.ensure_started()
        stop_daemon(daemon)
    crashed = daemon.logged("operation.crashed")
    assert not crashed, crashed[0]["exception"].strip().splitlines()[-1]
    assert [op.outcome for op in ops] == ["confirmed"]
    writes = world.sandbox.write_counts()[slow.id]
    writes.pop("os-getConsoleOutput", None)
    assert writes == {"resize": 1, "confirmResize": 1}
