"""The real daemon (`nova-autopilot run`) on its own RabbitMQ user against the
sandbox Nova, with DEBUG logging, an authorisation table and distinctive
secrets everywhere: requests that are forged, unsigned, signed with an
unknown key, expired, dated ahead, replayed (an exact copy published again,
or the id reused) or beyond what their key may ask are refused with their
reason, dead-lettered, recorded in the journal's refusals, and never reach
Nova; those refused after their signature was verified are also answered as
refused, with the reason; a request signed with a key rotated in works; and
afterwards no secret (the cloud's token, the broker's password, the journal
database's password, the signing keys, a rescued server's admin password) is
found in anything the daemon wrote, except the requester's own reply. The
journal is on MariaDB, reached as a user of its own with a password."""

from __future__ import annotations

import json
import os
import signal
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import sqlalchemy as sa
import yaml
from kombu import Connection, Queue

from nova_autopilot.bus import RequestClient
from nova_autopilot.bus.topology import results_exchange
from nova_autopilot.journal import Journal
from nova_autopilot.sandbox import Sandbox
from nova_autopilot.security.signing import sign
from tests.databases import SERVERS, reachable
from tests.integration import bus_support
from tests.integration.bus_support import HOST, PORT, Rabbit, take_all
from tests.integration.daemon_support import Running, launch
from tests.integration.stack import clouds_yaml
from tests.waiting import until

pytestmark = pytest.mark.integration

DEAD = "nova-autopilot.requests.dead"
TAP = "results-tap"
POLICIES = """
policies:
  - name: resize-on-approved-quota
    when: {source: request, event: quota.request.approved}
    do: {action: resize, params: {server: "{{ payload.server }}", flavor: "{{ payload.flavor }}"}}
    confirm: {timeout: 60s}
  - name: rescue-on-request
    when: {source: request, event: server.rescue.requested}
    do: {action: rescue, params: {server: "{{ payload.server }}"}}
    confirm: {timeout: 60s}
  - name: unrescue-after-repair
    when: {source: request, event: server.repair.done}
    do: {action: unrescue, params: {server: "{{ payload.server }}"}}
    confirm: {timeout: 60s}
"""


def distinctive(what: str) -> str:
    return f"{what}-{uuid.uuid4().hex}"


