"""Publish-to-decision latency: Nova's notification on RabbitMQ to the decision in the journal.

In a vhost of its own on the real RabbitMQ, Nova-shaped notifications are
published as Nova's compute service publishes them (oslo.messaging's
``Notifier``, driver ``messagingv2``, topic ``versioned_notifications``,
publisher ``nova-compute:<host>``) at a paced 100 messages per second. Each is
an ``instance.update`` from ``active`` to ``error`` for a launched server of
the sandbox Nova (one server per message), so the seed-like rescue policy
decides on every one. The daemon runs with its real parts (``Daemon``: the
bus, the engine, the runner, a SQLite journal, openstacksdk to the sandbox
over HTTP, started with ``start()``); the latency is from the moment before
``Notifier.info`` is called to the moment the engine returns from writing
the decision to the journal.

Five rows in the same run and on the same broker:

* **plain kombu**: a kombu consumer of a queue bound like the daemon's, which
  only acknowledges: the broker's and the client library's share;
* **daemon, dry run** (``[guards] dry_run``): the decision is recorded and
  reported, nothing is done on Nova; once at 100 msg/s, once at a fifth of it
  (a fifth of the messages): on a small machine 100 decisions a second are
  more than the daemon keeps up with, and the latency is then the queue's;
* **daemon, acting**: every decision starts a rescue, carried out by the
  runner against the sandbox while the next messages arrive; at the same two
  rates.

Everything runs in this process (publisher, daemon, sandbox) on a machine
shared with the broker: compare the rows of one run.
"""

from __future__ import annotations

import copy
import statistics
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kombu import Connection, Consumer, Exchange, Queue

from bench import broker
from bench.summary import figure
from nova_autopilot import logs, settings
from nova_autopilot.bus.connection import register_oslo_options
from nova_autopilot.cloud import Cloud
from nova_autopilot.daemon.wiring import Daemon, PolicyHolder
from nova_autopilot.journal import Journal
from nova_autopilot.sandbox import Sandbox
from tests.samples import sample

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # oslo.messaging warns about eventlet on import
    import oslo_messaging

RATE = 100.0
ROUTING_KEY = "versioned_notifications.info"
POLICIES = """
policies:
  - name: rescue-failed-boot
    when:
      source: nova
      event: instance.update
      match:
        - {field: payload.state_update.state, equals: error}
        - {field: payload.state_update.old_state, not_equals: error}
        - {field: payload.launched_at, exists: true}
    do: {action: rescue, params: {server: {id: "{{ instance_id }}"}}}
    confirm: {timeout: 120s}
"""


# --- the broker ------------------------------------------------------------------------


def _conf(vhost: str, tmp: Path, policies: Path, *, dry_run: bool) -> Any:
    conf = settings.build_conf()
    conf(args=[], default_config_files=[])
    register_oslo_options(conf)
    conf.set_override("transport_url", broker.transport_url(vhost))
    conf.set_override("control_exchange", "nova")
    conf.set_override("state_dir", str(tmp / "state"))
    conf.set_override("require_signatures", False, group="requests")
    conf.set_override("connection", f"sqlite:///{tmp / 'journal.sqlite'}", group="journal")
    conf.set_override("path", str(policies), group="policies")
    conf.set_override("dry_run", dry_run, group="guards")
    # The acting rows measure the daemon, not its safety limits: the concurrency cap and
    # the Nova write rate (10 and 2/s by default) would refuse or slow most rescues.
    conf.set_override("max_concurrent_operations", 10_000, group="guards")
    conf.set_override("nova_write_rate", 10_000.0, group="guards")
    conf.set_override("nova_write_burst", 10_000, group="guards")
    conf.set_override("port", 0, group="metrics")
    return conf


# --- the messages ----------------------------------------------------------------------


def _payload(server_id: str, *, old_state: str = "active") -> dict[str, Any]:
    """Nova's ``instance.update`` payload: a launched server went from active to error."""
    payload = copy.deepcopy(sample("instance-update")["payload"])
    data = payload["nova_object.data"]
    data.update(
        uuid=server_id,
        state="error",
        task_state=None,
        power_state="shutdown",
        launched_at="2026-11-25T20:00:00Z",
    )
    data["state_update"]["nova_object.data"].update(
        old_state=old_state, state="error", old_task_state=None, new_task_state=None
    )
    return payload


