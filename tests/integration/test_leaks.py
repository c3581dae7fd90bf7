"""No leak under a steady stream: nothing kept per message.

Two views of the same question:

* ``nova-autopilot run``, its own process on the real RabbitMQ and the sandbox Nova,
  under the soak's mixed stream (``bench/soak.py``: notifications that match a dry-run
  policy and that match nothing, resize requests, most refused): once warm, its
  threads and open files stay as they are, every message is decided and the queues
  end empty. Its resident memory is reported, not judged here: SQLite's page cache
  and the allocator's arenas fill for minutes (the 30-minute soak's figures are in
  docs/reliability.md).
* the same daemon in this process (``Daemon.from_conf``) deciding the same mix, with
  Python's own allocator traced (``tracemalloc``): once its bounded stores are full
  (the latest notifications the runner keeps, the caches), a second run of as many
  messages as the first leaves at most a few bytes a message behind.
"""

from __future__ import annotations

import contextlib
import gc
import io
import json
import os
import tempfile
import tracemalloc
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from bench import broker
from bench.decisions import _configure
from bench.soak import MIX, POLICIES, SERVERS, _notification, _request, soak
from nova_autopilot import logs, settings
from nova_autopilot.actions import runner as runner_module
from nova_autopilot.bus import Delivery
from nova_autopilot.bus.connection import register_oslo_options
from nova_autopilot.daemon.wiring import Daemon
from nova_autopilot.events import Event, parse_message
from nova_autopilot.sandbox import Sandbox
from tests.integration.stack import add_flavors
from tests.logging_support import logging_restored
from tests.waiting import until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: Python memory a message may leave behind once the daemon is warm, in bytes. Runs
#: measure within 100 KB of nothing either way for 2,000 messages (what the bounded
#: stores hold drifts a little); anything a message would keep (its event is 5 KB,
#: its operation 2 KB, its job or its result a few hundred bytes) is far above.
BYTES_A_MESSAGE = 128


def test_the_daemons_threads_and_open_files_stay_as_they_are_under_a_steady_stream() -> None:
    result = soak(duration_s=16, rate=150, interval_s=2, warmup_s=6)

    assert result["decided"] == result["expected"], result["outcomes"]
    assert result["left"] == 0
    assert {"dry_run", "refused", "confirmed"} <= set(result["outcomes"]), result["outcomes"]
    warm, last = result["warm"], result["last"]
    assert last["threads"] <= warm["threads"], result["samples"]
    assert last["fds"] <= warm["fds"] + 2, result["samples"]  # a journal connection more
    print(  # the report of the run (pytest -s, or -rA)
        f"RSS {warm['rss_kib'] / 1024:.0f} MiB once warm, {last['rss_kib'] / 1024:.0f} MiB "
        f"at the end; threads {warm['threads']}, open files {warm['fds']} -> {last['fds']}"
    )


#: The latest notifications the runner keeps, in this test (4,096 in the daemon): a
#: smaller store fills sooner, and what is measured is what it does not bound.
KEPT = 512


@pytest.fixture
def daemon(monkeypatch: pytest.MonkeyPatch) -> Iterator[Daemon]:
    """The daemon of the soak's configuration, in this process, not consuming: the
    test hands it the messages as its bus would."""
    monkeypatch.setattr(runner_module, "LATEST_EVENTS", KEPT)
    with (
        contextlib.ExitStack() as stack,
        broker.vhost("leaks") as vhost,
        tempfile.TemporaryDirectory() as tmp_dir,
    ):
        tmp = Path(tmp_dir)
        sandbox = Sandbox(transport_url=broker.transport_url(vhost)).start()
        add_flavors(sandbox)
        servers = [sandbox.add_server(f"leak-{n}", "m1.small").id for n in range(SERVERS)]
        path = _configure(tmp, vhost, f"sqlite:///{tmp / 'j.sqlite'}", sandbox.url,
                          policies=POLICIES)  # fmt: skip
        previous = os.environ.get("OS_CLIENT_CONFIG_FILE")
        os.environ["OS_CLIENT_CONFIG_FILE"] = str(tmp / "clouds.yaml")
        conf = settings.load(config_files=[str(path)])
        register_oslo_options(conf)
        stack.enter_context(logging_restored())
        logs.configure(level="WARNING", fmt="json", stream=io.StringIO())  # as it would run
        made = Daemon.from_conf(conf)
        made.runner.start()
        made.servers = servers  # type: ignore[attr-defined]
        try:
            yield made
        finally:
            made.stop(timeout=10)
            sandbox.stop()
            if previous is None:
                os.environ.pop("OS_CLIENT_CONFIG_FILE", None)
            else:
                os.environ["OS_CLIENT_CONFIG_FILE"] = previous