class World:
    """Everything the daemon is given, and the secrets in it."""

    def __init__(self, rabbit: Rabbit, tmp_path: Path) -> None:
        self.rabbit = rabbit
        self.tmp = tmp_path
        self.state = tmp_path / "state"
        self.sandbox = Sandbox(transport_url=rabbit.transport_url).start()
        self.sandbox.add_flavor("m1.small", vcpus=1, ram=128)
        self.sandbox.add_flavor("m1.large", vcpus=2, ram=256)
        self.sandbox.add_flavor("m1.huge", vcpus=8, ram=1024)
        self.keys = {
            "team-a": distinctive("team-a-key"),
            "ops-2026-11": distinctive("ops-old-key"),
            "ops-2026-12": distinctive("ops-new-key"),
        }
        self.cloud_token = "admin:" + distinctive("cloud-token")
        self.journal_url = self._journal_database()
        self.broker_user = f"autopilot-{uuid.uuid4().hex[:8]}"
        self.broker_password = distinctive("broker-password")
        bus_support._ctl("add_user", self.broker_user, self.broker_password)
        bus_support._ctl(
            "set_permissions", "-p", rabbit.vhost, self.broker_user,
            r"^(nova|nova-autopilot.*)$", r"^(amq\.default|nova-autopilot.*)$",
            r"^(nova|nova-autopilot.*)$",
        )  # fmt: skip
        self.conf = self._write_files()
        self.env = {"OS_CLIENT_CONFIG_FILE": str(tmp_path / "clouds.yaml")}
        # The operators' side (the administrator's user): requests out, a tap on the results.
        self.client_conf = bus_support.bus_conf(rabbit)
        with Connection(rabbit.amqp_url) as conn:
            Queue(TAP, exchange=results_exchange(self.client_conf), routing_key="#", durable=True)(
                conn.default_channel
            ).declare()

    @property
    def secrets(self) -> dict[str, str]:
        named = {f"signing key {k}": v for k, v in self.keys.items()}
        return {
            **named,
            "cloud token": self.cloud_token.split(":", 1)[1],
            "broker password": self.broker_password,
            "journal database password": self.database_password,
        }

    def _journal_database(self) -> str:
        """A MariaDB database for the journal and a user of its own, with a password."""
        server = reachable("mariadb", what="the security test")
        self.database = server.create_database()
        self.database_user = f"na_{uuid.uuid4().hex[:10]}"
        self.database_password = distinctive("database-password")
        admin = sa.create_engine(server.admin_url, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.execute(
                    sa.text(f"CREATE USER '{self.database_user}'@'%' IDENTIFIED BY :password"),
                    {"password": self.database_password},
                )
                conn.execute(
                    sa.text(f"GRANT ALL ON `{self.database}`.* TO '{self.database_user}'@'%'")
                )
        finally:
            admin.dispose()
        return (
            sa.make_url(server.url_of(self.database))
            .set(username=self.database_user, password=self.database_password)
            .render_as_string(hide_password=False)
        )

    def journal_dump(self) -> str:
        """Every row of every table of the journal, as text."""
        engine = sa.create_engine(self.journal_url)
        try:
            tables = sa.MetaData()
            tables.reflect(engine)
            with engine.connect() as conn:
                return "\n".join(
                    repr(tuple(row))
                    for table in tables.sorted_tables
                    for row in conn.execute(sa.select(table))
                )
        finally:
            engine.dispose()

    def _write_files(self) -> Path:
        tmp = self.tmp
        url = self.sandbox.url
        clouds_yaml(tmp / "clouds.yaml", url, token=self.cloud_token)
        (tmp / "policies.yaml").write_text(POLICIES)
        keys = tmp / "signing-keys.yaml"
        keys.write_text(yaml.safe_dump({"keys": self.keys}))
        keys.chmod(0o600)
        table = tmp / "authorization.yaml"
        everything = {"types": "*", "projects": "*", "actions": "*", "flavors": "*"}
        table.write_text(
            yaml.safe_dump(
                {
                    "keys": {
                        "team-a": {
                            "types": ["quota.request.approved", "server.repair.done"],
                            "projects": ["project-a"],
                            "actions": ["resize"],
                            "flavors": {"max_vcpus": 2},
                        },
                        "ops-2026-12": everything,
                        "ops-2026-11": everything,
                    }
                }
            )
        )
        table.chmod(0o600)
        broker = (
            f"rabbit://{self.broker_user}:{self.broker_password}@{HOST}:{PORT}/"
            f"{quote(self.rabbit.vhost)}"
        )
        conf = tmp / "nova-autopilot.conf"
        conf.write_text(
            f"[DEFAULT]\ntransport_url = {broker}\nstate_dir = {self.state}\nstop_timeout = 20\n"
            f"[policies]\npath = {tmp / 'policies.yaml'}\n"
            "[cloud]\ncloud = sandbox\npoll_interval = 2\n"
            f"[journal]\nconnection = {self.journal_url}\n"
            f"[requests]\nsigning_keys_file = {keys}\nauthorization_file = {table}\n"
            "[notifications]\nretry_delays = 1\n"
            "[logging]\nformat = json\nlevel = DEBUG\n"
        )
        return conf

    def close(self) -> None:
        self.sandbox.stop()
        bus_support._ctl("delete_user", self.broker_user)
        server = SERVERS["mariadb"]
        server.drop_database(self.database)
        admin = sa.create_engine(server.admin_url, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.execute(sa.text(f"DROP USER IF EXISTS '{self.database_user}'@'%'"))
        finally:
            admin.dispose()


@pytest.fixture
def world(rabbit: Rabbit, tmp_path: Path) -> Iterator[World]:
    w = World(rabbit, tmp_path)
    try:
        yield w
    finally:
        w.close()


def start(world: World) -> Running:
    daemon = launch(world.conf, {**os.environ, **world.env})
    process = daemon.process
    until(lambda: daemon.logged("daemon.started") or process.poll() is not None, 60, "start")
    assert process.poll() is None, "".join(daemon.raw)
    return daemon


def request(
    request_type: str,
    server: str,
    *,
    request_id: str | None = None,
    age_s: float = 0,
    **fields: Any,
) -> dict[str, Any]:
    stamp = datetime.now(timezone.utc) - timedelta(seconds=age_s)
    return {
        "type": request_type,
        "id": request_id or f"req-{uuid.uuid4().hex[:12]}",
        "timestamp": stamp.isoformat(),
        "server": {"id": server},
        **fields,
    }


def nova_writes(sandbox: Sandbox) -> dict[str, int]:
    return {k: n for k, n in sandbox.request_counts().items() if k.startswith("POST")}


def test_refused_requests_never_reach_nova_and_no_secret_is_written_anywhere(
    world: World,
) -> None:
    sandbox = world.sandbox
    ours = sandbox.add_server("web-a", "m1.small", project_id="project-a")
    theirs = sandbox.add_server("web-b", "m1.small", project_id="project-b")
    broken = sandbox.add_server("db-1", "m1.small", project_id="project-b")
    daemon = start(world)
    keys = world.keys

    def signed(body: dict[str, Any], key_id: str) -> dict[str, str]:
        return sign(body, key_id, keys[key_id])

    try:
        with RequestClient.from_conf(world.client_conf) as client:
            reply_to = client.reply_queue()

            def ask(body: dict[str, Any], key_id: str) -> dict[str, Any]:
                client.publish_request(
                    body, headers=signed(body, key_id), correlation_id=body["id"], reply_to=reply_to
                )
                answer = client.wait_for_reply(body["id"], timeout=90)
                return dict(answer.body)

            # A key rotated in: the rescue runs; its new password comes back to us alone.
            rescue = ask(request("server.rescue.requested", broken.id), "ops-2026-12")
            assert rescue["outcome"] == "rescued", rescue
            admin_password = rescue["secrets"]["admin_password"]
            assert len(admin_password) >= 16

            # Allowed: team-a resizes its own server within its flavors.
            resized = request("quota.request.approved", ours.id, flavor="m1.large")
            assert ask(resized, "team-a")["outcome"] == "confirmed"
            writes_before = nova_writes(sandbox)

            # Understood, then refused by the table before any decision: dead-lettered,
            # recorded and answered as refused.
            refused_operations = {
                "not_authorized: key team-a may not unrescue": request(
                    "server.repair.done", broken.id
                ),
                "not_authorized: key team-a: flavor m1.huge has vcpus 8, more than max_vcpus 2": (
                    request("quota.request.approved", ours.id, flavor="m1.huge")
                ),
                f"not_authorized: key team-a may not act on project project-b "
                f"(server {theirs.id})": request(
                    "quota.request.approved", theirs.id, flavor="m1.large"
                ),
            }
            for reason, body in refused_operations.items():
                answer = ask(body, "team-a")
                assert (answer["outcome"], answer["reason"]) == ("refused", reason)
                assert answer["refused"] == "not_authorized"
            # The same request again, unchanged, as anyone who caught it could send it:
            # refused, with when the first copy came and what it led to; nothing run twice.
            again = ask(resized, "team-a")
            assert again["outcome"] == "refused", again
            assert again["reason"].startswith(
                f"replayed: request id {resized['id']} was accepted at "
            )
            assert "resize: confirmed)" in again["reason"]

            # Refused at intake: dead-lettered, recorded, never answered.
            good = request("quota.request.approved", ours.id, flavor="m1.large")
            old = request("quota.request.approved", ours.id, flavor="m1.large", age_s=3600)
            ahead = request("quota.request.approved", ours.id, flavor="m1.large", age_s=-3600)
            reused = dict(resized, flavor="m1.small")
            stolen_secret = distinctive("not-a-key-of-ours")
            other_type = request("server.rescue.requested", ours.id)
            claim = request("quota.request.approved", theirs.id, flavor="m1.large",
                            project_id="project-b")  # fmt: skip
            intake_refusals = [
                (dict(good, id="forged-1"), signed(good, "team-a"), "bad_signature"),
                (dict(good, id="unsigned-1"), {}, "unsigned"),
                (
                    dict(good, id="unknown-1"),
                    sign(dict(good, id="unknown-1"), "stolen", stolen_secret),
                    "unknown_key",
                ),
                (old, signed(old, "team-a"), "expired"),
                (ahead, signed(ahead, "team-a"), "future"),
                (reused, signed(reused, "team-a"), "replayed"),
                (other_type, signed(other_type, "team-a"), "not_authorized"),
                (claim, signed(claim, "team-a"), "not_authorized"),
            ]
            for body, headers, _ in intake_refusals:
                client.publish_request(body, headers=headers, reply_to=reply_to)
            answered = [(body, signed(body, "team-a"), "not_authorized")
                        for body in refused_operations.values()]  # fmt: skip
            answered.append((resized, signed(resized, "team-a"), "replayed"))
            refusals = answered + intake_refusals
            until(
                lambda: world.rabbit.queues().get(DEAD) == len(refusals),
                60,
                "every refused request dead-lettered",
            )
        assert nova_writes(sandbox) == writes_before
        assert sandbox.server(theirs.id).flavor.name == "m1.small"
        assert sandbox.server(ours.id).flavor.name == "m1.large"
        assert sandbox.server(broken.id).vm_state == "rescued"
    finally:
        daemon.process.send_signal(signal.SIGTERM)
        code = daemon.process.wait(timeout=60)
    assert code == 0, "".join(daemon.raw[-30:])

    dead = take_all(world.rabbit, DEAD)
    dead_letters = Counter(
        (json.loads(m.body)["id"], m.headers["x-autopilot-reason"]) for m in dead
    )
    assert dead_letters == Counter((body["id"], reason) for body, _, reason in refusals)
    details = {m.headers["x-autopilot-detail"] for m in dead}
    assert {f"not_authorized: {d}" for d in details} >= set(refused_operations)

    journal = Journal.open(world.journal_url, migrate_schema=False)
    try:
        recorded = Counter((r.request_id, r.reason, r.key_id) for r in journal.refusals())
        decided = [(op.request_id, op.outcome) for op in journal.history()]
    finally:
        journal.close()
    assert recorded == Counter(
        (body["id"], reason, headers.get("x-autopilot-key-id"))
        for body, headers, reason in refusals
    )
    # Only what was allowed was decided, once each: nothing refused became an operation.
    assert sorted(decided) == sorted(
        [(resized["id"], "confirmed"), (rescue["request_id"], "rescued")]
    )

    # No secret anywhere the daemon wrote: its output, the results exchange, the
    # dead letters, the journal and the state directory.
    secrets = {**world.secrets, "admin password": admin_password, "stolen key": stolen_secret}
    written: dict[str, str] = {"daemon output": "".join(daemon.raw)}
    assert any('"level": "debug"' in line for line in daemon.raw), "DEBUG logging was off"
    results = take_all(world.rabbit, TAP)
    assert len(results) >= 2
    written["results exchange"] = "\n".join(
        f"{m.body!r} {m.headers} {m.properties}" for m in results
    )
    written["dead letters"] = "\n".join(f"{m.body!r} {m.headers} {m.properties}" for m in dead)
    written["journal dump"] = world.journal_dump()
    assert "confirmed" in written["journal dump"]  # the dump reads the daemon's journal
    for path in sorted(world.state.rglob("*")):
        if path.is_file():
            written[f"state file {path.name}"] = path.read_bytes().decode("utf-8", "replace")
    leaks = [
        f"{what} in {where}"
        for what, secret in secrets.items()
        for where, text in written.items()
        if secret in text
    ]
    assert leaks == []