class Paced:
    """Publishes one notification per server at ``rate`` with Nova's own Notifier."""

    def __init__(self, conf: Any, rate: float = RATE) -> None:
        self.rate = rate
        self.transport = oslo_messaging.get_notification_transport(conf)
        self.notifier = oslo_messaging.Notifier(
            self.transport,
            publisher_id="nova-compute:compute-1",
            driver="messagingv2",
            topics=["versioned_notifications"],
        )
        self.sent: dict[str, float] = {}
        self.order: list[float] = []

    def warm(self) -> None:
        """One message no policy matches first: the connection, the exchange, oslo's queue."""
        self.notifier.info({}, "instance.update", _payload(str(uuid.uuid4()), old_state="error"))

    def publish(self, server_ids: list[str]) -> None:
        payloads = [_payload(server_id) for server_id in server_ids]
        start = time.monotonic()
        for i, (server_id, payload) in enumerate(zip(server_ids, payloads, strict=True)):
            pause = start + i / self.rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)  # pacing the publisher, not waiting for a result
            sent = time.monotonic()
            self.sent[server_id] = sent
            self.order.append(sent)
            self.notifier.info({}, "instance.update", payload)

    def close(self) -> None:
        self.transport.cleanup()


class Arrivals:
    """When each of ``count`` messages arrived; waits for the last with a deadline."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.at: dict[Any, float] = {}
        self._cond = threading.Condition()

    def mark(self, key: Any) -> None:
        now = time.monotonic()
        with self._cond:
            self.at.setdefault(key, now)
            if len(self.at) >= self.count:
                self._cond.notify_all()

    def wait(self, timeout: float) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.at) >= self.count, timeout):
                raise TimeoutError(f"only {len(self.at)} of {self.count} arrived")


# --- the consumers ---------------------------------------------------------------------


def plain_kombu(vhost: str, conf: Any, count: int) -> list[float]:
    """Publish -> receive of a kombu consumer that only acknowledges (in order: one queue)."""
    arrivals = Arrivals(count)
    seen = [0]

    def on_message(message: Any) -> None:
        message.ack()
        arrivals.mark(seen[0])
        seen[0] += 1

    publisher = Paced(conf)
    queue = Queue(
        "bench.latency.plain",
        Exchange("nova", type="topic", durable=False),
        routing_key=ROUTING_KEY,
        durable=False,
    )
    try:
        publisher.warm()
        with Connection(broker.amqp_url(vhost)) as conn:
            queue.bind(conn.default_channel).declare()
            queue.bind(conn.default_channel).purge()
            with Consumer(
                conn.channel(), queues=[queue], on_message=on_message, prefetch_count=100
            ):
                thread = threading.Thread(
                    target=publisher.publish, args=([str(i) for i in range(count)],)
                )
                thread.start()
                deadline = time.monotonic() + count / RATE + 30
                while len(arrivals.at) < count and time.monotonic() < deadline:
                    try:
                        conn.drain_events(timeout=1)
                    except TimeoutError:
                        continue
                thread.join()
            arrivals.wait(0)
            queue.bind(conn.default_channel).delete()
    finally:
        publisher.close()
    return [arrivals.at[i] - sent for i, sent in enumerate(publisher.order)]


def daemon(
    vhost: str, tmp: Path, sandbox: Sandbox, count: int, *, dry_run: bool, rate: float = RATE
) -> list[float]:
    """Publish -> decision written, through the daemon's real parts."""
    policies = tmp / "policies.yaml"
    policies.write_text(POLICIES)
    state = tmp / f"{'dry-run' if dry_run else 'acting'}-{rate:g}"
    state.mkdir()
    conf = _conf(vhost, state, policies, dry_run=dry_run)
    servers = [
        sandbox.add_server(f"{state.name}-{i}", "m1.small", state="ERROR").id for i in range(count)
    ]
    journal = Journal.open(conf.journal.connection, redact=logs.redact)
    the_daemon = Daemon(
        conf=conf,
        policies=PolicyHolder(str(policies)),
        journal=journal,
        cloud=Cloud.from_endpoint(sandbox.url),
        verifier=None,
    )
    arrivals = Arrivals(count)
    handle_many: Callable[..., list[Any]] = the_daemon.engine.handle_many
    wanted = set(servers)

    def timed(items: Any) -> list[Any]:
        decided = handle_many(items)
        for item, outcome in zip(items, decided, strict=True):
            if outcome and not isinstance(outcome, Exception) and item.event.instance_id in wanted:
                arrivals.mark(item.event.instance_id)
        return decided

    the_daemon.engine.handle_many = timed  # type: ignore[method-assign]
    publisher = Paced(conf, rate)
    try:
        if not the_daemon.start(ready_timeout=30):
            raise RuntimeError("the daemon's consumers did not attach")
        publisher.warm()
        publisher.publish(servers)
        arrivals.wait(60)
        if not dry_run:  # let the rescues end before the next run shares the machine
            deadline = time.monotonic() + 120
            while the_daemon.runner.in_flight() and time.monotonic() < deadline:
                time.sleep(0.1)  # the runner's own count, with a deadline
    finally:
        publisher.close()
        the_daemon.stop(timeout=10)
    rescued = sum(sandbox.server(server_id).vm_state == "rescued" for server_id in servers)
    if not dry_run and rescued != count:
        print(f"latency: only {rescued} of {count} servers were rescued")
    return [arrivals.at[server_id] - publisher.sent[server_id] for server_id in servers]


