"""The daemon: wiring, signals, the main loop.

``Daemon.from_conf(conf)`` builds every part from the configuration
(journal, cloud, runner, engine, bus); ``run()`` starts them in order,
resumes the journal's unfinished operations, and waits for a signal:

* SIGTERM / SIGINT: stop taking messages (the broker keeps what was not
  handled), let running phases end, leave waiting operations in the journal
  (they resume at the next start), exit within ``[DEFAULT] stop_timeout``;
* SIGHUP: reload the policies, the signing keys, the authorisation table
  and the log level, all or nothing (:mod:`.reload`); a broken file keeps
  the running set of all of them and logs every problem.

Under systemd (:mod:`.systemd`) it sends READY=1 once the journal is open and
the consumers are attached, a STATUS line with live counts, WATCHDOG=1 only
while the consumers and the operation workers really work
(:mod:`.health`), RELOADING=1 around a reload and STOPPING=1 on SIGTERM.

With ``[metrics] enabled`` it serves ``/metrics``, ``/healthz``, ``/readyz``
and ``/status`` (:meth:`Daemon.status`, one section per part) over HTTP.

Every second the main loop also ends the held operations (queued, awaiting
approval) whose time is over. With ``[sweeps] enabled`` a thread of its own
sweeps Nova's server states every ``[sweeps] interval``
(:mod:`nova_autopilot.engine.sweeps`).

With ``[coordination] backend_url`` several daemons share one cloud
(docs/scaling.md): this one joins the group (:mod:`nova_autopilot.coordination`), takes the
group's lock of a server before deciding on it and keeps it while the
operation runs, claims its operations in the shared journal and renews their
leases at each heartbeat, and resumes those of a daemon that left the group
(:mod:`nova_autopilot.engine.takeover`). Periodic jobs of the whole group (sweeps, journal
retention) run on the leader only: :meth:`Daemon.is_leader`.
"""

from __future__ import annotations

import gc
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from types import FrameType
from typing import Any, Final

from oslo_config import cfg

from nova_autopilot import __version__
from nova_autopilot.actions.runner import Runner
from nova_autopilot.bus import Batched, Bus, Delivery, accept_all
from nova_autopilot.cloud import Cloud, WriteLimiter
from nova_autopilot.coordination import Coordinator
from nova_autopilot.daemon import health
from nova_autopilot.daemon.endpoints import Endpoints
from nova_autopilot.daemon.metrics import Metrics, Sources
from nova_autopilot.daemon.page import StatusPage
from nova_autopilot.daemon.reload import Reloader
from nova_autopilot.daemon.systemd import Counts, Notifier, ServiceLink
from nova_autopilot.engine.flow import Engine, Incoming
from nova_autopilot.engine.sweeps import Sweeper
from nova_autopilot.engine.takeover import Takeover
from nova_autopilot.errors import AutopilotError, CloudError, TemporaryError
from nova_autopilot.events import Event
from nova_autopilot.guards import GuardSettings
from nova_autopilot.journal import HELD_PHASES, Journal, JournalError, default_url
from nova_autopilot.logs import get_logger, redact, redacted_document
from nova_autopilot.policies import PolicySet, load_policies
from nova_autopilot.security.authorization import Authorization, AuthorizationError
from nova_autopilot.security.refusals import RefusalRecorder
from nova_autopilot.security.signing import Verifier, load_keys

log = get_logger(__name__)

STOP_TIMEOUT_S = 30.0
RETENTION_EVERY_S = 3600.0
#: How soon a prune the journal's database refused is tried again.
PRUNE_RETRY_S = 60.0
#: /healthz fails when the main loop (which turns every second) has not turned for this long.
LIVENESS_S = 30.0


#: The collector's thresholds while the daemon runs (generation 0, 1, 2).
GC_THRESHOLDS: Final = (50_000, 20, 100)


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def write_limiter(conf: cfg.ConfigOpts) -> WriteLimiter:
    """The pace of Nova write calls, from ``[guards] nova_write_rate`` and ``nova_write_burst``."""
    return WriteLimiter(float(conf.guards.nova_write_rate), int(conf.guards.nova_write_burst))


