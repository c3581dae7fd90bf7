"""The disk under the journal fills up, and space comes back, under a running daemon (a
row of the fault matrix "Faults survived, measured").

The daemon's state directory, and so its SQLite journal, lives on a small filesystem
of the test's own (tests/integration/small_filesystem.py: a tmpfs), never on a disk
anything else uses, and the real ``nova-autopilot run`` process works on it. In the
middle of a stream of Nova notifications and signed operator requests, each matched by
a ``mode: dry-run`` policy, a filler file takes every free byte of that filesystem and
keeps it so for a few seconds (until a notification failed for the third time), then
is deleted. What is checked:

* once a write finds no room (at once, or when the journal's WAL has used the room it
  had), the daemon records nothing more and so acknowledges nothing more: the
  decisions the full disk stopped go through the delay queues, none is dead-lettered;
  it stays up (the same process, /healthz 200), says it is not ready because the
  journal's disk is full (/readyz 503 naming the journal), and its log says so
  (``engine.batch_undecided``, ``intake.retry_scheduled``, the disk named full);
* once space is back, by itself: every message is decided exactly once (one operation
  and one processed key each in the journal), the pool, request, delay and dead-letter
  queues are empty, and /readyz answers 200 again.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from nova_autopilot.journal import default_url
from nova_autopilot.sandbox import Sandbox
from tests.integration import bus_support
from tests.integration import small_filesystem as small_filesystem_module
from tests.integration.conftest import daemon_world_on
from tests.integration.daemon_support import Running, endpoints, get, start_daemon, stop_daemon
from tests.integration.journal_stream import (
    DRY_RUN_POLICIES,
    REQUESTS,
    RETRY_DELAYS,
    Stream,
    Watch,
    decided,
    each_decided_once,
    errors_logged,
    nothing_acknowledged_undecided,
    past_first_prune,
    report,
    retries,
)
from tests.integration.small_filesystem import SmallFilesystem
from tests.waiting import until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

rabbit = bus_support.rabbit
small_filesystem = small_filesystem_module.small_filesystem

#: What the journal's errors say of a full disk (nova_autopilot.journal.database).
DISK_FULL = "disk is full"


@dataclass
class World:
    sandbox: Sandbox
    conf: Path
    env: dict[str, str]
    journal_url: str
    disk: SmallFilesystem


@pytest.fixture
def world(
    rabbit: bus_support.Rabbit, tmp_path: Path, small_filesystem: SmallFilesystem
) -> Iterator[World]:
    """``daemon_world``, its state directory (the journal's SQLite file) on the small
    filesystem, retries after RETRY_DELAYS."""
    state_dir = small_filesystem.path / "state"
    extra = f"[notifications]\nretry_delays = {', '.join(map(str, RETRY_DELAYS))}\n"
    sandbox = Sandbox(transport_url=rabbit.transport_url).start()
    with daemon_world_on(rabbit, tmp_path, sandbox, extra) as (_, conf, env):
        text = conf.read_text()
        default_state = f"state_dir = {tmp_path / 'state'}\n"
        assert default_state in text, text
        conf.write_text(text.replace(default_state, f"state_dir = {state_dir}\n"))
        yield World(sandbox, conf, env, default_url(state_dir), small_filesystem)


def undecided_errors(daemon: Running) -> list[str]:
    """What the engine said each time a batch's journal write failed."""
    return [str(line.get("error")) for line in daemon.logged("engine.batch_undecided")]


def first_failure_s(daemon: Running, since: datetime) -> float | None:
    """Seconds from ``since`` to the first failed journal write the engine logged."""
    lines = daemon.logged("engine.batch_undecided")
    if not lines:
        return None
    first = datetime.fromisoformat(lines[0]["timestamp"].replace("Z", "+00:00"))
    return round((first - since).total_seconds(), 2)


def ready_after(watch: Watch, moment: float) -> float | None:
    """Seconds from ``moment`` to the first /readyz 200 after it."""
    ready = [at for at, _, status, _ in list(watch.seen) if at > moment and status == 200]
    return round(ready[0] - moment, 2) if ready else None


def test_a_stream_is_decided_exactly_once_across_a_full_journal_disk(
    world: World, rabbit: bus_support.Rabbit
) -> None:
    (world.conf.parent / "policies.yaml").write_text(DRY_RUN_POLICIES)
    servers = [world.sandbox.add_server(f"app-{i}", "m1.small").id for i in range(REQUESTS)]
    daemon = start_daemon(world.conf, world.env)
    pid = daemon.process.pid
    watch = Watch(endpoints(daemon))
    stream = Stream(rabbit, world.conf, servers)
    try:
        stream.start()
        # Decisions flow, and the daemon's first prune is behind it: the stream is in
        # full swing when the disk fills up.
        until(lambda: decided(world.journal_url) >= 100, 30, "the first decisions")
        past_first_prune(daemon)
        filler = world.disk.fill()
        full_at, filled_at = time.monotonic(), datetime.now(timezone.utc)
        published_at_fill = stream.published()
        decided_at_fill = decided(world.journal_url)
        # The daemon meets the full disk (at once, or once its journal's WAL has used
        # the room it had) and says so on /readyz; from then on it decides nothing.
        until(watch.journal_problems, 30, "/readyz naming the journal")
        refused_at = time.monotonic()
        decided_when_refused = decided(world.journal_url)
        # The disk stays full until a notification failed for the third time (its first
        # two retries came back from the delay queues and failed again: 1 + 2 s at
        # least) and a request was retried.
        until(lambda: retries(daemon, "nova", attempt=3), 60, "a third failed attempt")
        until(lambda: retries(daemon, "request"), 30, "a request retried")
        held = decided(world.journal_url)
        queued_while_full = sum(rabbit.queues().values())
        world.disk.free()
        freed_at = time.monotonic()
        published_at_free = stream.published()
        # Every message published before the space came back is decided, while the
        # stream goes on.
        until(lambda: decided(world.journal_url) >= published_at_free, 60, "the backlog")
        backlog_s = time.monotonic() - freed_at
        until(lambda: watch.ready_since(freed_at), 30, "ready again")
        keys = stream.stop()
        until(lambda: decided(world.journal_url) >= len(keys), 60, "every decision")
        until(lambda: not any(rabbit.queues().values()), 30, "every queue empty")
        queues = rabbit.queues()
        _, status = get(f"{endpoints(daemon)}/status")
        used_at_end = world.disk.size_mib * 2**20 - world.disk.available()
    finally:
        stream.halt()
        watch.stop()
        world.disk.free()
        if daemon.process.poll() is None:
            stop_daemon(daemon)

    each_decided_once(world.journal_url, keys)
    # The disk filled up in the middle of the stream, and stopped decisions of both
    # kinds; what waited meanwhile waited in the broker's queues.
    assert 100 <= published_at_fill < published_at_free < len(keys)
    assert held == decided_when_refused < published_at_free, (decided_when_refused, held)
    assert queued_while_full > 0
    assert retries(daemon, "nova")
    assert retries(daemon, "request")
    # The log and /readyz said why: the journal's disk is full.
    undecided, retried = undecided_errors(daemon), retries(daemon, "nova")
    assert any(DISK_FULL in error for error in undecided), undecided[:3]
    assert all(DISK_FULL in line["error"] for line in retried), retried[:3]
    assert any(DISK_FULL in problem for problem in watch.journal_problems())
    nothing_acknowledged_undecided(daemon, queues, status)
    # The daemon never stopped (one process, healthy all along), needed no restart.
    assert daemon.process.pid == pid
    assert {health for _, health, _, _ in watch.seen} == {200}, watch.seen[-5:]
    assert not errors_logged(daemon)
    extra: dict[str, Any] = {
        "messages published": len(keys),
        "filler (bytes)": filler,
        "decided when the disk filled": decided_at_fill,
        "first batch_undecided after (s)": first_failure_s(daemon, filled_at),
        "decided when /readyz named the journal": decided_when_refused,
        "decided when space came back": held,
        "held full after /readyz named the journal (s)": round(freed_at - refused_at, 1),
        "ready again after (s)": ready_after(watch, freed_at),
        "backlog decided after (s)": round(backlog_s, 1),
        "used on the filesystem at the end (bytes)": used_at_end,
        "in the queues while full": queued_while_full,
        "/status counters.messages": status["counters"]["messages"],
    }
    report(daemon, watch, freed_at - full_at, extra)
