"""``nova-autopilot demo``: the real daemon against an embedded Nova, end to end.

Nothing outside the package is needed: the sandbox Nova serves the compute
API over HTTP on a loopback port and publishes Nova's notifications on
kombu's in-process broker; the daemon (the same code as ``nova-autopilot
run``: bus, engine, runner, journal, openstacksdk) runs on it with a journal
in a temporary directory. The demo then plays the product's flows and
follows each operation step by step:

1. a quota request is approved -> resize -> VERIFY_RESIZE -> health gate ->
   confirm;
2. the same for a server whose console shows a kernel panic -> the gate
   fails -> revert;
3. a launched server fails to boot (Nova's notifications say ERROR) ->
   rescue -> RESCUE; its repair is reported -> unrescue -> ACTIVE;
4. a server whose first boot failed (never launched) is left alone.

It prints the history at the end and exits 0 only if every flow ended as
expected.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

from nova_autopilot.logs import configure as configure_logs

#: What each flow must end as.
EXPECTED = {
    "web-1": ("resize", "confirmed"),
    "web-2": ("resize", "reverted"),
    "db-1 rescue": ("rescue", "rescued"),
    "db-1 unrescue": ("unrescue", "unrescued"),
}
DEMO_KEY = "demo-key"
STEP_TIMEOUT_S = 30.0


def seed_text(name: str) -> str:
    return resources.files("nova_autopilot").joinpath("seed", name).read_text("utf-8")


class Show:
    """Prints what happens, with the time since the demo started."""

    def __init__(self, out: Callable[[str], None]) -> None:
        self._out = out
        self._start = time.monotonic()

    def __call__(self, text: str) -> None:
        self._out(f"[{time.monotonic() - self._start:6.2f}s] {text}")

    def raw(self, text: str = "") -> None:
        self._out(text)


def run(*, broker: str | None = None, out: Callable[[str], None] = print) -> int:
    """Play every flow against the embedded Nova; 0 when each ended as expected.

    ``broker``: an oslo.messaging transport URL (``rabbit://...``) to use
    instead of the in-process broker; give the demo a vhost of its own."""
    configure_logs(level="ERROR", fmt="console")  # the demo shows its own progress
    show = Show(out)
    with tempfile.TemporaryDirectory(prefix="nova-autopilot-demo-") as tmp:
        world = _World(Path(tmp), show, broker)
        try:
            world.start()
            outcomes = world.play()
        finally:
            world.stop()
    return _verdict(show, outcomes)


class _World:
    """The sandbox Nova, the daemon and a requester, wired on one in-process broker."""

    def __init__(self, tmp: Path, show: Show, broker: str | None) -> None:
        self.tmp = tmp
        self.show = show
        self.broker = broker
        self.daemon: Any = None
        self.sandbox: Any = None
        self.client: Any = None

    def start(self) -> None:
        from nova_autopilot.bus.connection import register_oslo_options
        from nova_autopilot.cloud import Cloud
        from nova_autopilot.daemon import Daemon, PolicyHolder, write_limiter
        from nova_autopilot.journal import Journal
        from nova_autopilot.logs import redact
        from nova_autopilot.sandbox import Sandbox
        from nova_autopilot.settings import build_conf
        from nova_autopilot.signing import Verifier

        transport = self.broker or f"kombu+memory:///{uuid.uuid4().hex}"
        self.show("starting the embedded Nova (compute API over HTTP, notifications)")
        self.sandbox = Sandbox(transport_url=transport).start()
        self.sandbox.add_flavor("m1.small", vcpus=1, ram=512)
        self.sandbox.add_flavor("m1.large", vcpus=2, ram=2048)
        policies = self.tmp / "policies.yaml"
        policies.write_text(seed_text("demo-policies.yaml"))
        conf = build_conf()
        conf(args=[], default_config_files=[])
        register_oslo_options(conf)
        conf.set_override("transport_url", transport)
        conf.set_override("control_exchange", "nova")
        conf.set_override("state_dir", str(self.tmp))
        conf.set_override("poll_interval", 2, group="cloud")
        conf.set_override("port", 0, group="metrics")  # never collide with a running daemon
        self.key = uuid.uuid4().hex
        self.show(f"starting the daemon (journal in {self.tmp}, policies {policies.name})")
        self.daemon = Daemon(
            conf=conf,
            policies=PolicyHolder(str(policies)),
            journal=Journal.open(f"sqlite:///{self.tmp / 'journal.sqlite'}", redact=redact),
            cloud=Cloud.from_endpoint(self.sandbox.url, writes=write_limiter(conf)),
            verifier=Verifier({DEMO_KEY: self.key}, max_age_s=300),
        )
        if not self.daemon.start(ready_timeout=STEP_TIMEOUT_S):
            raise RuntimeError("the daemon's consumers did not attach")
        self.client = self.daemon.bus.client()
        self.show(f"ready: Nova at {self.sandbox.url}, {len(self.daemon.policies())} policies")

    def stop(self) -> None:
        if self.client is not None:
            self.client.close()
        if self.daemon is not None:
            self.daemon.stop(timeout=10)
        if self.sandbox is not None:
            self.sandbox.stop()

    # -- the flows --------------------------------------------------------

    def play(self) -> dict[str, tuple[str, str | None]]:
        from nova_autopilot.sandbox.faults import ServerFaults

        sandbox, show = self.sandbox, self.show
        web1 = sandbox.add_server("web-1", "m1.small")
        web2 = sandbox.add_server("web-2", "m1.small")
        db1 = sandbox.add_server("db-1", "m1.small")
        sandbox.faults.add_server(web2.id, ServerFaults(console="panic"))
        show.raw()
        show("servers: web-1, web-2 (its console will show a kernel panic), db-1 - all ACTIVE")
        outcomes: dict[str, tuple[str, str | None]] = {}

        show.raw("\n== 1. a quota request is approved: resize web-1 to m1.large")
        outcomes["web-1"] = self.request("quota.request.approved", web1.id, flavor="m1.large")
        show.raw("\n== 2. the same for web-2, whose guest panics after the resize")
        outcomes["web-2"] = self.request("quota.request.approved", web2.id, flavor="m1.large")

        show.raw("\n== 3. db-1 fails to boot after a reboot: Nova's notifications say ERROR")
        sandbox.fail(db1.id, "reboot")
        self.nova().reboot_server(db1.id, "HARD")
        outcomes["db-1 rescue"] = self.follow(lambda op: op.action == "rescue")
        show.raw("\n== 3b. the repair of db-1 is reported done")
        outcomes["db-1 unrescue"] = self.request("server.repair.done", db1.id)

        show.raw("\n== 4. build-1's first boot fails: it never launched, so it is left alone")
        server = self.nova().create_server(
            name="fail-spawn-build-1", flavor_id=sandbox.flavor("m1.small").id,
            image_id="155d900f-4e14-4e4c-a73d-069cbf4541e6", networks="none",
        )  # fmt: skip
        sandbox.wait_for_status(server.id, "ERROR", timeout=STEP_TIMEOUT_S)
        show(f"build-1 is ERROR and was never launched; operations on it: {self.ops_on(server.id)}")
        return outcomes

    def nova(self) -> Any:
        return self.daemon.cloud.connection.compute

    def ops_on(self, server_id: str) -> int:
        return sum(1 for op in self.daemon.journal.history() if op.server_id == server_id)

    def request(self, kind: str, server_id: str, **fields: str) -> tuple[str, str | None]:
        from nova_autopilot.signing import sign

        body = {
            "version": 1,
            "type": kind,
            "id": f"demo-{uuid.uuid4().hex[:12]}",
            "timestamp": datetime.now(timezone.utc).isoformat(),
            "server": {"id": server_id},
            "requested_by": "demo",
            **fields,
        }
        detail = "".join(f" {key}={value}" for key, value in fields.items())
        self.show(f"-> request {kind}{detail} (signed with {DEMO_KEY})")
        self.client.publish_request(
            body, reply_to=self.client.reply_queue(), headers=sign(body, DEMO_KEY, self.key)
        )
        return self.follow(lambda op: op.request_id == body["id"])

    def follow(self, which: Callable[[Any], bool]) -> tuple[str, str | None]:
        """Print an operation's steps as the journal records them, until it ends."""
        journal = self.daemon.journal
        deadline = time.monotonic() + STEP_TIMEOUT_S
        found = None
        shown = 0
        while time.monotonic() < deadline:
            if found is None:
                found = next((op for op in journal.history() if which(op)), None)
            if found is not None:
                steps = journal.steps(found.id)
                for step in steps[shown:]:
                    self.show(f"   {found.action}: {_describe(step.name, step.detail)}")
                shown = len(steps)
                found = journal.get(found.id)
                if found.finished:
                    reason = f" ({found.reason})" if found.reason else ""
                    self.show(
                        f"<- {found.action} {found.outcome}{reason}; "
                        f"{found.nova_requests} Nova API requests"
                    )
                    return found.action, found.outcome
            time.sleep(0.05)  # a person is watching: a 50 ms refresh
        return "timeout", None


def _describe(name: str, detail: dict[str, Any]) -> str:
    facts = {k: detail[k] for k in ("status", "task_state", "flavor", "target") if detail.get(k)}
    for key in ("problems", "reason", "note", "image"):
        if detail.get(key):
            facts[key] = detail[key]
    text = ", ".join(f"{k}={v}" for k, v in facts.items())
    return f"{name.replace('_', ' ')}" + (f" [{text}]" if text else "")


def _verdict(show: Show, outcomes: dict[str, tuple[str, str | None]]) -> int:
    show.raw("\n== history")
    show.raw(f"{'flow':<16} {'action':<10} {'outcome':<12} expected")
    ok = True
    for flow, expected in EXPECTED.items():
        got = outcomes.get(flow, ("-", None))
        match = got == expected
        ok = ok and match
        mark = "" if match else "  <-- NO"
        show.raw(f"{flow:<16} {got[0]:<10} {got[1] or '-':<12} {expected[1]}{mark}")
    show.raw("")
    show("demo: every flow ended as expected" if ok else "demo: a flow did NOT end as expected")
    return 0 if ok else 1
