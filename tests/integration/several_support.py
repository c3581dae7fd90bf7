"""What the several daemons tests share, on the sandbox Nova
(tests/integration/test_several_daemons.py, test_coordination_outage.py) and on
the real one (tests/e2e/test_several_daemons.py): the daemons' configuration on
the sandbox, the stream of requests, and the journal's operations read back."""

from __future__ import annotations

import itertools
import os
import random
import signal
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from nova_autopilot.sandbox import Sandbox
from tests.integration import bus_support
from tests.integration.daemon_support import Running
from tests.integration.stack import clouds_yaml

REQUESTS_PER_SERVER = 5
POLICIES = """
policies:
  - name: resize-on-approved-quota
    when: {source: request, event: quota.request.approved}
    do: {action: resize, params: {server: "{{ payload.server }}", flavor: "{{ payload.flavor }}"}}
    confirm: {timeout: 120s}
    limits: {cooldown: 1h, when_busy: refuse}
"""
#: Nova's write actions, as the sandbox names its instance actions.
WRITES = {"resize", "confirmResize", "revertResize", "rescue", "unrescue", "lock", "unlock"}


def configure(
    tmp_path: Path,
    names: Sequence[str],
    *,
    rabbit: bus_support.Rabbit,
    coordination: tuple[str, str],
    journal: str,
    sandbox: Sandbox,
    lock_timeout: int,
    retry_delays: str = "1,2,4,8,16",
) -> tuple[dict[str, Path], dict[str, str]]:
    """A configuration file per daemon ``names``, all on one vhost, one journal, one
    sandbox Nova and one group (``coordination``: the backend's URL and the group),
    and the environment to run them in: the resize policy above, short retry delays
    (``retry_delays``, seconds) and heartbeats."""
    backend, group = coordination
    clouds = clouds_yaml(tmp_path / "clouds.yaml", sandbox.url)
    (tmp_path / "policies.yaml").write_text(POLICIES)
    confs = {}
    for name in names:
        conf = tmp_path / f"{name}.conf"
        conf.write_text(
            f"[DEFAULT]\ntransport_url = {rabbit.transport_url}\n"
            f"state_dir = {tmp_path / name}\nstop_timeout = 20\n"
            f"[policies]\npath = {tmp_path / 'policies.yaml'}\n"
            "[cloud]\ncloud = sandbox\npoll_interval = 2\nworkers = 4\n"
            "[requests]\nrequire_signatures = false\n"
            f"[journal]\nconnection = {journal}\n"
            "[guards]\nmax_concurrent_operations = 1000\nnova_write_rate = 100\n"
            "nova_write_burst = 20\n"
            f"[notifications]\nretry_delays = {retry_delays}\n"
            f"[coordination]\nbackend_url = {backend}\ngroup = {group}\n"
            f"member_id = {name}\nlock_timeout = {lock_timeout}\nheartbeat_interval = 1\n"
            "lock_wait = 3\ntakeover_interval = 2\n"
            "[logging]\nformat = json\n[metrics]\nport = 0\n"
        )
        confs[name] = conf
    return confs, {**os.environ, "OS_CLIENT_CONFIG_FILE": str(clouds)}


def requests_for(
    server_ids: list[str], *, flavor: str = "m1.large", prefix: str = "quota", seed: int = 7
) -> list[dict[str, Any]]:
    """Five requests per server, in an order that mixes the servers."""
    bodies = [
        {
            "version": 1,
            "type": "quota.request.approved",
            "id": f"{prefix}-{server_id}-{n}",
            "timestamp": datetime.now(timezone.utc).isoformat(),
            "server": {"id": server_id},
            "flavor": flavor,
            "approved_by": "bob",
        }
        for server_id in server_ids
        for n in range(REQUESTS_PER_SERVER)
    ]
    random.Random(seed).shuffle(bodies)
    return bodies


def operations(journal: str) -> list[dict[str, Any]]:
    """Every operation in the journal at ``journal`` (a URL), as a dict."""
    engine = sa.create_engine(journal)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT id, server_id, outcome, reason, owner, nova_requests, created_at, "
                    "finished_at FROM operations"
                )
            )
            return [dict(row._mapping) for row in rows]
    finally:
        engine.dispose()


def in_flight(daemon: Running) -> set[str]:
    """The operations ``daemon`` logged as started and not (yet) as finished."""
    started = {line["operation_id"] for line in daemon.logged("operation.started")}
    return started - {line["operation_id"] for line in daemon.logged("operation.finished")}


def stop_all(daemons: Mapping[str, Running]) -> None:
    """SIGTERM to every daemon still running, then wait for each to end."""
    for daemon in daemons.values():
        if daemon.process.poll() is None:
            daemon.process.send_signal(signal.SIGTERM)
    for daemon in daemons.values():
        daemon.process.wait(timeout=60)


