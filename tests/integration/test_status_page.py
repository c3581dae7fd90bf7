"""The status page at / of a real daemon, loaded in headless Chromium during a real
run: a confirmed resize, a refusal, and a slow resize in flight. What the page shows
is what the journal holds: every operation of the last hour with its outcome and its
steps, the one in flight with its phase. Other methods than GET are refused.

The sandbox Nova runs on a :class:`~nova_autopilot.sandbox.clock.JumpClock`: once the
page is checked, its timers jump past the slow resize's disk move, which then ends at
once and the resize is confirmed, instead of the test waiting for it.

With STATUS_PAGE_SCREENSHOT set to a path, the screenshot is also kept there
(docs/status-page.png is made so).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from nova_autopilot.journal import Journal
from nova_autopilot.sandbox import Sandbox
from nova_autopilot.sandbox.clock import JumpClock
from nova_autopilot.sandbox.faults import ServerFaults
from tests.integration import bus_support
from tests.integration.conftest import daemon_world_on
from tests.integration.daemon_support import DaemonWorld, send, start_daemon, stop_daemon
from tests.unavailable import unavailable
from tests.waiting import until

pytestmark = [pytest.mark.integration, pytest.mark.slow]
#: How long the slow resize's disk move (``resize_migrate``) takes, in the sandbox's time.
SLOW_S = 20.0


@pytest.fixture
def browser() -> str:
    """Headless Chromium's path; the test is unavailable without it (before anything starts)."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        unavailable("chromium is not installed (apt-get install chromium)")
    return path


@pytest.fixture
def clock() -> JumpClock:
    return JumpClock()


@pytest.fixture
def jump_world(
    rabbit: bus_support.Rabbit, tmp_path: Path, clock: JumpClock
) -> Iterator[DaemonWorld]:
    """``daemon_world``, with the sandbox's timers on ``clock``."""
    sandbox = Sandbox(transport_url=rabbit.transport_url, clock=clock).start()
    with daemon_world_on(rabbit, tmp_path, sandbox) as world:
        yield world


def chromium(path: str, *args: str) -> str:
    done = subprocess.run(
        [path, "--headless", "--disable-gpu", "--no-sandbox", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def resize(server_id: str, request_id: str) -> tuple[str, ...]:
    now = datetime.now(timezone.utc).isoformat()
    return ("--type", "quota.request.approved", "--server", server_id, "--flavor", "m1.large",
            "--timestamp", now, "--id", request_id)  # fmt: skip


def segment(dom: str, op_id: str) -> str:
    """The part of the page about one operation of the last hour."""
    start = dom.index(f'id="op-{op_id}"')
    end = dom.find('class="operation"', start)
    return dom[start : end if end > 0 else len(dom)]


def test_the_page_shows_what_the_journal_holds(
    browser: str, jump_world: DaemonWorld, clock: JumpClock, tmp_path: Path
) -> None:
    sandbox, conf, env = jump_world
    web = sandbox.add_server("web-1", "m1.small")
    slow = sandbox.add_server("slow-1", "m1.small")
    sandbox.faults.add_server(slow.id, ServerFaults(delays={"resize_migrate": SLOW_S}))
    daemon = start_daemon(conf, env)
    base = f"http://127.0.0.1:{daemon.logged('endpoints.listening')[0]['port']}"
    sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="slow-send")
    jumped = False
    try:
        assert send(conf, env, *resize(web.id, "quota-1"))[1]["outcome"] == "confirmed"
        assert send(conf, env, *resize(web.id, "quota-2"))[1]["outcome"] == "refused"
        slow_send = sender.submit(send, conf, env, *resize(slow.id, "slow-1"))
        journal = Journal.open(f"sqlite:///{conf.parent / 'state' / 'journal.sqlite'}")
        in_flight = until(
            lambda: [op for op in journal.unfinished() if op.phase != "start"], 30, "in flight"
        )[0]

        before = journal.get(in_flight.id).phase
        dom = chromium(browser, "--dump-dom", f"{base}/")
        after = journal.get(in_flight.id).phase
        screenshot = tmp_path / "status-page.png"
        chromium(browser, f"--screenshot={screenshot}", "--window-size=1280,1600", f"{base}/")

        assert 'id="readiness">ready<' in dom
        assert "<script" not in dom
        operations = journal.history(since=datetime.now(timezone.utc) - timedelta(hours=1))
        assert len(operations) == 3
        for op in operations:
            shown = segment(dom, op.id)
            if op.id == in_flight.id:
                assert "unfinished" in shown
                continue
            assert f">{op.outcome}<" in shown, shown
            for step in journal.steps(op.id):
                assert f">{step.name}<" in shown
        flight = dom.split("<h2>Operations in flight</h2>", 1)[1].split("<h2>", 1)[0]
        assert in_flight.id in flight
        # The phase it was in when the page was rendered: read just before and after.
        assert any(f'class="phase">{phase}<' in flight for phase in (before, after)), flight
        assert "No operation held." in dom
        assert 'class="ok">closed<' in dom  # the global breaker
        assert screenshot.stat().st_size > 20_000
        if kept := os.environ.get("STATUS_PAGE_SCREENSHOT"):
            shutil.copyfile(screenshot, kept)

        # The page is checked: the slow disk move ends now, not SLOW_S after it began.
        clock.jump(SLOW_S)
        jumped = True
        request = urllib.request.Request(f"{base}/", data=b"x", method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 501

        code, answer = slow_send.result(timeout=90)  # send's own limit: 60 s to answer
        assert (code, answer["outcome"]) == (0, "confirmed"), answer
        assert answer["operation_id"] == in_flight.id
        assert journal.get(in_flight.id).outcome == "confirmed"
        journal.close()
    finally:
        if not jumped:
            clock.jump(SLOW_S)  # so that a slow send still running ends soon
        sender.shutdown(wait=True)  # no thread outlives the test
        stop_daemon(daemon)
