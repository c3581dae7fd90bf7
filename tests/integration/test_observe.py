"""The daemon's metrics, health endpoints and `status`, on the real daemon process,
the real RabbitMQ and the sandbox Nova over HTTP.

A resize request goes through, the same request published again is refused as
replayed, a second resize of the same server is refused by its cooldown, and a
malformed notification, an unsigned request and a request no policy handles are
dead-lettered; /metrics, scraped over HTTP, then
shows exactly what happened, Nova's notifications counted by type as the sandbox
sent them. /readyz turns 503 while the broker is cut off (a TCP proxy between the
daemon and RabbitMQ is cut: its connections closed, new ones refused) and 200 once
it is back, each consumer having reconnected once. `nova-autopilot status` reads
a live daemon, and falls back to the journal when the daemon is down.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import threading
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import quote

import pytest
from prometheus_client.parser import text_string_to_metric_families

from nova_autopilot import settings
from nova_autopilot.bus import RequestClient
from nova_autopilot.journal import Journal, NewOperation
from nova_autopilot.sandbox import Sandbox
from tests.integration import bus_support
from tests.integration.daemon_support import BIN, POLICIES, Running, send, start_daemon, stop_daemon
from tests.integration.stack import add_flavors, clouds_yaml
from tests.waiting import until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


class Proxy:
    """A TCP proxy to RabbitMQ that the test can cut and restore."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self.port = 0
        self.accepted = 0
        self.restore()

    def restore(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        """Close every connection and refuse new ones."""
        with self._lock:
            listener, self._listener = self._listener, None
            sockets, self._sockets = self._sockets, []
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
            listener.close()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            try:
                server = socket.create_connection(self.upstream, timeout=10)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    server.close()
                    return
                self._sockets += [client, server]
                self.accepted += 1
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def scrape(base: str) -> Samples:
    code, text = get(f"{base}/metrics")
    assert code == 200
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def by_labels(samples: Samples, name: str, *labels: str) -> dict[tuple[str, ...], float]:
    """Every non-zero sample of ``name``, keyed by the values of ``labels`` in that order."""
    found = {}
    for (n, ls), v in samples.items():
        if n == name and v:
            named = dict(ls)
            found[tuple(named[label] for label in labels)] = v
    return found


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every sample of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= set(ls))


class World:
    def __init__(self, rabbit: bus_support.Rabbit, tmp_path: Path) -> None:
        self.rabbit = rabbit
        self.tmp = tmp_path
        self.sandbox = add_flavors(Sandbox(transport_url=rabbit.transport_url).start())
        clouds = clouds_yaml(tmp_path / "clouds.yaml", self.sandbox.url)
        (tmp_path / "policies.yaml").write_text(POLICIES)
        self.keys = tmp_path / "signing-keys.yaml"
        self.keys.write_text("keys:\n  test-key: " + "s3cr3t-" * 4 + "\n")
        self.keys.chmod(0o600)
        self.env = {"OS_CLIENT_CONFIG_FILE": str(clouds)}
        self.state = tmp_path / "state"

    def conf(
        self, *, port: int, broker_port: int = bus_support.PORT, check_every: int = 3600
    ) -> Path:
        user, password = quote(bus_support.USER), quote(bus_support.PASSWORD)
        transport = f"rabbit://{user}:{password}@127.0.0.1:{broker_port}/{quote(self.rabbit.vhost)}"
        path = self.tmp / "nova-autopilot.conf"
        path.write_text(
            f"[DEFAULT]\ntransport_url = {transport}\nstate_dir = {self.state}\n"
            "stop_timeout = 20\n"
            f"[policies]\npath = {self.tmp / 'policies.yaml'}\n"
            "[cloud]\ncloud = sandbox\npoll_interval = 2\n"
            f"[requests]\nsigning_keys_file = {self.keys}\nsigning_key_id = test-key\n"
            "[logging]\nformat = json\n"
            f"[metrics]\nport = {port}\ncloud_check_interval = {check_every}\n"
            "[oslo_messaging_rabbit]\nrabbit_retry_interval = 1\nrabbit_retry_backoff = 1\n"
        )
        return path

    def status(self, conf: Path, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "nova-autopilot"), "--config-file", str(conf), "status", *args],
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )


@pytest.fixture
def world(rabbit: bus_support.Rabbit, tmp_path: Path) -> Iterator[World]:
    built = World(rabbit, tmp_path)
    try:
        yield built
    finally:
        built.sandbox.stop()


def started(world: World, conf: Path) -> Running:
    return start_daemon(conf, {**os.environ, **world.env})


