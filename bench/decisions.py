"""Decisions per second: Nova's notifications through the real daemon into its journal.

What the **intake** benchmark measures is the bus alone: messages parsed into
events and matched, with no decision and no journal. This one measures the
whole path an operator runs: ``nova-autopilot run`` as its own process, its bus
on the real RabbitMQ, its engine deciding every message against a ``mode:
dry-run`` rescue policy (every guard asked, the decision and the message key
written to the journal, its result published), and only then the message
acknowledged.

In a vhost of its own, N ``instance.update`` notifications (each for its own
launched server entering ERROR, as Nova's oslo.messaging puts it on the wire)
are published to the daemon's pool queue (declared first, with the bus's own
topology) before the daemon starts; the daemon is then started against the
sandbox Nova and drains the queue. The rate is from the journal: the N
decisions' times, first to last. In the same run, a plain kombu consumer
(prefetch 100, one ack per message, nothing else) drains the same N messages
from a queue of its own: the ceiling of a Python consumer on this machine and
broker. Each decision must be recorded exactly once (N operations, N distinct
message keys) and the queue left empty.

Rows: the journal on SQLite (a file in a temporary directory) and on the
PostgreSQL of 127.0.0.1:5432 (a database of the run's own). Each figure is the
best of its runs, as in every benchmark here: the daemon runs twice on each
journal, plain kombu once before the daemon's runs and once after. The daemon, the
broker and the plain consumer share this machine's cores: compare rows of one
run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from kombu import Connection

from bench import broker, databases
from bench.intake import _plain_kombu, _publish, _wait_queued
from bench.matching import typical_message
from bench.summary import figure
from nova_autopilot import settings
from nova_autopilot.bus.connection import notification_broker, register_oslo_options
from nova_autopilot.bus.topology import notification_topology
from nova_autopilot.journal import Journal
from nova_autopilot.sandbox import Sandbox

ROUTING_KEY = "versioned_notifications.info"
EPOCH = datetime.fromisoformat("1970-01-01T00:00:00+00:00")
POLICIES = """
policies:
  - name: rescue-failed-boot
    mode: dry-run
    when:
      source: nova
      event: instance.update
      match:
        - {field: payload.state_update.state, equals: error}
        - {field: payload.state_update.old_state, not_equals: error}
        - {field: payload.launched_at, exists: true}
    do: {action: rescue, params: {server: {id: "{{ instance_id }}"}}}
