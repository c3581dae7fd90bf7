"""A steady stream through the real daemon, for the journal's fault tests
(tests/integration/test_journal_restart.py, test_journal_disk_full.py): Nova
notifications and signed operator requests, each matched by a ``mode: dry-run``
policy, published until stopped; what the daemon's /healthz and /readyz said
meanwhile; and what the stream left in the journal and the broker's queues,
checked: every message decided exactly once, nothing acknowledged undecided."""

from __future__ import annotations

import itertools
import re
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from kombu import Connection, Exchange, Producer

from nova_autopilot import settings
from nova_autopilot.bus import RequestClient
from nova_autopilot.journal import Journal, Operation
from nova_autopilot.security import signing
from tests.integration import bus_support
from tests.integration.daemon_support import POLICIES, Running, endpoints, get
from tests.samples import on_the_wire, sample
from tests.waiting import until

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


def uptime(daemon: Running) -> float:
    """The daemon's uptime as /status says it (0 when it does not answer)."""
    _, status = get(f"{endpoints(daemon)}/status")
    return float(status.get("daemon", {}).get("uptime_s") or 0)


def past_first_prune(daemon: Running) -> None:
    """Wait until the daemon's main loop has pruned the journal once: an outage at a
    prune is a case of its own (test_journal_restart.py), not what the others measure."""
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