def test_metrics_show_exactly_what_a_resize_refusals_and_dead_letters_did(world: World) -> None:
    port = free_port()
    conf = world.conf(port=port)
    env = {**os.environ, **world.env}
    web = world.sandbox.add_server("web-1", "m1.small")
    notifications = world.sandbox.notifications
    assert notifications.flush()  # what Nova said before the daemon listened is not counted
    daemon = started(world, conf)
    notifications.clear()
    base = f"http://127.0.0.1:{port}"
    try:
        (listening,) = daemon.logged("endpoints.listening")
        assert listening["port"] == port
        assert get(f"{base}/healthz")[0] == 200
        assert get(f"{base}/readyz")[0] == 200
        world.sandbox.reset_request_counts()
        before = scrape(base)

        args = ("--type", "quota.request.approved", "--server", web.id, "--flavor", "m1.large",
                "--timestamp", datetime.now(timezone.utc).isoformat())  # fmt: skip
        code, result = send(conf, env, *args, "--id", "quota-1")
        assert (code, result["outcome"]) == (0, "confirmed")
        # Published again: a replay, dead-lettered (its event known, the second
        # dead letter on the requests' queue).
        code, again = send(conf, env, *args, "--id", "quota-1")
        assert (code, again["outcome"], again["refused"]) == (1, "refused", "replayed")
        # Another resize of the same server, within the default cooldown (1800 s).
        code, cooled = send(conf, env, *args, "--id", "quota-2")
        assert (cooled["outcome"], cooled["reason"].split(":")[0]) == ("refused", "cooldown")

        # Dead letters: a notification that is not JSON, a request without a signature
        # (neither becomes an event: its type is unknown), a signed request of a type
        # no policy handles (an event, dead-lettered by the engine).
        bus_support.publish_raw(world.rabbit, [b"{not json"])
        with RequestClient.from_conf(settings.load(config_files=[str(conf)])) as client:
            client.publish_request(
                {"type": "quota.request.approved", "id": "forged-1", "server": {"id": web.id},
                 "flavor": "m1.large", "timestamp": datetime.now(timezone.utc).isoformat()}
            )  # fmt: skip
        unhandled = subprocess.run(
            [str(BIN / "nova-autopilot"), "--config-file", str(conf), "send", "--type",
             "server.repair.done", "--server", web.id, "--id", "repair-1"],
            env=env, capture_output=True, text=True, check=False, timeout=60,
        )  # fmt: skip
        assert unhandled.returncode == 0, unhandled.stderr
        dead = "nova_autopilot_dead_lettered_total"
        until(lambda: total(scrape(base), dead) >= 4, 30, "four dead letters")
        # Every notification the sandbox Nova sent since the daemon listened, counted.
        assert notifications.flush()
        assert notifications.failures == 0
        sent = Counter(n.event_type for n in notifications.all())
        assert sent["instance.resize_confirm.end"] == 1  # Nova did speak of the resize
        received = "nova_autopilot_events_received_total"
        until(
            lambda: total(scrape(base), received, source="nova") >= sum(sent.values()),
            30,
            "every notification of the sandbox received",
        )

        samples = scrape(base)
        assert by_labels(samples, received, "source", "event_type") == {
            ("request", "quota.request.approved"): 3,
            ("request", "server.repair.done"): 1,
        } | {("nova", event_type): n for event_type, n in sent.items()}
        matched = "nova_autopilot_events_matched_total"
        assert by_labels(samples, matched, "source", "event_type") == {
            ("request", "quota.request.approved"): 3,  # the replay too
        }
        dropped = by_labels(
            samples, "nova_autopilot_events_dropped_total", "source", "event_type", "reason"
        )
        assert dropped == {
            ("request", "quota.request.approved", "replayed"): 1,
            ("nova", "unknown", "not_json"): 1,
            ("request", "unknown", "unsigned"): 1,
            ("request", "server.repair.done", "unknown_request"): 1,
        }
        queues = {c["name"]: c["queue"] for c in json.loads(get(f"{base}/status")[1])["consumers"]}
        assert by_labels(samples, dead, "queue", "reason") == {
            (queues["notifications"], "not_json"): 1,
            (queues["requests"], "replayed"): 1,
            (queues["requests"], "unsigned"): 1,
            (queues["requests"], "unknown_request"): 1,
        }
        decisions = "nova_autopilot_decisions_total"
        assert by_labels(samples, decisions, "policy", "outcome") == {
            ("resize-on-approved-quota", "run"): 1,
            ("resize-on-approved-quota", "refused"): 1,
        }
        finished = "nova_autopilot_operations_finished_total"
        assert by_labels(samples, finished, "action", "outcome") == {
            ("resize", "confirmed"): 1,
            ("resize", "refused"): 1,
        }
        refusals = "nova_autopilot_guard_refusals_total"
        assert by_labels(samples, refusals, "guard") == {("cooldown",): 1}
        in_flight = "nova_autopilot_operations_in_flight"
        assert {k[1]: v for k, v in samples.items() if k[0] == in_flight} == {
            (("action", a),): 0.0
            for a in ("finish_resize", "rescue", "resize", "unrescue", "verify_boot")
        }
        held = "nova_autopilot_operations_held"
        assert {k[1]: v for k, v in samples.items() if k[0] == held} == {
            (("phase", "awaiting_approval"),): 0.0,
            (("phase", "queued"),): 0.0,
        }
        duration = "nova_autopilot_operation_duration_seconds"
        labels = {"action": "resize", "outcome": "confirmed"}
        assert value(samples, f"{duration}_count", **labels) == 1
        assert value(samples, f"{duration}_bucket", le="+Inf", **labels) == 1
        assert 0 < value(samples, f"{duration}_sum", **labels) < 60

        # Nova's side of the story: every request the daemon made, per call, as Nova saw it.
        nova: dict[str, float] = {}
        for key, n in world.sandbox.request_counts().items():
            method, path = key.split(" ")[:2]  # drop the action's name
            call = f"{method} {path.replace('{server_id}', '{id}')}"
            nova[call] = nova.get(call, 0) + n
        made: dict[str, float] = {}
        for (name, labels), n in samples.items():
            if name == "nova_autopilot_nova_requests_total":
                call = dict(labels)["call"]
                made[call] = made.get(call, 0) + n - before.get((name, labels), 0.0)
        assert {call: n for call, n in made.items() if n} == nova
        requests = "nova_autopilot_nova_requests_total"
        action = "POST /v2.1/servers/{id}/action"
        assert value(samples, requests, call=action, status="202") == 1  # the resize
        assert value(samples, requests, call=action, status="204") == 1  # its confirmation
        assert world.sandbox.request_counts()["POST /v2.1/servers/{server_id}/action resize"] == 1

        for consumer in ("notifications", "requests"):
            assert value(samples, "nova_autopilot_consumer_up", consumer=consumer) == 1
            assert value(samples, "nova_autopilot_broker_reconnects_total", consumer=consumer) == 0
        assert total(samples, "nova_autopilot_build_info") == 1
        assert value(samples, "nova_autopilot_breaker_state", scope="global") == 0

        # The same daemon through `status`.
        shown = world.status(conf, "--json")
        assert shown.returncode == 0, shown.stderr
        document = json.loads(shown.stdout)
        sections = {"daemon", "readiness", "cloud", "operations", "consumers", "breakers", "sweeps"}
        sections |= {"coordination"}
        assert set(document) == sections | {"counters"}
        assert document["breakers"] == {"global": "closed"}
        assert document["daemon"]["policies"] == 2
        assert document["cloud"]["reachable"] is True
        assert document["operations"] == []
        assert document["readiness"] == {"ready": True, "problems": {}}
        assert {c["name"]: c["up"] for c in document["consumers"]} == {
            "notifications": True,
            "requests": True,
        }
        assert {"action": "resize", "outcome": "confirmed", "count": 1} in document["counters"][
            "operations_finished"
        ]
        table = world.status(conf)
        assert table.returncode == 0, table.stderr
        assert "no operation in flight" in table.stdout
        assert "resize-on-approved-quota" in table.stdout
    finally:
        stop_daemon(daemon)

    # Down: `status` says so, exits 1, and lists what the journal holds unfinished.
    now = datetime.now(timezone.utc)
    with Journal.open(f"sqlite:///{world.state / 'journal.sqlite'}") as journal:
        waiting = NewOperation(
            policy="rescue-failed-boot",
            action="rescue",
            project_id=None,
            server_id=web.id,
            server_name="web-1",
            params={},
            mode="enforce",
            event={},
            why="test",
            deadline_at=now + timedelta(hours=1),
        )
        journal.accept(
            message_key="test:waiting", operations=[waiting], now=now - timedelta(minutes=3)
        )
    shown = world.status(conf, "--json")
    assert shown.returncode == 1
    document = json.loads(shown.stdout)
    assert document["answered"] is False
    assert "no answer from" in document["error"]
    (listed,) = document["journal"]["unfinished"]
    assert (listed["operation_id"], listed["action"], listed["server_id"]) == (
        waiting.id,
        "rescue",
        web.id,
    )
    table = world.status(conf)
    assert table.returncode == 1
    assert "the daemon does not answer" in table.stdout
    assert waiting.id in table.stdout


