"""What systemd hears: READY=1 only once ready, WATCHDOG=1 only while the
consumers turn, no handler is stuck and the operation workers answer; each
change between alive and wedged logged; a status line with live counts."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone

from structlog.testing import capture_logs

from nova_autopilot.actions.runner import Runner, Work
from nova_autopilot.bus import BusHealth, IntakeHealth
from nova_autopilot.daemon.health import Liveness
from nova_autopilot.daemon.systemd import Counts, Notifier, ServiceLink, status_line
from nova_autopilot.policies.model import Confirm
from tests.unit.fakes import FakeCloud, FakeServer, MemoryStore


def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


def intake(name: str, *, attached: bool = True, alive: bool = True,
           oldest: float | None = None, error: str | None = None,
           detached: float | None = None, reconnecting: bool = False) -> IntakeHealth:  # fmt: skip
    return IntakeHealth(
        name=name, source=name, queue=name, broker="amqp://127.0.0.1:5672//", alive=alive,
        attached=attached, connected_since=None, reconnects=0, last_error=error,
        in_flight=0 if oldest is None else 1, oldest_in_flight_s=oldest, detached_for_s=detached,
        reconnecting=reconnecting,
    )  # fmt: skip


class Daemon:
    """The parts the service link looks at, set by each test."""

    def __init__(self) -> None:
        self.intakes = [intake("notifications"), intake("requests")]
        self.runner_ok = True

    def health(self) -> BusHealth:
        return BusHealth(alive=all(i.alive for i in self.intakes), intakes=tuple(self.intakes))

    def liveness(self, wedged_after: float = 20.0) -> Liveness:
        return Liveness(
            bus_health=self.health,
            runner_responsive=lambda within: self.runner_ok,
            wedged_after=wedged_after,
        )


class Recorder(Notifier):
    """A notifier that keeps what it would have sent."""

    def __init__(self, watchdog_s: float | None = 10.0) -> None:
        super().__init__("/nonexistent", watchdog_s=watchdog_s)
        self.sent: list[dict[str, str]] = []

    def notify(self, **fields: object) -> bool:
        self.sent.append({name: str(value) for name, value in fields.items()})
        return True

    def kinds(self) -> list[str]:
        return [next(iter(message)) for message in self.sent]


COUNTS = Counts(in_flight=2, waiting=1, handled=15, dead_lettered=0,
                consumers=[("notifications", True), ("requests", True)])  # fmt: skip


def link(daemon: Daemon, notifier: Recorder, clock: list[float]) -> ServiceLink:
    return ServiceLink(
        notifier=notifier, liveness=daemon.liveness(), counts=lambda: COUNTS,
        clock=lambda: clock[0],
    )  # fmt: skip


def test_ready_goes_out_once_and_only_when_the_daemon_says_it_is_ready() -> None:
    daemon, notifier, clock = Daemon(), Recorder(), [0.0]
    daemon.intakes[1] = intake("requests", attached=False, error="AccessRefused: 403")
    service = link(daemon, notifier, clock)
    service.tick(ready=False)
    assert notifier.kinds() == ["STATUS"]
    assert (
        "requests consumer not attached and not reconnecting (AccessRefused: 403)"
        in (notifier.sent[0]["STATUS"])
    )
    assert notifier.sent[0]["STATUS"].startswith("starting")

    daemon.intakes[1] = intake("requests")
    service.tick(ready=True)
    assert notifier.sent[-1]["READY"] == "1"
    assert notifier.sent[-1]["STATUS"].startswith("running: 2 operations in flight")
    service.tick(ready=True)
    assert notifier.kinds().count("READY") == 1


def test_watchdog_pings_every_half_interval_while_alive_and_stop_while_wedged() -> None:
    daemon, notifier, clock = Daemon(), Recorder(watchdog_s=10.0), [0.0]
    service = link(daemon, notifier, clock)
    service.tick(ready=True)
    for moment in (0.0, 1.0, 4.9, 5.0, 9.0, 10.0):
        clock[0] = moment
        service.tick(ready=True)
    assert notifier.kinds().count("WATCHDOG") == 3  # at 0, 5 and 10

    daemon.intakes[1] = intake("requests", oldest=25.0)  # a handler stuck 25 s > 20 s
    for moment in (15.0, 20.0, 25.0, 30.0):
        clock[0] = moment
        service.tick(ready=True)
    assert notifier.kinds().count("WATCHDOG") == 3
    assert "WEDGED (requests handler wedged for 25 s)" in notifier.sent[-1]["STATUS"]

    daemon.intakes[1] = intake("requests")
    clock[0] = 31.0
    service.tick(ready=True)
    assert notifier.kinds()[-1] == "WATCHDOG"
    assert notifier.sent[-2]["STATUS"].startswith("running")


def test_a_detached_consumer_or_unresponsive_workers_stop_the_pings_too() -> None:
    daemon = Daemon()
    assert daemon.liveness().check().alive
    daemon.intakes[0] = intake("notifications", alive=False)
    assert daemon.liveness().check().problems == ("notifications consumer not turning",)
    daemon.intakes[0] = intake("notifications", attached=False, alive=False)
    assert daemon.liveness().check().problems == (
        "notifications consumer not attached and not reconnecting",
    )
    daemon.intakes[0] = intake("notifications")
    daemon.runner_ok = False
    pulse = daemon.liveness(wedged_after=20).check()
    assert pulse.problems == ("operation workers wedged (no free worker within 20 s)",)
    daemon.runner_ok = True
    daemon.intakes[0] = intake("notifications", oldest=19.9)
    assert daemon.liveness(wedged_after=20).check().alive


def test_no_watchdog_no_pings_and_the_loop_ticks_each_second() -> None:
    daemon, notifier, clock = Daemon(), Recorder(watchdog_s=None), [0.0]
    service = link(daemon, notifier, clock)
    service.tick(ready=True)
    service.tick(ready=True)
    assert "WATCHDOG" not in notifier.kinds()
    assert service.tick_s == 1.0
    assert link(daemon, Recorder(watchdog_s=2.0), clock).tick_s == 0.5


def test_reload_and_stop_are_announced() -> None:
    daemon, notifier, clock = Daemon(), Recorder(), [0.0]
    service = link(daemon, notifier, clock)
    service.tick(ready=True)
    service.reloading()
    service.reloaded()
    service.stopping()
    assert notifier.kinds()[-3:] == ["RELOADING", "READY", "STOPPING"]
    assert "MONOTONIC_USEC" in notifier.sent[-3]
    assert notifier.sent[-1]["STATUS"].startswith("stopping: 2 operations in flight")


def test_a_reload_before_the_start_is_over_announces_no_readiness() -> None:
    daemon, notifier, clock = Daemon(), Recorder(), [0.0]
    service = link(daemon, notifier, clock)
    service.tick(ready=False)
    service.reloading()
    service.reloaded()
    assert notifier.kinds() == ["STATUS"]


def test_the_status_line_reads_as_a_sentence() -> None:
    one = Counts(in_flight=1, waiting=0, handled=1, dead_lettered=3,
                 consumers=[("notifications", True), ("requests", False)])  # fmt: skip
    assert status_line("running", one) == (
        "running: 1 operation in flight (0 waiting), 1 message handled, 3 dead-lettered, "
        "consumers: notifications attached, requests detached"
    )


def test_the_runner_counts_as_wedged_when_every_worker_is_stuck_in_a_phase() -> None:
    gate, stuck = threading.Event(), threading.Semaphore(0)
    cloud = FakeCloud()
    for index in range(2):
        cloud.add(FakeServer(id=f"server-{index}", name=f"web-{index}", flavor="m1.small"))

    def hang(call: str) -> None:  # Nova does not answer
        if call == "server":
            stuck.release()
            gate.wait(30)

    cloud.on_call = hang
    runner = Runner(
        cloud=cloud, store=MemoryStore(), clock=lambda: datetime.now(timezone.utc),
        on_done=lambda done: None, workers=2,
    )  # fmt: skip
    runner.start()
    try:
        assert runner.responsive(0.05)
        until(lambda: runner.responsive(0.05))
        for index in range(2):
            runner.submit(Work(f"op-{index}", "resize",
                               {"server": {"id": f"server-{index}"}, "flavor": "m1.large"},
                               Confirm(timeout_s=60), datetime.now(timezone.utc)))  # fmt: skip
        assert stuck.acquire(timeout=10)
        assert stuck.acquire(timeout=10)
        until(lambda: not runner.responsive(0.05))
        gate.set()
        until(lambda: runner.responsive(0.05))
    finally:
        gate.set()
        runner.stop(timeout=5)
    assert not runner.responsive(0.05)


def test_a_consumer_reconnecting_for_less_than_wedged_after_is_a_warning_not_a_wedge() -> None:
    """A one-second broker reconnect: the pings go on, the status line says it, a
    warning says it once; only a consumer detached for wedged_after stops them."""
    daemon, notifier, clock = Daemon(), Recorder(watchdog_s=10.0), [0.0]
    service = link(daemon, notifier, clock)
    service.tick(ready=True)
    daemon.intakes[0] = intake(
        "notifications", attached=False, alive=False, detached=1.0, error="ConnectionResetError"
    )
    with capture_logs() as logs:
        for moment in (5.0, 10.0, 15.0):
            clock[0] = moment
            service.tick(ready=True)

    assert notifier.kinds().count("WATCHDOG") == 3  # at 5, 10 and 15: never stopped
    (status,) = [m["STATUS"] for m in notifier.sent if "not attached" in m.get("STATUS", "")]
    assert status.startswith("running")
    assert "notifications consumer not attached for 1 s (ConnectionResetError)" in status
    assert [(e["event"], e["log_level"]) for e in logs] == [("service.degraded", "warning")]

    daemon.intakes[0] = intake("notifications", attached=False, alive=False, detached=20.0)
    with capture_logs() as logs:
        clock[0] = 20.0
        service.tick(ready=True)
    assert notifier.kinds().count("WATCHDOG") == 3  # wedged: no ping at 20
    assert [e["event"] for e in logs] == ["service.wedged"]


def test_a_broker_outage_however_long_is_no_wedge_while_the_consumer_keeps_reconnecting() -> None:
    """Two minutes without the broker, the consumer trying all along: the pings go on
    (a restart would not bring the broker back) and the status says why it is not
    ready; once its thread stops trying, it is a wedge."""
    daemon, notifier, clock = Daemon(), Recorder(watchdog_s=10.0), [0.0]
    service = link(daemon, notifier, clock)
    service.tick(ready=True)
    with capture_logs() as logs:
        for moment in range(5, 125, 5):
            clock[0] = float(moment)
            daemon.intakes[0] = intake(
                "notifications",
                attached=False,
                alive=False,
                detached=float(moment),
                error="ConnectionRefusedError: [Errno 111] Connection refused",
                reconnecting=True,
            )
            service.tick(ready=False)

    assert notifier.kinds().count("WATCHDOG") == 24  # every 5 s for two minutes
    assert "service.wedged" not in [e["event"] for e in logs]
    status = [m["STATUS"] for m in notifier.sent if "STATUS" in m][-1]
    assert status.startswith("running")
    assert "notifications consumer not attached for 120 s (ConnectionRefusedError" in status

    daemon.intakes[0] = intake("notifications", attached=False, alive=False, detached=125.0)
    with capture_logs() as logs:
        clock[0] = 125.0
        service.tick(ready=False)
    assert notifier.kinds().count("WATCHDOG") == 24
    assert [e["event"] for e in logs] == ["service.wedged"]
