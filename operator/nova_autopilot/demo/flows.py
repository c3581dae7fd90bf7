"""``nova-autopilot demo``: the real daemon, end to end, through the product's flows.

By default nothing outside the package is needed: the sandbox Nova serves
the compute API over HTTP on a loopback port and publishes Nova's
notifications on kombu's in-process broker (or on ``--broker``). With
``--cloud NAME`` the same demo runs against a real cloud: the daemon's
cloud is that clouds.yaml entry, Nova's notifications come from the cloud's
broker (``--broker``), and the demo's servers are booted there and deleted
at the end, whatever happens. In both cases the daemon (the same code as
``nova-autopilot run``: bus, engine, runner, journal, openstacksdk) runs
with a journal in a temporary directory, and the demo follows each
operation step by step:

1. a quota request is approved -> resize -> VERIFY_RESIZE -> health gate ->
   confirm;
2. the same for a server whose health gate fails -> revert;
3. a launched server fails to boot (Nova's notifications say ERROR) ->
   rescue -> RESCUE; its repair is reported -> unrescue -> ACTIVE;
4. a server whose first boot failed (never launched) is left alone.

How each flow's condition is staged is the :mod:`~nova_autopilot.demo.staging`
module's business; a flow it cannot stage is skipped, with the reason. At
the end the demo prints the journal's history of what was done, as
``nova-autopilot history`` renders it (each operation's event, policy,
decision, steps with their Nova calls and gate checks, outcome), then the
verdict of each flow; it exits 0 only if every flow that ran ended as
expected and at least one ran.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from nova_autopilot.demo.staging import (
    CloudStage,
    Kind,
    SandboxStage,
    Stage,
    Staged,
    StageError,
    UsageError,
    parse_metadata,
    seed_text,
)
from nova_autopilot.errors import EXIT_INTERRUPTED
from nova_autopilot.logs import configure as configure_logs
from nova_autopilot.reports.table import Column, table

__all__ = ["EXPECTED", "SERVERS", "CloudOptions", "UsageError", "run"]


@dataclass(frozen=True)
class Flow:
    server: str
    expected: tuple[str, str]


#: The demo's servers and what each one is staged as.
SERVERS: dict[str, Kind] = {
    "web-1": "healthy",
    "web-2": "unhealthy",
    "db-1": "failing-reboot",
    "build-1": "failing-spawn",
}
#: Each flow, the server it plays on, and what it must end as.
FLOWS: dict[str, Flow] = {
    "web-1": Flow("web-1", ("resize", "confirmed")),
    "web-2": Flow("web-2", ("resize", "reverted")),
    "db-1 rescue": Flow("db-1", ("rescue", "rescued")),
    "db-1 unrescue": Flow("db-1", ("unrescue", "unrescued")),
    "build-1": Flow("build-1", ("none", "left alone")),
}
EXPECTED = {name: flow.expected for name, flow in FLOWS.items()}
DEMO_KEY = "demo-key"

Outcome = tuple[str, str | None]


@dataclass(frozen=True)
class CloudOptions:
    """``--cloud`` and the options that go with it, as given."""

    cloud: str
    image: str | None = None
    flavor: str | None = None
    resize_flavor: str | None = None
    network: str | None = None
    fail_reboot_metadata: str | None = None
    fail_spawn_metadata: str | None = None

    def choices(self) -> dict[str, Any]:
        """The keyword arguments of :func:`nova_autopilot.demo.staging.choose`."""
        return {
            "image": self.image,
            "flavor": self.flavor,
            "resize_flavor": self.resize_flavor,
            "network": self.network,
            "fail_reboot": _metadata("--fail-reboot-metadata", self.fail_reboot_metadata),
            "fail_spawn": _metadata("--fail-spawn-metadata", self.fail_spawn_metadata),
        }


def _metadata(option: str, text: str | None) -> dict[str, str]:
    return parse_metadata(option, text) if text else {}


class Show:
    """Prints what happens, with the time since the demo started."""

    def __init__(self, out: Callable[[str], None]) -> None:
        self._out = out
        self._start = time.monotonic()

    def __call__(self, text: str) -> None:
        self._out(f"[{time.monotonic() - self._start:6.2f}s] {text}")

    def raw(self, text: str = "") -> None:
        self._out(text)


def make_stage(*, broker: str | None, cloud: CloudOptions | None) -> Stage:
    """The stage the options ask for; :class:`UsageError` when they do not fit."""
    if cloud is None:
        return SandboxStage(broker=broker)
    if not broker:
        raise UsageError(
            "--cloud needs --broker: the cloud's Nova publishes its notifications on its "
            "own RabbitMQ (the transport_url of its nova.conf), not on the in-process broker"
        )
    return CloudStage(cloud_name=cloud.cloud, broker=broker, options=cloud.choices())


def run(
    *,
    broker: str | None = None,
    cloud: CloudOptions | None = None,
    out: Callable[[str], None] = print,
) -> int:
    """Play every flow; 0 when each flow that ran ended as expected (and one ran).

    ``broker``: an oslo.messaging transport URL (``rabbit://...``). Without
    ``cloud`` it replaces the in-process broker (give the demo a vhost of its
    own); with ``cloud`` it is where that cloud's Nova sends its notifications.
    Raises :class:`UsageError` when the options do not fit the cloud."""
    configure_logs(level="ERROR", fmt="console")  # the demo shows its own progress
    stage = make_stage(broker=broker, cloud=cloud)
    show = Show(out)
    outcomes: dict[str, Outcome] = {}
    skipped: dict[str, str] = {}
    interrupted = False
    left: list[str] = []
    with tempfile.TemporaryDirectory(prefix="nova-autopilot-demo-") as tmp:
        world = _World(Path(tmp), show, stage)
        try:
            with _interrupts_as_keyboard_interrupt():
                show(f"starting {'the embedded Nova' if cloud is None else 'on ' + stage.where}")
                stage.start()
                world.start()
                world.play(outcomes, skipped)
        except KeyboardInterrupt:
            interrupted = True
            show.raw()
            show("interrupted: cleaning up")
        except StageError as exc:
            show(f"staging failed: {exc}")
        finally:
            with _ignoring_interrupts():
                left = world.stop()
        for problem in left:
            show(f"NOT CLEANED UP: {problem}")
        _history(show, world.journal_url, color=out is print and _color(sys.stdout))
    code = _verdict(show, outcomes, skipped)
    if interrupted:
        show("demo: interrupted")
        return EXIT_INTERRUPTED
    return 1 if left else code


@contextlib.contextmanager
def _interrupts_as_keyboard_interrupt() -> Iterator[None]:
    """SIGTERM ends the demo as Ctrl-C does: through its clean-up."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _ignoring_interrupts() -> Iterator[None]:
    """The clean-up runs to its end: another Ctrl-C would leave servers behind."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class _World:
    """The stage, the daemon and a requester, wired together."""

    def __init__(self, tmp: Path, show: Show, stage: Stage) -> None:
        self.tmp = tmp
        self.show = show
        self.stage = stage
        self.conf: Any = None
        self.daemon: Any = None
        self.client: Any = None
        self.journal_url = f"sqlite:///{tmp / 'journal.sqlite'}"

    def start(self) -> None:
        from nova_autopilot.bus.connection import register_oslo_options
        from nova_autopilot.daemon.wiring import Daemon, PolicyHolder, write_limiter
        from nova_autopilot.journal import Journal
        from nova_autopilot.logs import redact, redacted_document
        from nova_autopilot.security.signing import Verifier
        from nova_autopilot.settings import build_conf

        policies = self.tmp / "policies.yaml"
        policies.write_text(seed_text(self.stage.policy_file))
        conf = build_conf()
        conf(args=[], default_config_files=[])
        register_oslo_options(conf)
        conf.set_override("control_exchange", "nova")
        conf.set_override("state_dir", str(self.tmp))
        conf.set_override("poll_interval", 2, group="cloud")
        conf.set_override("port", 0, group="metrics")  # never collide with a running daemon
        self.stage.configure(conf)
        self.conf = conf
        self.key = uuid.uuid4().hex
        self.show(f"starting the daemon (journal in {self.tmp}, policies {self.stage.policy_file})")
        self.daemon = Daemon(
            conf=conf,
            policies=PolicyHolder(str(policies)),
            journal=Journal.open(self.journal_url, redact=redact, documents=redacted_document),
            cloud=self.stage.daemon_cloud(writes=write_limiter(conf)),
            verifier=Verifier({DEMO_KEY: self.key}, max_age_s=300),
        )
        if not self.daemon.start(ready_timeout=30.0):
            raise StageError("the daemon's consumers did not attach to the broker within 30s")
        self.client = self.daemon.bus.client()
        self.show(f"ready: {self.stage.where}, {len(self.daemon.policies())} policies")

    def stop(self) -> list[str]:
        """Stop the daemon first (it must not act on what is being removed),
        then remove what the stage created; what could not be removed."""
        left = []
        if self.client is not None:
            self.client.close()
        if self.daemon is not None:
            self.daemon.stop(timeout=10)
        if self.stage.shares_the_broker and self.conf is not None:
            from nova_autopilot.bus.topology import delete_notification_queues

            try:
                delete_notification_queues(self.conf)
            except Exception as exc:  # noqa: BLE001 - any broker failure is reported, not raised
                left.append(f"the demo's notification queues: {exc}")
        left[:0] = self.stage.close()
        if isinstance(self.stage, CloudStage) and self.stage.created:
            self.show(
                f"cleaned up: {len(self.stage.created)} servers deleted"
                + ("" if left else ", the demo's queues removed")
            )
        return left

    # -- the flows --------------------------------------------------------

    def play(self, outcomes: dict[str, Outcome], skipped: dict[str, str]) -> None:
        """Play the flows, filling ``outcomes`` as they end (an interruption
        keeps what was reached) and ``skipped`` with what cannot be staged."""
        stage, show = self.stage, self.show
        refused = {name: why for name, kind in SERVERS.items() if (why := stage.cannot(kind))}
        for flow_name, flow in FLOWS.items():
            if flow.server in refused:
                skipped[flow_name] = refused[flow.server]
        wanted = {name: kind for name, kind in SERVERS.items() if name not in refused}
        show.raw()
        show(f"booting {', '.join(wanted)} ...")
        servers = stage.boot(wanted)
        for server in servers.values():
            show(f"   {server.name}: {server.note}")
        for name, why in refused.items():
            show(f"   {name}: skipped: {why}")

        web1, web2 = servers.get("web-1"), servers.get("web-2")
        if web1 is not None:
            show.raw(f"\n== 1. a quota request is approved: resize web-1 to {stage.resize_flavor}")
            outcomes["web-1"] = self.resize(web1)
        if web2 is not None:
            show.raw(f"\n== 2. the same for web-2 ({web2.note})")
            outcomes["web-2"] = self.resize(web2)

        db1 = servers.get("db-1")
        if db1 is not None:
            show.raw("\n== 3. db-1 fails to boot after a reboot: Nova's notifications say ERROR")
            stage.break_boot(db1)
            outcomes["db-1 rescue"] = self.follow(
                lambda op: op.action == "rescue" and op.server_id == db1.id
            )
            if outcomes["db-1 rescue"] == FLOWS["db-1 rescue"].expected:
                show.raw("\n== 3b. the repair of db-1 is reported done")
                outcomes["db-1 unrescue"] = self.request("server.repair.done", db1.id)

        build1 = servers.get("build-1")
        if build1 is not None:
            show.raw("\n== 4. build-1's first boot failed: it never launched, so it is left alone")
            count = self.ops_on(build1.id)
            show(f"build-1 is ERROR and was never launched; operations on it: {count}")
            outcomes["build-1"] = ("none", "left alone") if count == 0 else ("some", f"{count} ops")

    def resize(self, server: Staged) -> Outcome:
        return self.request(
            "quota.request.approved",
            server.id,
            flavor=self.stage.resize_flavor,
            parameters=server.parameters,
        )

    def ops_on(self, server_id: str) -> int:
        return sum(1 for op in self.daemon.journal.history() if op.server_id == server_id)

    def request(
        self,
        kind: str,
        server_id: str,
        *,
        flavor: str | None = None,
        parameters: Mapping[str, str] | None = None,
    ) -> Outcome:
        from nova_autopilot.security.signing import sign

        body: dict[str, Any] = {
            "version": 1,
            "type": kind,
            "id": f"demo-{uuid.uuid4().hex[:12]}",
            "timestamp": datetime.now(timezone.utc).isoformat(),
            "server": {"id": server_id},
            "requested_by": "demo",
        }
        shown: dict[str, str] = {}
        if flavor:
            body["flavor"] = shown["flavor"] = flavor
        if parameters:
            body["parameters"] = dict(parameters)
            shown.update(parameters)
        detail = "".join(f" {key}={value}" for key, value in shown.items())
        self.show(f"-> request {kind}{detail} (signed with {DEMO_KEY})")
        self.client.publish_request(
            body, reply_to=self.client.reply_queue(), headers=sign(body, DEMO_KEY, self.key)
        )
        return self.follow(lambda op: op.request_id == body["id"])

    def follow(self, which: Callable[[Any], bool]) -> Outcome:
        """Print an operation's steps as the journal records them, until it ends."""
        journal = self.daemon.journal
        deadline = time.monotonic() + self.stage.step_timeout_s
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
        self.show(f"<- no end within {self.stage.step_timeout_s:.0f}s")
        return "timeout", None


def _describe(name: str, detail: dict[str, Any]) -> str:
    facts = {k: detail[k] for k in ("status", "task_state", "flavor", "target") if detail.get(k)}
    for key in ("problems", "reason", "note", "image"):
        if detail.get(key):
            facts[key] = detail[key]
    text = ", ".join(f"{k}={v}" for k, v in facts.items())
    return f"{name.replace('_', ' ')}" + (f" [{text}]" if text else "")


def _color(stream: Any) -> bool:
    """Emphasis as ``nova-autopilot history`` has it: on a terminal, unless NO_COLOR."""
    return bool(stream.isatty()) and not os.environ.get("NO_COLOR")


def _history(show: Show, journal_url: str, *, color: bool = False) -> None:
    """What the journal holds, oldest first, as ``nova-autopilot history`` prints it."""
    from nova_autopilot.journal import Journal
    from nova_autopilot.logs import redact
    from nova_autopilot.reports import history

    if not Path(journal_url.removeprefix("sqlite:///")).exists():
        return  # the daemon never started: nothing was done
    with Journal.open(journal_url, redact=redact, migrate_schema=False) as journal:
        operations = journal.history(limit=100)[::-1]
        views = [history.operation_view(op, journal.steps(op.id)) for op in operations]
    show.raw("\n== history: what the daemon did (as `nova-autopilot history` shows it)")
    show.raw(history.render(views, chains=True, color=color))


def _verdict(show: Show, outcomes: dict[str, Outcome], skipped: Mapping[str, str]) -> int:
    """The verdict of each flow; 0 when every flow that ran ended as expected and one ran."""
    show.raw("\n== verdict")
    rows: list[list[str]] = []
    ok, ran = True, 0
    for name, flow in FLOWS.items():
        if name in skipped:
            rows.append([name, f"skipped: {skipped[name]}"])
            continue
        ran += 1
        got = outcomes.get(name, ("-", None))
        match = got == flow.expected
        ok = ok and match
        mark = "" if match else "  <-- NO"
        rows.append([name, got[0], got[1] or "-", f"{flow.expected[1]}{mark}"])
    columns = [Column("flow", width=16), Column("action", width=10), Column("outcome", width=12)]
    for line in table([*columns, Column("expected")], rows, gap=" ").split("\n"):
        show.raw(line)
    show.raw("")
    if ran == 0:
        show("demo: no flow could be staged here")
        return 1
    if not ok:
        show("demo: a flow did NOT end as expected")
        return 1
    done = "every flow ended as expected"
    show(f"demo: {done}" + (f" ({len(skipped)} skipped)" if skipped else ""))
    return 0
