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

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from nova_autopilot.journal import Journal
from nova_autopilot.sandbox import Sandbox
from nova_autopilot.sandbox.clock import JumpClock
from nova_autopilot.sandbox.faults import ServerFaults
from tests.integration import bus_support
from tests.integration import private_postgres as pg_support
from tests.integration.conftest import daemon_world_on
from tests.integration.daemon_support import (
    endpoints,
    get,
    send,
    start_daemon,
    stop_daemon,
)
from tests.integration.journal_stream import (
    DRY_RUN_POLICIES,
    FIRST_PRUNE_S,
    REQUESTS,
    RETRY_DELAYS,
    Stream,
    Watch,
    decided,
    each_decided_once,
    errors_logged,
    nothing_acknowledged_undecided,
    past_first_prune,
    publish_request,
    quota_request,
    report,
    retries,
    uptime,
)
from tests.integration.private_postgres import PrivatePostgres
from tests.waiting import until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

rabbit = bus_support.rabbit
private_postgres_cluster = pg_support.private_postgres_cluster
private_postgres = pg_support.private_postgres

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