def test_readyz_is_503_while_the_broker_is_cut_off_and_200_once_it_is_back(world: World) -> None:
    proxy = Proxy((bus_support.HOST, bus_support.PORT))
    conf = world.conf(port=0, broker_port=proxy.port)
    daemon = started(world, conf)
    try:
        (listening,) = daemon.logged("endpoints.listening")
        base = f"http://127.0.0.1:{listening['port']}"
        assert listening["port"] > 0
        assert get(f"{base}/readyz")[0] == 200

        proxy.cut()
        _code, body = until(
            lambda: (answer := get(f"{base}/readyz"))[0] == 503 and answer, 60, "not ready"
        )
        problems = json.loads(body)["problems"]
        assert set(problems) == {"consumers"}
        assert "not attached" in problems["consumers"]
        assert get(f"{base}/healthz")[0] == 200  # the process is alive: only not ready
        cut_off = scrape(base)
        assert total(cut_off, "nova_autopilot_consumer_up") < 2

        proxy.restore()
        until(lambda: get(f"{base}/readyz")[0] == 200, 90, "ready again")
        back = scrape(base)
        assert total(back, "nova_autopilot_consumer_up") == 2
        # One cut: each consumer lost its connection once and connected again once.
        reconnects = by_labels(back, "nova_autopilot_broker_reconnects_total", "consumer")
        assert reconnects == {("notifications",): 1, ("requests",): 1}
    finally:
        proxy.cut()
        stop_daemon(daemon)
