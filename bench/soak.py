"""The soak: the daemon's resources under a long, steady, mixed stream.

``nova-autopilot run``, its own process on the real RabbitMQ (a vhost of the run's
own), the sandbox Nova over HTTP and a SQLite journal, gets a steady stream of
messages for the whole run, at ``rate`` a second:

- Nova notifications that a ``mode: dry-run`` rescue policy matches (each about a
  server of its own: a decision, a journal row and a result each);
- Nova notifications that no policy matches (parsed, matched, dropped);
- operator requests to resize one of 20 sandbox servers, in turns: the first for
  each server resizes and confirms it on the sandbox Nova, the next ones are
  refused by the guards (the server is busy, or in its cooldown), so refusals,
  results and Nova's own notifications about the resizes flow as well.

Every ``interval_s`` the daemon's resident memory (``VmRSS``), threads and open
files are read from ``/proc``. What counts is how they change once the daemon is
warm (after ``warmup_s``): a leak shows as a growth that goes on with the stream.
At the end every message must have been decided (the journal holds an operation
for each matching notification and each request) and the queues drained.

``python -m bench soak`` runs 30 minutes at 100 messages a second (not part of
``python -m bench`` without a name: it is long); ``--quick``, 8 seconds.
``tests/integration/test_leaks.py`` runs a shorter one and fails on a thread or a
file more once warm, and, in its own process, on Python memory a message leaves behind.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from kombu import Connection

from bench import broker
from bench.decisions import EPOCH, ROUTING_KEY, _configure
from bench.decisions import POLICIES as DECISION_POLICIES
from bench.matching import typical_message
from bench.summary import figure
from nova_autopilot.journal import Journal
from nova_autopilot.sandbox import Sandbox
from tests.integration.stack import add_flavors

#: The decisions benchmark's dry-run rescue policy, and resizes asked for by requests.
POLICIES = (
    DECISION_POLICIES
    + """
  - name: grow-on-approval
    when: {source: request, event: quota.request.approved}
    do: {action: resize, params: {server: "{{ payload.server }}", flavor: "{{ payload.flavor }}"}}
    limits: {cooldown: 1h}
    confirm: {timeout: 60s}
"""
)
#: How the stream is mixed: of every 20 messages, 12 match, 5 match nothing, 3 are requests.
MIX = ("match",) * 12 + ("other",) * 5 + ("request",) * 3
SERVERS = 20
POOL = "nova-autopilot"


def _notification(state: str, old_state: str) -> bytes:
    """A Nova ``instance.update`` as oslo.messaging puts it on the wire, about a new
    server, from ``old_state`` to ``state``."""
    inner = json.loads(json.loads(typical_message())["oslo.message"])
    inner["message_id"] = str(uuid.uuid4())
    data = inner["payload"]["nova_object.data"]
    data["uuid"] = str(uuid.uuid4())
    data["state_update"]["nova_object.data"].update(state=state, old_state=old_state)
    return json.dumps({"oslo.version": "2.0", "oslo.message": json.dumps(inner)}).encode()


def _request(server_id: str, flavor: str) -> bytes:
    return json.dumps(
        {
            "version": 1,
            "type": "quota.request.approved",
            "id": f"soak-{uuid.uuid4().hex}",
            "timestamp": datetime.now(timezone.utc).isoformat(),
            "server": {"id": server_id},
            "flavor": flavor,
            "requested_by": "soak",
        }
    ).encode()


class _Stream(threading.Thread):
    """Publishes the mix at ``rate`` a second until told to stop; counts what it sent."""

    def __init__(self, url: str, rate: float, servers: list[str]) -> None:
        super().__init__(name="soak-stream", daemon=True)
        self._url = url
        self._rate = rate
        self._servers = servers
        self._stop_event = threading.Event()
        self.sent = {"match": 0, "other": 0, "request": 0}
        self.error: BaseException | None = None

    def stop(self) -> None:
        self._stop_event.set()
        self.join(60)

    def run(self) -> None:
        try:
            self._publish()
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            self.error = exc

    def _publish(self) -> None:
        with Connection(self._url) as conn:
            channel = conn.channel()
            started = time.monotonic()
            count = 0
            while not self._stop_event.is_set():
                kind = MIX[count % len(MIX)]
                if kind == "request":
                    server = self._servers[self.sent["request"] % len(self._servers)]
                    body = _request(server, "m1.large")
                    exchange, key = "nova-autopilot.requests", "request.quota.request.approved"
                else:
                    body = _notification(*(("error", "active") if kind == "match" else
                                           ("active", "active")))  # fmt: skip
                    exchange, key = "nova", ROUTING_KEY
                message = channel.prepare_message(
                    body,
                    content_type="application/json",
                    content_encoding="utf-8",
                    properties={"message_id": str(uuid.uuid4()), "delivery_mode": 2},
                )
                channel.basic_publish(message, exchange=exchange, routing_key=key)
                self.sent[kind] += 1
                count += 1
                pause = started + count / self._rate - time.monotonic()
                if pause > 0:
                    self._stop_event.wait(pause)  # paced: the stream's own clock


def resources(pid: int) -> dict[str, int]:
    """The process's resident memory (KiB), threads and open files, from ``/proc``."""
    out = {"fds": len(os.listdir(f"/proc/{pid}/fd"))}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key == "VmRSS":
            out["rss_kib"] = int(value.split()[0])
        elif key == "Threads":
            out["threads"] = int(value)
    return out