"""


def _messages(count: int) -> list[bytes]:
    """``count`` notifications, each about its own server, each with its own message id."""
    inner = json.loads(json.loads(typical_message())["oslo.message"])
    out = []
    for _ in range(count):
        inner["message_id"] = str(uuid.uuid4())
        inner["payload"]["nova_object.data"]["uuid"] = str(uuid.uuid4())
        out.append(json.dumps({"oslo.version": "2.0", "oslo.message": json.dumps(inner)}).encode())
    return out


def _configure(
    tmp: Path,
    vhost: str,
    journal_url: str,
    sandbox_url: str,
    *,
    policies: str = POLICIES,
    pool: str | None = None,
) -> Path:
    """The daemon's configuration for a run: ``policies`` in force, notifications from the
    pool queue ``pool`` (else one of the run's own), no signatures, no sweeps."""
    clouds = {
        "clouds": {
            "sandbox": {
                "auth_type": "admin_token",
                "auth": {"endpoint": sandbox_url, "token": "admin:admin"},
                "compute_endpoint_override": sandbox_url,
            }
        }
    }
    (tmp / "clouds.yaml").write_text(yaml.safe_dump(clouds))
    (tmp / "policies.yaml").write_text(policies)
    conf = tmp / "nova-autopilot.conf"
    conf.write_text(
        f"[DEFAULT]\ntransport_url = {broker.transport_url(vhost)}\n"
        f"state_dir = {tmp / 'state'}\nstop_timeout = 20\n"
        f"[notifications]\npool = {pool or f'bench-decisions-{uuid.uuid4().hex[:6]}'}\n"
        f"[policies]\npath = {tmp / 'policies.yaml'}\n"
        "[cloud]\ncloud = sandbox\n"
        "[requests]\nrequire_signatures = false\n"
        f"[journal]\nconnection = {journal_url}\n"
        "[sweeps]\nenabled = false\n"
        "[logging]\nformat = json\nlevel = WARNING\n[metrics]\nenabled = false\n"
    )
    return conf


def _prepublish(conf_path: Path, vhost: str, bodies: list[bytes]) -> str:
    """Declare the daemon's pool queue as its bus does, fill it; its name."""
    conf = settings.load(config_files=[str(conf_path)])
    register_oslo_options(conf)
    topology = notification_topology(conf, notification_broker(conf), delays=())
    url = broker.amqp_url(vhost)
    with Connection(url) as conn:
        topology.declare(conn.default_channel, with_delay_queues=False)
    _publish(url, bodies, exchange=str(conf.notifications.exchange), routing_key=ROUTING_KEY)
    _wait_queued(url, topology.queue_name, len(bodies))
    return topology.queue_name


def _decide(vhost: str, journal_url: str, bodies: list[bytes], timeout: float) -> dict[str, Any]:
    """Run the daemon over the pre-published ``bodies``; its rate and exactly-once checks."""
    count = len(bodies)
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        sandbox = Sandbox().start()
        try:
            conf = _configure(tmp, vhost, journal_url, sandbox.url)
            queue = _prepublish(conf, vhost, bodies)
            env = {**os.environ, "OS_CLIENT_CONFIG_FILE": str(tmp / "clouds.yaml")}
            log = (tmp / "daemon.log").open("w")
            command = [str(Path(sys.executable).parent / "nova-autopilot"), "--config-file"]
            daemon = subprocess.Popen(
                [*command, str(conf), "run"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            try:
                with Journal.open(journal_url) as journal:
                    deadline = time.monotonic() + timeout
                    while journal.count(since=EPOCH) < count:
                        if daemon.poll() is not None:
                            raise RuntimeError((tmp / "daemon.log").read_text()[-2000:])
                        if time.monotonic() > deadline:
                            raise TimeoutError("the daemon did not decide every message in time")
                        time.sleep(0.1)  # polling the journal's count, with a deadline
                    operations = journal.history(limit=count + 10)
            finally:
                daemon.send_signal(signal.SIGTERM)
                daemon.wait(timeout=60)
                log.close()
            with Connection(broker.amqp_url(vhost)) as conn:
                _, left, _ = conn.default_channel.queue_declare(queue=queue, passive=True)
        finally:
            sandbox.stop()
    times = sorted(op.created_at for op in operations)
    span = (times[-1] - times[0]).total_seconds()
    keys = {op.message_key for op in operations}
    return {
        "per_s": (count - 1) / span if span > 0 else 0.0,
        "operations": len(operations),
        "distinct_messages": len(keys),
        "outcomes": sorted({str(op.outcome) for op in operations}),
        "left_in_queue": left,
        "exactly_once": len(operations) == count == len(keys) and left == 0,
    }


def _best(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The fastest of ``runs``, exactly once only if every run was."""
    best = max(runs, key=lambda row: row["per_s"])
    return {
        **best,
        "runs": [round(row["per_s"]) for row in runs],
        "exactly_once": all(row["exactly_once"] for row in runs),
    }


def run(*, quick: bool = False) -> dict[str, Any]:
    count = 200 if quick else 10_000
    rounds = 1 if quick else 2
    bodies = _messages(count)
    rows: list[dict[str, Any]] = []
    with broker.vhost("decisions") as vhost:
        url = broker.amqp_url(vhost)
        plain = _plain_kombu(url, count, bodies).rate()
        sqlite = []
        for _ in range(rounds):
            with tempfile.TemporaryDirectory() as tmp:
                sqlite.append(_decide(vhost, f"sqlite:///{tmp}/journal.sqlite", bodies, 900))
        rows.append({"journal": "SQLite", **_best(sqlite)})
        postgresql = []
        for _ in range(rounds):
            with databases.postgresql("decisions") as journal_url:
                if journal_url is not None:
                    postgresql.append(_decide(vhost, journal_url, bodies, 900))
        if postgresql:
            rows.append({"journal": "PostgreSQL", **_best(postgresql)})
        plain_again = _plain_kombu(url, count, bodies).rate()
    ceiling = max(plain, plain_again)
    for row in rows:
        row["vs_plain"] = row["per_s"] / ceiling if ceiling else 0.0
    lines = [
        "### Decisions: Nova notifications decided per second by the daemon, end to end",
        "",
        f"{count:,} `instance.update` notifications (each a launched server entering ERROR) "
        "pre-published to the daemon's pool queue, then drained by `nova-autopilot run` "
        "deciding each against a `mode: dry-run` rescue policy: every guard asked, the "
        "decision and the message key written to the journal, the result published, then "
        "the message acknowledged. Plain kombu drains the same messages from its own queue "
        "and only acknowledges. Each figure is the best of its runs: plain kombu one run "
        "before the daemon's and one after, the daemon "
        f"{rounds} run{'s' if rounds > 1 else ''} on each journal (each run's rate in the "
        "last column).",
        "",
        "| consumer | decisions/s | vs plain kombu | exactly once | operations | left in queue "
        "| runs |",
        "|---|---:|---:|---|---:|---:|---|",
        f"| plain kombu (ceiling) | {ceiling:,.0f} | 1.00 | - | - | - | "
        f"{plain:,.0f}, {plain_again:,.0f} |",
    ]
    for row in rows:
        lines.append(
            f"| daemon, journal on {row['journal']} | {row['per_s']:,.0f} | "
            f"{row['vs_plain']:.3f} | {'yes' if row['exactly_once'] else 'NO'} | "
            f"{row['operations']:,} | {row['left_in_queue']} | "
            f"{', '.join(f'{rate:,}' for rate in row['runs'])} |"
        )
    headline = [
        figure(
            f"decisions, journal on {row['journal']}",
            row["per_s"],
            "decisions/s",
            baseline="plain kombu",
            baseline_value=ceiling,
        )
        for row in rows
    ]
    return {
        "benchmark": "decisions",
        "headline": headline,
        "messages": count,
        "plain_per_s": ceiling,
        "rows": rows,
        "markdown": "\n".join(lines),
    }


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv)["markdown"])