def _delivery(source: str) -> Delivery:
    return Delivery(
        source=source,  # type: ignore[arg-type]
        queue="q",
        message_id=str(uuid.uuid4()),
        redelivered=False,
        attempt=1,
        correlation_id=None,
        reply_to=None,
        headers={},
        received_at=datetime.now(timezone.utc),
    )


def _decide(daemon: Daemon, count: int, first: int, mix: tuple[str, ...] = MIX) -> None:
    """``count`` messages of ``mix`` (the soak's), as the bus hands them over: the
    notifications in batches, each request on its own."""
    servers: list[str] = daemon.servers  # type: ignore[attr-defined]
    batch: list[tuple[Event, Delivery]] = []
    for n in range(first, first + count):
        kind = mix[n % len(mix)]
        if kind == "request":
            body = json.loads(_request(servers[n % len(servers)], "m1.large"))
            daemon.handle(parse_message(body, expect="request"), _delivery("request"))
            continue
        wire = _notification(*(("error", "active") if kind == "match" else ("active", "active")))
        batch.append((parse_message(wire, expect="nova"), _delivery("nova")))
        if len(batch) == 200:
            assert daemon.handle_many(batch) == [None] * len(batch)
            batch = []
    if batch:
        assert daemon.handle_many(batch) == [None] * len(batch)


def _settled(daemon: Daemon) -> tracemalloc.Snapshot:
    """What is allocated once the results are with the broker and the resizes ended."""
    assert daemon.bus.results.flush(30)
    until(lambda: daemon.runner.in_flight() == 0, 30, "the resizes to end")
    gc.collect()
    return tracemalloc.take_snapshot()


def test_the_mix_decided_once_the_daemon_is_warm_leaves_nothing_behind(daemon: Daemon) -> None:
    """Traced from before the runner's store of the latest notifications is filled
    (so that what it holds is traced in both snapshots), then 2,000 messages of the
    mix: what is still allocated after them, and was not before, is what they left."""
    assert daemon.runner._latest.maxlen == KEPT
    _decide(daemon, 1_000, 0)  # every path taken once, its caches and connections made
    tracemalloc.start(1)
    try:
        _decide(daemon, KEPT + 500, 1_000)  # what they hold: the same mix
        before = _settled(daemon)
        measured = 2_000
        _decide(daemon, measured, 10_000)
        after = _settled(daemon)
    finally:
        tracemalloc.stop()

    ignored = [tracemalloc.Filter(False, tracemalloc.__file__)]
    growth = after.filter_traces(ignored).compare_to(before.filter_traces(ignored), "lineno")
    total = sum(stat.size_diff for stat in growth)
    top = "\n".join(f"{stat.size_diff:+,} B in {stat.count_diff:+,} blocks at {stat.traceback}"
                    for stat in growth[:8])  # fmt: skip
    print(f"{total:+,} B for {measured:,} messages; the largest:\n{top}")
    assert total <= BYTES_A_MESSAGE * measured, f"{total:+,} B for {measured:,} messages:\n{top}"