def soak(*, duration_s: float, rate: float, interval_s: float, warmup_s: float) -> dict[str, Any]:
    """Run the daemon under the stream for ``duration_s``; its samples and counts."""
    with broker.vhost("soak") as vhost, tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        sandbox = Sandbox(transport_url=broker.transport_url(vhost)).start()
        try:
            add_flavors(sandbox)
            servers = [sandbox.add_server(f"soak-{n}", "m1.small").id for n in range(SERVERS)]
            journal_url = f"sqlite:///{tmp / 'journal.sqlite'}"
            conf = _configure(tmp, vhost, journal_url, sandbox.url, policies=POLICIES, pool=POOL)
            env = {**os.environ, "OS_CLIENT_CONFIG_FILE": str(tmp / "clouds.yaml")}
            log = (tmp / "daemon.log").open("w")
            command = [str(Path(sys.executable).parent / "nova-autopilot"), "--config-file"]
            daemon = subprocess.Popen(
                [*command, str(conf), "run"], env=env, stdout=log, stderr=subprocess.STDOUT
            )
            try:
                return _observe(daemon, tmp, vhost, journal_url, servers, duration_s=duration_s,
                                rate=rate, interval_s=interval_s, warmup_s=warmup_s)  # fmt: skip
            finally:
                daemon.send_signal(signal.SIGTERM)
                daemon.wait(timeout=60)
                log.close()
        finally:
            sandbox.stop()


def _observe(
    daemon: subprocess.Popen[bytes],
    tmp: Path,
    vhost: str,
    journal_url: str,
    servers: list[str],
    *,
    duration_s: float,
    rate: float,
    interval_s: float,
    warmup_s: float,
) -> dict[str, Any]:
    with Journal.open(journal_url) as journal:
        deadline = time.monotonic() + 60
        while not _attached(vhost):
            if daemon.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((tmp / "daemon.log").read_text()[-2000:])
            time.sleep(0.1)  # the daemon's start, with a deadline
        stream = _Stream(broker.amqp_url(vhost), rate, servers)
        started = time.monotonic()
        stream.start()
        samples = []
        try:
            while (elapsed := time.monotonic() - started) < duration_s:
                if daemon.poll() is not None:
                    raise RuntimeError((tmp / "daemon.log").read_text()[-2000:])
                samples.append({"at_s": round(elapsed, 1), **resources(daemon.pid),
                                "decided": journal.count(since=EPOCH)})  # fmt: skip
                time.sleep(max(0.0, started + len(samples) * interval_s - time.monotonic()))
        finally:
            stream.stop()
        if stream.error is not None:
            raise stream.error
        expected = stream.sent["match"] + stream.sent["request"]
        deadline = time.monotonic() + 120
        while (decided := journal.count(since=EPOCH)) < expected:
            if time.monotonic() > deadline or daemon.poll() is not None:
                break
            time.sleep(0.2)  # the stream's last messages, with a deadline
        final = resources(daemon.pid)
        outcomes: dict[str, int] = {}
        for op in journal.history(limit=expected + 1000, since=EPOCH):
            outcomes[str(op.outcome)] = outcomes.get(str(op.outcome), 0) + 1
    warm = [s for s in samples if s["at_s"] >= warmup_s] or samples
    return {
        "samples": samples,
        "final": final,
        "sent": stream.sent,
        "expected": expected,
        "decided": decided,
        "outcomes": outcomes,
        "warm": warm[0],
        "last": warm[-1],
        "growth": {key: warm[-1][key] - warm[0][key] for key in ("rss_kib", "threads", "fds")},
        "left": _queued(vhost),
    }


