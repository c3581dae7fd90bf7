"""The alerting rules and the dashboard against a real Prometheus scraping a real daemon.

A `prometheus` server of the test's own (its port, its data directory, scrapes and
rule evaluations every second, deploy/prometheus's rules loaded) scrapes
`nova-autopilot run` on the sandbox Nova and the test's RabbitMQ vhost while real
traffic goes through: a confirmed resize, a resize in flight that ends timed out,
one that fails and opens its policy's breaker, the decisions that breaker then
refuses, two dead letters. Every alert's signal and every dashboard query then
returns series through the HTTP API, every alert expression evaluates, and the
alerts the run provokes fire.
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

from nova_autopilot.sandbox.faults import ServerFaults
from tests.deploy.support import JOB, RULES, alert_rules, concrete, panel_queries, signal, tool
from tests.integration import bus_support
from tests.integration.daemon_support import DaemonWorld, send, start_daemon, stop_daemon
from tests.waiting import until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: The alerts this run provokes.
PROVOKED = {"NovaAutopilotBreakerOpen", "NovaAutopilotRefusalsSpiking", "NovaAutopilotDeadLetters"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Prometheus:
    url: str
    process: subprocess.Popen[bytes]

    def api(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}{query}", timeout=10) as answer:
            document = json.loads(answer.read())
        assert document["status"] == "success", document
        return document["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", (expr, data)
        return list(data["result"])

    def firing(self) -> set[str]:
        return {
            a["labels"]["alertname"] for a in self.api("alerts")["alerts"] if a["state"] == "firing"
        }

    def seen(self, expr: str, at_least: float = 1) -> bool:
        return any(float(r["value"][1]) >= at_least for r in self.query(expr))


def ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


@pytest.fixture
def prometheus_for(tmp_path: Path) -> Iterator[Any]:
    """Starts a Prometheus scraping a target; stops it at the end."""
    started: list[subprocess.Popen[bytes]] = []

    def start(target: str) -> Prometheus:
        config = tmp_path / "prometheus.yml"
        config.write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [{"job_name": JOB, "scrape_interval": "1s", "scrape_timeout": "1s",
                                "static_configs": [{"targets": [target]}]}],
        }))  # fmt: skip
        port = free_port()
        process = subprocess.Popen(
            [tool("prometheus"), f"--config.file={config}", f"--storage.tsdb.path={tmp_path}/tsdb",
             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
            stdout=subprocess.DEVNULL, stderr=(tmp_path / "prometheus.log").open("wb"),
        )  # fmt: skip
        started.append(process)
        url = f"http://127.0.0.1:{port}"
        until(lambda: ready(url) or process.poll() is not None, 60, "Prometheus ready")
        assert process.poll() is None, (tmp_path / "prometheus.log").read_text()
        return Prometheus(url, process)

    yield start
    for process in started:
        process.terminate()
        process.wait(timeout=30)


def resize(server_id: str, request_id: str) -> tuple[str, ...]:
    now = datetime.now(timezone.utc).isoformat()
    return ("--type", "quota.request.approved", "--server", server_id, "--flavor", "m1.large",
            "--timestamp", now, "--id", request_id)  # fmt: skip


def test_the_alerts_and_the_dashboard_against_a_real_prometheus(
    daemon_world: DaemonWorld, rabbit: bus_support.Rabbit, prometheus_for: Any
) -> None:
    tool("prometheus")  # unavailable without it: before anything starts
    sandbox, conf, env = daemon_world
    policies = conf.parent / "policies.yaml"  # resizes end by 8 s; one failure opens a breaker
    policies.write_text(policies.read_text().replace("timeout: 60s, gate", "timeout: 8s, gate"))
    conf.write_text(conf.read_text() + "[guards]\npolicy_breaker_failures = 1\n")
    web = sandbox.add_server("web-1", "m1.small")
    slow = sandbox.add_server("slow-1", "m1.small")
    sandbox.faults.add_server(slow.id, ServerFaults(delays={"resize_migrate": 30.0}))
    bad = sandbox.add_server("bad-1", "m1.small")
    sandbox.fail(bad.id, "resize")
    daemon = start_daemon(conf, env)
    began = time.monotonic()
    slow_send = threading.Thread(target=send, args=(conf, env, *resize(slow.id, "slow-1")))
    try:
        port = daemon.logged("endpoints.listening")[0]["port"]
        prometheus = prometheus_for(f"127.0.0.1:{port}")
        until(lambda: prometheus.seen(f'up{{job="{JOB}"}}'), 30, "the daemon scraped")
        assert send(conf, env, *resize(web.id, "quota-1"))[1]["outcome"] == "confirmed"
        slow_send.start()
        # The slow resize started (the confirmed one was the first), before a failure
        # opens the breaker that would refuse it; then Prometheus sees it in flight.
        until(lambda: len(daemon.logged("operation.started")) >= 2, 60, "the slow resize started")
        until(lambda: prometheus.seen("sum(nova_autopilot_operations_in_flight)"), 30, "in flight")
        assert send(conf, env, *resize(bad.id, "bad-1"))[1]["outcome"] == "failed"
        until(lambda: prometheus.seen("nova_autopilot_breaker_state", 2), 30, "a breaker open")
        # Refusals: the first makes the series, Prometheus sees it, then the burst.
        assert send(conf, env, *resize(web.id, "again-0"))[1]["outcome"] == "refused"
        until(lambda: prometheus.seen("nova_autopilot_guard_refusals_total"), 30, "a refusal")
        for n in range(1, 6):
            assert send(conf, env, *resize(web.id, f"again-{n}"))[1]["outcome"] == "refused"
        bus_support.publish_raw(rabbit, [b"{not json"])
        until(lambda: prometheus.seen("nova_autopilot_dead_lettered_total"), 30, "a dead letter")
        bus_support.publish_raw(rabbit, [b"{not json either"])
        slow_send.join(timeout=60)
        until(
            lambda: prometheus.seen(
                'nova_autopilot_operations_finished_total{outcome="timed_out"}'
            ),
            30,
            "the slow resize timed out",
        )

        until(lambda: prometheus.firing() >= PROVOKED, 60, f"{PROVOKED} firing")
        for rule in alert_rules():
            prometheus.query(rule["expr"])  # evaluates
            assert prometheus.query(signal(rule["expr"])), (
                f"{rule['alert']}: {signal(rule['expr'])}"
            )
        for title, expr in panel_queries():
            assert prometheus.query(concrete(expr)), f"{title}: {concrete(expr)}"
        rules = prometheus.api("rules")["groups"][0]["rules"]
        assert {r["name"] for r in rules} == {r["alert"] for r in alert_rules()}
        assert all(r["health"] == "ok" for r in rules), [r for r in rules if r["health"] != "ok"]
        print(f"\nPrometheus run: {time.monotonic() - began:.1f} s")
    finally:
        stop_daemon(daemon)
        if slow_send.is_alive():  # its daemon is gone: it answers within send's time-out
            slow_send.join(timeout=90)