class PolicyHolder:
    """The policy set in force; swapped whole on reload."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._current = load_policies(path)

    def __call__(self) -> PolicySet:
        return self._current

    def replace(self, fresh: PolicySet) -> None:
        """Put ``fresh`` in force (a reload that read every file without a problem)."""
        self._current = fresh


class BusReporter:
    """The engine's results, published on the bus."""

    def __init__(self, bus: Bus) -> None:
        self._bus = bus

    def publish(
        self, result: Mapping[str, Any], *, correlation_id: str | None, reply_to: str | None
    ) -> None:
        action, outcome = str(result.get("action")), str(result.get("outcome"))
        if reply_to is None:
            self._bus.results.publish(
                result, action=action, outcome=outcome, correlation_id=correlation_id
            )
        else:
            self._bus.results.reply(result, correlation_id=correlation_id, reply_to=reply_to)

    def progress(
        self, update: Mapping[str, Any], *, correlation_id: str | None, reply_to: str | None
    ) -> None:
        self._bus.results.progress(
            update,
            action=str(update.get("action")),
            phase=str(update.get("phase")),
            correlation_id=correlation_id,
            reply_to=reply_to,
        )


class Daemon:
    def __init__(
        self,
        *,
        conf: cfg.ConfigOpts,
        policies: PolicyHolder,
        journal: Journal,
        cloud: Cloud,
        verifier: Verifier | None = None,
        authorization: Authorization | None = None,
        clock: Callable[[], datetime] = utc_now,
        notifier: Notifier | None = None,
        coordinator: Coordinator | None = None,
    ) -> None:
        self.conf = conf
        self.coordinator = coordinator or Coordinator(group=str(conf.coordination.group))
        self.policies = policies
        self.journal = journal
        self.cloud = cloud
        self.clock = clock
        self.authorization = authorization or Authorization(None)
        self.engine: Engine
        self.runner = Runner(
            cloud=cloud,
            store=journal,
            clock=clock,
            on_done=lambda done: self.engine.on_done(done),
            on_lost=lambda op_id: self.engine.on_lost(op_id),
            on_phase=lambda op_id, phase: self.engine.on_phase(op_id, phase),
            workers=conf.cloud.workers,
            poll_interval_s=float(conf.cloud.poll_interval),
            rescue_image=conf.cloud.rescue_image or None,
        )
        self.bus = Bus(
            conf=conf,
            notification_handler=Batched(self.handle_many),
            request_handler=self.handle,
            verify=verifier or accept_all,
            check_request=self.authorization.check_request,
            on_refused=RefusalRecorder(
                journal,
                max_bytes=conf.requests.max_message_bytes,
                max_depth=conf.intake.max_json_depth,
            ),
        )
        self.engine = Engine(
            policies=policies,
            journal=journal,
            runner=self.runner,
            clock=clock,
            reporter=BusReporter(self.bus),
            guard_settings=GuardSettings.from_conf(conf),
            global_approval=bool(conf.guards.require_approval),
            approval_timeout_s=float(conf.guards.approval_timeout),
            authorizer=self.authorization,
            coordinator=self.coordinator,
            lock_wait_s=float(conf.coordination.lock_wait),
            servers=cloud,
        )
        self.takeover = Takeover(
            journal=journal,
            coordinator=self.coordinator,
            holds=self.engine.holds,
            locks=self.engine.locks,
            runner=self.runner,
            work_of=self.engine.work_of,
            clock=clock,
        )
        self.sweeper = Sweeper(
            cloud=cloud,
            policies=policies,
            decide=self.engine.handle_events,
            clock=clock,
            interval_s=float(conf.sweeps.interval),
            leader=self.coordinator.is_leader,
        )
        self._stop = threading.Event()
        self._reload = threading.Event()
        self._wake = threading.Event()  # either of the two: the main loop looks
        self.reachability = health.Reachability(
            check=cloud.ping,
            interval_s=float(conf.metrics.cloud_check_interval),
            on_back=self._nova_back,
        )
        self.metrics = Metrics(
            Sources(
                version=__version__,
                tally=self.engine.tally.snapshot,
                intakes=lambda: [(i.health(), i.counters.snapshot()) for i in self.bus.intakes],
                nova_calls=cloud.requests.call_counts,
                in_flight=self.runner.in_flight_by_action,
                breakers=self._breaker_states,
                held=self._held,
                sweeps=self.sweeper.counts,
                leader=self.coordinator.is_leader,
                ready=lambda: self.readiness().ready,
                alive=lambda: self.liveness.check().alive,
            )
        )
        #: The sections of :meth:`status`, one per part, in order.
        self.status_sections: dict[str, Callable[[], Any]] = {
            "daemon": self._about,
            "readiness": lambda: self.readiness().as_dict(),
            "cloud": self.reachability.state,
            "operations": lambda: health.operations_section(self.runner.running(), now=clock()),
            "consumers": lambda: health.consumers_section(self.bus.health().intakes),
            "breakers": self.engine.breaker_states,
            "sweeps": self.sweeper.state,
            "coordination": self._coordination,
            "counters": lambda: health.counters_section(
                tally=self.engine.tally.snapshot(),
                bus=self.bus.counters(),
                nova_calls=cloud.requests.call_counts(),
            ),
        }
        self.endpoints: Endpoints | None = None
        self._started_at: datetime | None = None
        self._looping = False
        self._turned_at = time.monotonic()
        self.reloader = Reloader(
            conf=conf, policies=policies, verifier=verifier, authorization=self.authorization
        )
        self.liveness = health.Liveness(
            bus_health=self.bus.health,
            runner_responsive=self.runner.responsive,
            wedged_after=float(conf.wedged_after),
        )
        self.service = ServiceLink(
            notifier=notifier or Notifier.from_environment(),
            liveness=self.liveness,
            counts=self._counts,
        )

    @classmethod
    def from_conf(cls, conf: cfg.ConfigOpts) -> Daemon:
        policies = PolicyHolder(str(conf.policies.path))
        verifier = None
        if conf.requests.require_signatures:
            keys = load_keys(conf.requests.signing_keys_file)
            verifier = Verifier(
                keys,
                max_age_s=float(conf.requests.max_age),
                max_skew_s=float(conf.requests.max_clock_skew),
                max_bytes=conf.requests.max_message_bytes,
                max_depth=conf.intake.max_json_depth,
            )
        else:
            log.warning("requests.unauthenticated", note="require_signatures is off")
            if conf.requests.authorization_file:
                raise AuthorizationError(
                    "[requests] authorization_file needs require_signatures: without a "
                    "signature no request has a key to authorise"
                )
        url = conf.journal.connection or default_url(conf.state_dir)
        coordinator = Coordinator.from_conf(conf)
        if not coordinator.single and url.startswith("sqlite"):
            raise AutopilotError(
                "[coordination] backend_url needs a journal that every daemon shares: set "
                "[journal] connection to a PostgreSQL or MariaDB database (a SQLite file "
                "cannot be shared by daemons on several machines)"
            )
        journal = Journal.open(
            url,
            redact=redact,
            documents=redacted_document,
            lease=timedelta(seconds=coordinator.lock_timeout),
        )
        cloud = Cloud.connect(
            cloud=conf.cloud.cloud or None,
            region_name=conf.cloud.region_name or None,
            api_timeout=float(conf.cloud.api_timeout),
            writes=write_limiter(conf),
        )
        authorization = Authorization.from_file(conf.requests.authorization_file, cloud=cloud)
        if conf.requests.require_signatures and not authorization.enforced:
            log.warning(
                "requests.unrestricted_keys",
                note="no [requests] authorization_file: every valid signature may ask for anything",
            )
        return cls(
            conf=conf,
            policies=policies,
            journal=journal,
            cloud=cloud,
            verifier=verifier,
            authorization=authorization,
            coordinator=coordinator,
        )

    def is_leader(self) -> bool:
        """Whether the group's periodic jobs run here (always, for a single daemon)."""
        return self.coordinator.is_leader()

    def handle_many(self, messages: Sequence[tuple[Event, Delivery]]) -> list[BaseException | None]:
        """What the bus calls for the notifications at hand: decided together."""
        decided = self.engine.handle_many(
            [
                Incoming(
                    event,
                    correlation_id=delivery.correlation_id,
                    reply_to=delivery.reply_to,
                    redelivered=delivery.repeated,
                )
                for event, delivery in messages
            ]
        )
        return [outcome if isinstance(outcome, Exception) else None for outcome in decided]

    def handle(self, event: Event, delivery: Delivery) -> None:
        """What the bus calls for every request."""
        self.engine.handle(
            event,
            correlation_id=delivery.correlation_id,
            reply_to=delivery.reply_to,
            redelivered=delivery.repeated,
        )

    # -- health and status ------------------------------------------------

    def alive(self) -> bool:
        """The main loop turns (always true when the daemon runs without it)."""
        return not self._looping or time.monotonic() - self._turned_at < LIVENESS_S

    def readiness(self) -> health.Readiness:
        return health.readiness(
            intakes=self.bus.health().intakes,
            check_journal=self.journal.check_writable,
            cloud=self.reachability.state(),
            coordination=self.coordinator.problem(),
        )

    def status(self) -> dict[str, Any]:
        """Every section of :attr:`status_sections`; one that fails says why."""
        document: dict[str, Any] = {}
        for name, section in self.status_sections.items():
            try:
                document[name] = section()
            except AutopilotError as exc:
                document[name] = {"error": str(exc)}
        return document

    def _breaker_states(self) -> dict[str, str]:
        """For the metrics: a journal out of reach leaves the gauge out of this scrape."""
        try:
            return self.engine.breaker_states()
        except JournalError as exc:
            log.warning("metrics.breakers_unreadable", error=str(exc))
            return {}

    def _held(self) -> dict[str, int]:
        """For the metrics: the held operations by phase, as the journal holds them;
        a journal out of reach leaves the gauge out of this scrape."""
        try:
            return self.journal.count_unfinished_in(HELD_PHASES)
        except JournalError as exc:
            log.warning("metrics.held_unreadable", error=str(exc))
            return {}

    def _coordination(self) -> dict[str, Any]:
        c = self.coordinator
        return {
            "backend": "none" if c.single else c.url.split(":", 1)[0],
            "member_id": c.member_id,
            "group": c.group,
            "leader": c.is_leader(),
            "members": sorted(c.members()),
            "server_locks": self.engine.locks.owned(),
        }

    def _about(self) -> dict[str, Any]:
        started = self._started_at
        return {
            "version": __version__,
            "pid": os.getpid(),
            "started_at": started.isoformat() if started else None,
            "uptime_s": round((self.clock() - started).total_seconds(), 3) if started else None,
            "policies": len(self.policies()),
            "dry_run": bool(self.conf.guards.dry_run),
            "endpoints": self.endpoints.url if self.endpoints else None,
        }

    def _serve(self) -> None:
        metrics = self.conf.metrics
        if not metrics.enabled:
            return
        try:
            self.endpoints = Endpoints(
                host=metrics.bind_host,
                port=int(metrics.port),
                metrics=self.metrics.exposition,
                alive=self.alive,
                readiness=self.readiness,
                status=self.status,
                page=StatusPage(status=self.status, journal=self.journal, clock=self.clock).render,
            )
        except OSError as exc:
            raise AutopilotError(
                f"cannot serve the endpoints on {metrics.bind_host} port {metrics.port} "
                f"([metrics] bind_host, port): {exc}"
            ) from None
        self.endpoints.start()

    # -- life cycle -------------------------------------------------------

    def start(self, *, ready_timeout: float = 60.0) -> bool:
        """Start everything; True once the consumers are attached."""
        self._started_at = self.clock()
        self._serve()
        try:
            self.cloud.check()
        except CloudError as exc:
            log.warning("cloud.unreachable", error=str(exc))
            self.reachability.record(ok=False, error=str(exc))
        else:
            self.reachability.record(ok=True)
        self.reachability.start()
        self.coordinator.start()
        self.runner.start()
        resumed = self.engine.resume() if self.coordinator.single else self.takeover.run()
        self.bus.start()
        ready = self._wait_ready(ready_timeout)
        if self.conf.sweeps.enabled:
            self.sweeper.start()
        log.info("daemon.started", ready=ready, resumed=resumed, policies=len(self.policies()))
        return ready

    def _wait_ready(self, timeout: float) -> bool:
        """Wait for the consumers, telling systemd how the start goes meanwhile."""
        deadline = self.clock() + timedelta(seconds=timeout)
        while not self.bus.wait_ready(self.service.tick_s):
            self.service.tick(ready=False)
            if self._stop.is_set() or self.clock() >= deadline:
                return False
        return True

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        self.service.stopping()
        deadline = self.clock() + timedelta(seconds=timeout)
        self.sweeper.stop(timeout=timeout / 4)
        clean = self.bus.stop(timeout=timeout / 2)
        remaining = max(1.0, (deadline - self.clock()).total_seconds())
        self.runner.stop(timeout=remaining)
        # The results of operations that ended while the runner stopped leave now.
        self.bus.results.close(timeout=max(1.0, (deadline - self.clock()).total_seconds()))
        if not self.coordinator.single:
            try:  # the others may take the operations left waiting over at once
                self.journal.release(self.coordinator.member_id)
            except JournalError as exc:
                log.warning("journal.release_failed", error=str(exc))
        self.coordinator.stop()
        self.reachability.stop()
        if self.endpoints is not None:
            self.endpoints.stop()
        self.journal.close()
        self.cloud.close()
        log.info("daemon.stopped", clean=clean)

    def request_stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def request_reload(self) -> None:
        self._reload.set()
        self._wake.set()

    def run(self) -> int:
        """Run until SIGTERM/SIGINT; SIGHUP reloads policies, keys and log level."""
        self._install_signals()
        # What is there before the start (the modules, their tables, the settings) stays
        # for the process's life: frozen out of the collector's sight, so that its full
        # collections only go through what the daemon makes while it runs, not through
        # all of openstacksdk and oslo. A busy daemon makes and drops thousands of
        # objects a message: the collector runs after 50,000, not 700 (in all, a busy
        # daemon spent a fifth of its time collecting, and now half of that).
        gc.collect()
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
        self.start()
        next_prune = next_beat = next_takeover = self.clock()
        self._looping = True
        while True:
            self._turned_at = time.monotonic()
            self.service.tick(ready=self.bus.wait_ready(0))
            self._wake.wait(timeout=self.service.tick_s)
            self._wake.clear()
            if self._stop.is_set():
                break
            self.engine.expire_due()
            if self._reload.is_set():
                self._reload.clear()
                self.service.reloading()
                self.reloader.reload()
                self.service.reloaded()
                continue
            if self.clock() >= next_prune and self.is_leader():
                pruned = self._prune()
                every = RETENTION_EVERY_S if pruned else PRUNE_RETRY_S
                next_prune = self.clock() + timedelta(seconds=every)
            if not self.coordinator.single:
                if self.clock() >= next_beat:
                    self._renew_leases()
                    next_beat = self.clock() + timedelta(seconds=self.coordinator.heartbeat_s)
                if self.clock() >= next_takeover:
                    self._take_over()
                    interval = float(self.conf.coordination.takeover_interval)
                    next_takeover = self.clock() + timedelta(seconds=interval)
        self.stop(timeout=float(self.conf.stop_timeout))
        return 0

    def _counts(self) -> Counts:
        counters = self.bus.counters().values()
        return Counts(
            in_flight=self.runner.in_flight(),
            waiting=self.runner.waiting(),
            handled=sum(c.handled for c in counters),
            dead_lettered=sum(c.dead_lettered_total for c in counters),
            consumers=[(i.name, i.attached) for i in self.bus.health().intakes],
        )

    def _nova_back(self) -> None:
        """Nova answers again: the operations waiting out a retry delay (most of them
        because it did not answer) run now, not up to a couple of minutes later."""
        woken = self.runner.retry_now()
        if woken:
            log.info("operations.retried_now", operations=woken, why="Nova answers again")

    def _renew_leases(self) -> None:
        """Keep this daemon's claims on its operations in the journal."""
        until = self.clock() + timedelta(seconds=self.coordinator.lock_timeout)
        try:
            self.journal.renew(self.coordinator.member_id, until=until)
        except JournalError as exc:
            log.warning("journal.renew_failed", error=str(exc))

    def _take_over(self) -> None:
        try:
            self.takeover.run()
        except TemporaryError as exc:  # the database or the backend is away: next time
            log.warning("takeover.failed", error=str(exc))

    def _prune(self) -> bool:
        """Forget what is older than the retention; False when the journal's database
        is away (tried again sooner than the next hour)."""
        days = int(self.conf.journal.retention_days)
        if days <= 0:
            return True
        cutoff = self.clock() - timedelta(days=days)
        try:
            removed = self.journal.prune(finished_before=cutoff)
            keys = self.journal.prune_processed(older_than=cutoff)
            refusals = self.journal.prune_refusals(older_than=cutoff)
        except TemporaryError as exc:
            log.warning("journal.prune_failed", error=str(exc), retry_in_s=PRUNE_RETRY_S)
            return False
        if removed or keys or refusals:
            log.info("journal.pruned", operations=removed, message_keys=keys, refusals=refusals)
        return True

    def _install_signals(self) -> None:
        def on_stop(signum: int, frame: FrameType | None) -> None:
            log.info("daemon.stopping", signal=signal.Signals(signum).name)
            self.request_stop()

        def on_hup(signum: int, frame: FrameType | None) -> None:
            self.request_reload()

        signal.signal(signal.SIGTERM, on_stop)
        signal.signal(signal.SIGINT, on_stop)
        signal.signal(signal.SIGHUP, on_hup)