def _attached(vhost: str) -> bool:
    with Connection(broker.amqp_url(vhost)) as conn:
        channel = conn.channel()
        try:
            for queue in ("nova-autopilot.requests",):
                channel.queue_declare(queue=queue, passive=True)
        except Exception:  # noqa: BLE001 - not declared yet
            return False
    return True


def _queued(vhost: str) -> int:
    """Messages still waiting in the daemon's two queues."""
    total = 0
    with Connection(broker.amqp_url(vhost)) as conn:
        for queue in (POOL, "nova-autopilot.requests"):
            _, ready, _ = conn.channel().queue_declare(queue=queue, passive=True)
            total += ready
    return total


def _span(seconds: float) -> str:
    return f"{seconds / 60:g} minutes" if seconds >= 60 else f"{seconds:g} seconds"


def run(*, quick: bool = False) -> dict[str, Any]:
    duration_s, interval_s, warmup_s = (8.0, 1.0, 3.0) if quick else (1800.0, 60.0, 120.0)
    rate = 100.0
    result = soak(duration_s=duration_s, rate=rate, interval_s=interval_s, warmup_s=warmup_s)
    lines = [
        "### Soak: the daemon's resources under a steady mixed stream",
        "",
        f"{_span(duration_s)} at {rate:g} messages a second (of every 20: 12 "
        "notifications a dry-run policy matches, 5 that nothing matches, 3 resize requests "
        f"for {SERVERS} sandbox servers, most refused by the guards); SQLite journal. "
        f"Sent: {result['sent']}; decided {result['decided']:,} of {result['expected']:,}; "
        f"outcomes {result['outcomes']}; left in the queues: {result['left']}.",
        "",
        "| at (s) | RSS (MiB) | threads | open files | decided |",
        "|---:|---:|---:|---:|---:|",
    ]
    for sample in result["samples"]:
        lines.append(
            f"| {sample['at_s']:g} | {sample['rss_kib'] / 1024:.1f} | {sample['threads']} "
            f"| {sample['fds']} | {sample['decided']:,} |"
        )
    growth = result["growth"]
    lines += [
        "",
        f"Growth once warm ({warmup_s:g} s on): RSS {growth['rss_kib'] / 1024:+.1f} MiB, "
        f"threads {growth['threads']:+d}, open files {growth['fds']:+d}.",
    ]
    headline = [
        figure(
            "RSS growth once warm",
            growth["rss_kib"] / 1024,
            "MiB",
            baseline="RSS once warm",
            baseline_value=result["warm"]["rss_kib"] / 1024,
        ),
        figure("threads growth once warm", growth["threads"], "threads"),
        figure("open files growth once warm", growth["fds"], "files"),
    ]
    return {
        "benchmark": "soak",
        "headline": headline,
        **{key: result[key] for key in ("sent", "decided", "expected", "outcomes", "left")},
        "samples": result["samples"],
        "growth": growth,
        "markdown": "\n".join(lines),
    }


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv)["markdown"])