def all_decided(journal: str, count: int, timeout: float = 300) -> list[dict[str, Any]]:
    """The journal's operations, once there are ``count`` and every one has ended
    (at most ``timeout`` seconds: a hang, even on a busy machine)."""
    deadline = time.monotonic() + timeout
    while True:
        ops = operations(journal)
        if len(ops) == count and all(o["outcome"] for o in ops):
            return ops
        assert time.monotonic() < deadline, Counter(o["outcome"] for o in ops)
        time.sleep(0.5)


def each_server_resized_once(
    sandbox: Sandbox,
    ops: list[dict[str, Any]],
    servers: list[str],
    bystanders: list[str],
    daemons: Mapping[str, Running],
) -> tuple[Counter[str], Counter[str]]:
    """Check what the stream of :func:`requests_for` must leave behind: each server
    resized and confirmed exactly once, the rest refused, nothing at all asked for
    the ``bystanders``, and never two operations at once on a server (in the
    journal and at Nova). Returns the outcomes and the reasons of the refusals."""
    # Each server was resized exactly once, confirmed: Nova received exactly one resize
    # and one confirmation per server, and no other write call (a repeat refused with
    # 409 would show here although Nova records no instance action for it)...
    calls = {sid: sandbox.write_calls(sid) for sid in servers}
    actions = {
        sid: [a for a in sandbox.server(sid).actions if a.action in WRITES] for sid in servers
    }

    def expected(sid: str) -> bool:
        mine = [o for o in ops if o["server_id"] == sid]
        reasons = sorted(
            str(o["reason"]).split(":")[0] for o in mine if o["outcome"] != "confirmed"
        )
        return (
            [(c.name, c.status) for c in calls[sid]] == [("resize", 202), ("confirmResize", 204)]
            and len(mine) - len(reasons) == 1
            and set(reasons) <= {"busy", "cooldown"}
        )

    odd = {
        sid: [
            (o["id"], o["owner"], o["outcome"], o["reason"]) for o in ops if o["server_id"] == sid
        ]
        for sid in servers
        if not expected(sid)
    }
    if odd:  # what every daemon said about them
        ids = set(odd) | {o[0] for found in odd.values() for o in found}
        for name, daemon in daemons.items():
            for raw in daemon.raw:
                if any(i in raw for i in ids):
                    print(name, raw.strip()[:500])
    counts = sandbox.write_counts()
    assert sorted(counts) == sorted(servers), odd  # none to the bystanders, nor elsewhere
    assert all(c == {"confirmResize": 1, "resize": 1} for c in counts.values()), odd
    assert not odd, odd  # each answered 202 and 204
    # ... which Nova accepted and recorded as its instance actions.
    per_server = Counter(tuple(a.action for a in found) for found in actions.values())
    assert per_server == {("resize", "confirmResize"): len(servers)}
    assert all(sandbox.server(sid).flavor.name == "m1.large" for sid in servers)
    assert all(sandbox.server(sid).flavor.name == "m1.small" for sid in bystanders)
    assert all(sandbox.write_calls(sid) == [] for sid in bystanders)
    outcomes = Counter(o["outcome"] for o in ops)
    confirmed = Counter(o["server_id"] for o in ops if o["outcome"] == "confirmed")
    assert confirmed == dict.fromkeys(servers, 1)
    assert outcomes["confirmed"] == len(servers)
    assert outcomes["refused"] == len(ops) - len(servers), outcomes
    refusals = Counter(str(o["reason"]).split(":")[0] for o in ops if o["outcome"] == "refused")
    assert set(refusals) <= {"busy", "cooldown"}, refusals
    assert all(o["nova_requests"] == 0 for o in ops if o["outcome"] == "refused")

    # No server ever had two operations at once. In the journal, the spans of a
    # server's operations that ran (created to finished) never overlap, and the
    # refused ones called nothing at Nova...
    for sid in servers:
        spans = sorted(
            (o["created_at"], o["finished_at"])
            for o in ops
            if o["server_id"] == sid and o["outcome"] != "refused"
        )
        for (_, end), (start_, _) in itertools.pairwise(spans):
            assert end <= start_, (sid, spans)
    # ... and at Nova, by its own clock, each server's write calls came one after the
    # other, the confirmation after the resize was answered, all within the one
    # operation that made them; Nova's instance actions (to the second) agree.
    for sid in servers:
        (op,) = [o for o in ops if o["server_id"] == sid and o["outcome"] == "confirmed"]
        resize, confirm = calls[sid]
        assert resize.answered <= confirm.arrived, (sid, resize, confirm)
        confirm_answered_at = confirm.at + timedelta(seconds=confirm.answered - confirm.arrived)
        assert op["created_at"] <= resize.at, (sid, op, resize)
        assert confirm_answered_at <= op["finished_at"], (sid, op, confirm)
        resized, confirmed_action = actions[sid]
        began_at = op["created_at"].replace(microsecond=0)  # Nova's times are to the second
        assert began_at <= resized.start_time <= confirmed_action.start_time <= op["finished_at"]

    return outcomes, refusals