# --- the run ---------------------------------------------------------------------------


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


def run(*, quick: bool = False) -> dict[str, Any]:
    count = 50 if quick else 500
    logs.configure(level="WARNING")
    slow, slow_count = RATE / 5, count // 5
    # consumer, rate, messages
    plan = [
        ("plain kombu (acknowledge only)", RATE, count),
        ("daemon, dry run", RATE, count),
        ("daemon, acting (rescues)", RATE, count),
        ("daemon, dry run", slow, slow_count),
        ("daemon, acting (rescues)", slow, slow_count),
    ]
    latencies: list[list[float]] = []
    with broker.vhost("latency") as vhost, tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        sandbox = Sandbox(transport_url=broker.transport_url(vhost)).start()
        try:
            sandbox.add_flavor("m1.small")
            probe = _conf(vhost, tmp, tmp / "none.yaml", dry_run=True)
            latencies.append(plain_kombu(vhost, probe, count))
            latencies.append(daemon(vhost, tmp, sandbox, count, dry_run=True))
            latencies.append(daemon(vhost, tmp, sandbox, count, dry_run=False))
            latencies.append(daemon(vhost, tmp, sandbox, slow_count, dry_run=True, rate=slow))
            latencies.append(daemon(vhost, tmp, sandbox, slow_count, dry_run=False, rate=slow))
        finally:
            sandbox.stop()
    rows = []
    for (name, rate, messages), values in zip(plan, latencies, strict=True):
        rows.append(
            {
                "consumer": name,
                "rate": rate,
                "messages": messages,
                "p50_ms": 1000 * statistics.median(values),
                "p99_ms": 1000 * _percentile(values, 0.99),
                "max_ms": 1000 * max(values),
            }
        )
    base = rows[0]
    lines = [
        "### Publish-to-decision latency on RabbitMQ",
        "",
        "Nova `instance.update` notifications (active -> error, launched; one server each) "
        "published with oslo.messaging's Notifier at a paced rate; from before `Notifier.info` "
        "to the decision written to the journal (plain kombu: to the message received).",
        "",
        "| consumer | msg/s | messages | p50 ms | p99 ms | max ms | p50 vs plain | p99 vs plain |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['consumer']} | {row['rate']:.0f} | {row['messages']:,} "
            f"| {row['p50_ms']:.2f} | {row['p99_ms']:.2f} "
            f"| {row['max_ms']:.2f} | {row['p50_ms'] / base['p50_ms']:.1f}x "
            f"| {row['p99_ms'] / base['p99_ms']:.1f}x |"
        )
    dry, slow_dry, slow_acting = rows[1], rows[3], rows[4]
    headline = [
        figure(
            f"publish to decision p50, dry run, {slow_dry['rate']:.0f} msg/s",
            slow_dry["p50_ms"],
            "ms",
            baseline="plain kombu p50",
            baseline_value=base["p50_ms"],
        ),
        figure(
            f"publish to decision p50, dry run, {dry['rate']:.0f} msg/s",
            dry["p50_ms"],
            "ms",
            baseline="plain kombu p50",
            baseline_value=base["p50_ms"],
        ),
        figure(
            f"publish to decision p99, dry run, {dry['rate']:.0f} msg/s",
            dry["p99_ms"],
            "ms",
            baseline="plain kombu p99",
            baseline_value=base["p99_ms"],
        ),
        figure(
            f"publish to decision p50, acting, {slow_acting['rate']:.0f} msg/s",
            slow_acting["p50_ms"],
            "ms",
            baseline="plain kombu p50",
            baseline_value=base["p50_ms"],
        ),
    ]
    return {
        "benchmark": "latency",
        "messages": count,
        "rows": rows,
        "headline": headline,
        "markdown": "\n".join(lines),
    }


if __name__ == "__main__":
    import sys

    print(run(quick="--quick" in sys.argv)["markdown"])
