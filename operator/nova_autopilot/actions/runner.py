"""Runs operations: one phase at a time on a small worker pool, waiting
without a thread per operation.

A parked operation is only an entry in a table keyed by server id. It wakes
when the server's own notification arrives (:meth:`Runner.notify`), when the
batched poll (one ``changes-since`` list call for every waiting server) shows
the server changed, when its retry delay passes, or at its deadline. A
notification that arrives while a phase runs (between its read of the server
and its park) is not lost: the runner keeps the latest notifications of every
server, and a phase about to park first looks there for one that wakes it.
The first step a woken phase records says what woke it (``woken_by``:
``notification`` with its event type, ``poll`` or ``timer``). After every
phase the machine's state is written to the store, so a restarted daemon
resumes each unfinished operation from its phase.

A phase that meets a temporary failure (Nova out of reach, a 5xx) runs again
after a delay that doubles with each attempt, until the operation's deadline.
One that failed while asking Nova for its write does not ask again at once: the
request may have reached Nova and only its answer been lost, so the machine's
first phase runs instead, and finds out from Nova, as after a restart.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from nova_autopilot.actions import registry
from nova_autopilot.actions.common import asking, release_lock
from nova_autopilot.actions.gate import SocketProbe
from nova_autopilot.actions.machine import (
    CloudAPI,
    Finish,
    Next,
    Probe,
    StepContext,
    Transition,
    Wait,
)
from nova_autopilot.cloud import CALLS_KEPT, RequestCounter, ServerState, counting_for
from nova_autopilot.errors import PermanentError, TemporaryError
from nova_autopilot.events import Event
from nova_autopilot.journal import OperationFinished, StaleOperation, StateKey
from nova_autopilot.logs import get_logger
from nova_autopilot.policies.model import Confirm

log = get_logger(__name__)

#: How far before the last read the batched poll looks (clock skew with Nova).
POLL_SKEW_S = 10.0
RETRY_BASE_S = 2.0
RETRY_CAP_S = 120.0
#: Notifications kept per server in flight, for a phase that looks back for Nova's reason.
RECENT_EVENTS = 32
#: The latest notifications of every server, for a phase about to park: one may have
#: come while it ran, before its server was known to the runner.
LATEST_EVENTS = 4096

#: What woke a parked phase, as its first step records it (``woken_by``).
Wake = str
NOTIFICATION: Wake = "notification"
POLL: Wake = "poll"
TIMER: Wake = "timer"
#: Nova answered again while the phase waited out a retry delay (:meth:`Runner.retry_now`).
RECOVERY: Wake = "recovery"


class Store(Protocol):
    """The part of the journal the runner writes."""

    def advance(
        self, op_id: str, *, phase: str, state: dict[str, Any], expect_version: int, now: datetime
    ) -> Any: ...
    def record_step(
        self, op_id: str, *, name: str, detail: dict[str, Any], nova_requests: int, now: datetime
    ) -> None: ...
    def finish(
        self,
        op_id: str,
        *,
        outcome: str,
        reason: str | None,
        expect_version: int | None,
        now: datetime,
    ) -> Any: ...
    def place(
        self, op_id: str, *, host: str | None, availability_zone: str | None, now: datetime
    ) -> None: ...


class PolledCloud(CloudAPI, Protocol):
    requests: RequestCounter

    def changed_since(self, since: datetime) -> list[ServerState]: ...


@dataclass(frozen=True, slots=True)
class Work:
    """An operation to run (new, or resumed from the journal)."""

    op_id: str
    action: str
    params: Mapping[str, Any]
    confirm: Confirm
    started_at: datetime
    phase: str | None = None
    state: Mapping[str, Any] = field(default_factory=dict)
    version: int = 0


@dataclass(frozen=True, slots=True)
class Done:
    """What the runner reports when an operation ends."""

    op_id: str
    outcome: str
    reason: str | None
    server_id: str | None
    nova_requests: int
    secrets: Mapping[str, str]


class _StepRequests:
    """An operation's Nova requests since the last step took them."""

    def __init__(self, counter: RequestCounter, op_id: str) -> None:
        self._counter = counter
        self._op_id = op_id
        self._mark = counter.for_operation(op_id)
        counter.take_calls(op_id)  # calls of an earlier run belong to its steps

    def take(self) -> tuple[int, list[dict[str, Any]]]:
        total = self._counter.for_operation(self._op_id)
        count, self._mark = total - self._mark, total
        return count, [call.as_dict() for call in self._counter.take_calls(self._op_id)]


@dataclass(slots=True)
class _Pending:
    """A step a phase recorded, with the Nova requests made since the one before."""

    name: str
    detail: dict[str, Any]
    requests: int
    calls: list[dict[str, Any]]
    at: datetime

    def add(self, requests: int, calls: list[dict[str, Any]]) -> None:
        self.requests += requests
        self.calls.extend(calls)

    def document(self) -> dict[str, Any]:
        """The detail to store: the action's, plus the calls (``calls_omitted``
        counts those beyond what the counter keeps)."""
        if not self.requests:
            return self.detail
        document = {**self.detail, "calls": self.calls[:CALLS_KEPT]}
        omitted = self.requests - len(document["calls"])
        if omitted > 0:
            document["calls_omitted"] = omitted
        return document


@dataclass(frozen=True, slots=True)
class Running:
    """An operation in the runner's table, for ``status``."""

    op_id: str
    action: str
    server_id: str | None
    phase: str
    started_at: datetime
    waiting: bool
    attempts: int


@dataclass(eq=False)
class _Job:
    work: Work
    phase: str
    state: dict[str, Any]
    version: int
    lock: threading.Lock = field(default_factory=threading.Lock)
    wait: Wait | None = None
    generation: int = 0
    last_read: datetime | None = None
    attempts: int = 0
    #: Parked for a retry delay after a temporary failure (:meth:`Runner._retry_later`).
    retrying: bool = False
    seen_seq: int = 0
    placed: bool = False
    secrets: dict[str, str] = field(default_factory=dict)

    @property
    def server_id(self) -> str | None:
        value = self.state.get(StateKey.SERVER_ID)
        return str(value) if value else None

    @property
    def deadline(self) -> datetime:
        return self.work.started_at + timedelta(seconds=self.work.confirm.timeout_s)


def _wake_note(woken_by: Wake | None, event: Event | None) -> dict[str, Any] | None:
    """What the first step of a woken phase says woke it."""
    if woken_by is None:
        return None
    if woken_by == NOTIFICATION and event is not None:
        return {"by": NOTIFICATION, "event": event.event_type}
    return {"by": woken_by}


def _nothing() -> None:
    """The task that shows a worker of the pool is free to run one."""


def wakes(wait: Wait, event: Event) -> bool:
    """Whether this event of the waiting server should wake it."""
    if event.event_type in wait.events:
        return True
    if event.event_type == "instance.update" and wait.states:
        payload = event.payload
        return payload.get("state") in wait.states and payload.get("task_state") is None
    return False


def settled_for(wait: Wait, server: ServerState) -> bool:
    """Whether a polled server shows what the wait is for (the same rule as for
    ``instance.update``): a vm_state it waits for, with no task in progress."""
    if not wait.states:
        return True
    return server.vm_state in wait.states and server.task_state is None


class Runner:
    def __init__(
        self,
        *,
        cloud: PolledCloud,
        store: Store,
        clock: Callable[[], datetime],
        on_done: Callable[[Done], None],
        on_lost: Callable[[str], None] | None = None,
        on_phase: Callable[[str, str], None] | None = None,
        probe: Probe | None = None,
        workers: int = 4,
        poll_interval_s: float = 30.0,
        rescue_image: str | None = None,
        retry_base_s: float = RETRY_BASE_S,
    ) -> None:
        self._cloud = cloud
        self._store = store
        self._clock = clock
        self._on_done = on_done
        self._on_lost = on_lost
        self._on_phase = on_phase
        self._probe = probe or SocketProbe()
        self._poll_interval_s = poll_interval_s
        self._rescue_image = rescue_image
        self._retry_base_s = retry_base_s
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="autopilot-step")
        self._cond = threading.Condition()
        self._jobs: dict[str, _Job] = {}
        self._parked: dict[str, set[_Job]] = {}
        # Notifications about servers with operations in flight, kept briefly so
        # that one arriving while a phase still runs is not missed when it parks.
        self._by_server: dict[str, set[_Job]] = {}
        self._recent: dict[str, deque[tuple[int, Event]]] = {}
        self._latest: deque[tuple[int, Event]] = deque(maxlen=LATEST_EVENTS)
        self._event_seq = 0
        self._timers: list[tuple[datetime, int, _Job, int]] = []
        self._seq = itertools.count()
        self._stopping = False
        self._last_poll = clock()
        self._thread = threading.Thread(target=self._schedule, name="autopilot-timers", daemon=True)
        self._ping_lock = threading.Lock()
        self._ping: Future[None] | None = None
        self._ping_sent = 0.0

    # -- public -----------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Take no new work, let running phases end; parked operations stay
        in the store and resume at the next start."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout)
        self._pool.shutdown(wait=True, cancel_futures=True)

    def submit(self, work: Work) -> None:
        machine = registry.MACHINES[work.action]
        job = _Job(work, work.phase or machine.first, dict(work.state), work.version)
        with self._cond:
            if self._stopping or work.op_id in self._jobs:
                return
            self._jobs[work.op_id] = job
        self._dispatch(job, None, None)

    def resume(self, works: Iterable[Work]) -> int:
        count = 0
        for work in works:
            self.submit(work)
            count += 1
        return count

    def notify(self, event: Event) -> int:
        """Wake the operations waiting on this event's server; how many woke."""
        if event.instance_id is None:
            return 0
        woken = []
        with self._cond:
            self._event_seq += 1
            self._latest.append((self._event_seq, event))
            if event.instance_id in self._by_server:
                recent = self._recent.setdefault(event.instance_id, deque(maxlen=RECENT_EVENTS))
                recent.append((self._event_seq, event))
            for job in list(self._parked.get(event.instance_id, ())):
                if job.wait is not None and wakes(job.wait, event):
                    self._unpark(job)
                    woken.append(job)
        for job in woken:
            self._dispatch(job, event, None, NOTIFICATION)
        return len(woken)

    def responsive(self, within_s: float) -> bool:
        """Whether the runner can still make progress: its timer thread runs and
        its worker pool ran the last trivial task it was given within
        ``within_s`` seconds. Each call after that task ran hands it a new one,
        so a pool whose every worker is stuck shows within ``within_s``."""
        if self._stopping or not self._thread.is_alive():
            return False
        now = time.monotonic()
        with self._ping_lock:
            if self._ping is not None and not self._ping.done():
                return now - self._ping_sent < within_s
            try:
                self._ping = self._pool.submit(_nothing)
            except RuntimeError:  # the pool was shut down
                return False
            self._ping_sent = now
            return True

    def in_flight(self) -> int:
        with self._cond:
            return len(self._jobs)

    def running(self) -> list[Running]:
        """The operations in flight, oldest first."""
        with self._cond:
            jobs = list(self._jobs.values())
            table = [
                Running(
                    job.work.op_id,
                    job.work.action,
                    job.server_id,
                    job.phase,
                    job.work.started_at,
                    job.wait is not None,
                    job.attempts,
                )
                for job in jobs
            ]
        return sorted(table, key=lambda r: r.started_at)

    def in_flight_by_action(self) -> dict[str, int]:
        """How many operations of each known action are in flight (zeros included)."""
        counts = dict.fromkeys(registry.MACHINES, 0)
        with self._cond:
            for job in self._jobs.values():
                counts[job.work.action] = counts.get(job.work.action, 0) + 1
        return counts

    def waiting(self) -> int:
        with self._cond:
            return sum(len(jobs) for jobs in self._parked.values())

    # -- running phases ---------------------------------------------------

    def _dispatch(
        self,
        job: _Job,
        event: Event | None,
        snapshot: ServerState | None,
        woken_by: Wake | None = None,
    ) -> None:
        """Run the job's phase on the pool: started or resumed (``woken_by`` None), or
        woken by the server's notification (``event``), the poll (``snapshot``) or a
        timer."""
        # A shut-down pool refuses work: the journal keeps the phase for the next start.
        with contextlib.suppress(RuntimeError):
            self._pool.submit(self._run, job, event, snapshot, woken_by)

    def _run(
        self,
        job: _Job,
        event: Event | None,
        snapshot: ServerState | None,
        woken_by: Wake | None = None,
    ) -> None:
        with job.lock, counting_for(job.work.op_id):
            try:
                self._steps(job, event, snapshot, woken_by)
            except (StaleOperation, OperationFinished) as exc:
                self._lose(job, exc)
            except TemporaryError as exc:
                # The journal took no write (its database is away): the phase runs
                # again after a delay, as it would after a restart, from what the
                # journal last holds of it, and writes then. A phase's own temporary
                # failures (Nova's) are handled in _steps; this is the writes'.
                log.warning(
                    "operation.journal_unavailable",
                    operation_id=job.work.op_id,
                    phase=job.phase,
                    error=str(exc),
                )
                self._retry_later(job)
            except Exception:  # a bug must not kill the worker
                log.exception("operation.crashed", operation_id=job.work.op_id)
                self._finish(job, Finish("failed", "internal error: see the daemon's log"))

    def _steps(
        self,
        job: _Job,
        event: Event | None,
        snapshot: ServerState | None,
        woken_by: Wake | None = None,
    ) -> None:
        machine = registry.MACHINES[job.work.action]
        since_step = _StepRequests(self._cloud.requests, job.work.op_id)
        pending: list[_Pending] = []
        wake = _wake_note(woken_by, event)
        ctx = StepContext(
            operation_id=job.work.op_id,
            cloud=self._cloud,
            params=job.work.params,
            confirm=job.work.confirm,
            state=job.state,
            started_at=job.work.started_at,
            clock=self._clock,
            probe=self._probe,
            record=lambda name, detail: pending.append(
                _Pending(name, detail, *since_step.take(), at=self._clock())
            ),
            checkpoint=lambda: self._persist(job),
            rescue_image=self._rescue_image,
            woken_by=event,
            recent=lambda: self._recent_events(job.server_id),
            snapshot=snapshot,
            secrets=job.secrets,
        )
        while True:
            phase = job.phase
            with self._cond:
                job.seen_seq = self._event_seq
            try:
                transition: Transition = machine.phases[phase](ctx)
            except TemporaryError as exc:
                self._flush(job, pending, since_step, f"{phase}.retry", {"error": str(exc)}, wake)
                if self._clock() < job.deadline:
                    if asking(job.state):
                        # A write failed without an answer: Nova may have taken it
                        # (the API went away in the middle of the call). The retry
                        # starts from the first phase, which finds out from Nova, as
                        # after a restart; asked again, a request Nova already runs
                        # would be refused (409) and end the operation refused.
                        job.phase = machine.first
                    self._retry_later(job)
                    return
                # Past its deadline a phase that cannot read Nova ends: retried, it
                # would run again at once, the deadline being its every timer.
                wake = None
                transition = Finish("timed_out", f"{phase}: past the deadline, {exc}")
            except PermanentError as exc:
                transition = Finish("failed", f"{phase}: {exc}")
            if isinstance(transition, Finish):
                release_lock(ctx)
            job.last_read = self._clock()
            self._watch(job)
            self._place(job)
            ctx.woken_by = None  # a snapshot left unread stays: it is still this moment's
            wake = self._flush(job, pending, since_step, phase, {}, wake)
            if isinstance(transition, Next):
                job.phase = transition.phase
                job.attempts = 0
                self._persist(job)
                self._moved(job, phase)
                continue
            if isinstance(transition, Wait):
                job.phase = transition.phase
                job.attempts = 0
                self._persist(job)
                self._moved(job, phase)
                missed = self._park(job, transition)
                if missed is not None:
                    self._dispatch(job, missed, None, NOTIFICATION)
                return
            self._finish(job, transition)
            return

    def _flush(
        self,
        job: _Job,
        pending: list[_Pending],
        since_step: _StepRequests,
        fallback: str,
        detail: dict[str, Any],
        wake: dict[str, Any] | None = None,
    ) -> dict[str, Any] | None:
        """Write the phase's steps, each with the Nova requests made up to it;
        those made after the last one go with it. The first step written says what
        woke the phase (``wake``); the note is returned while no step took it."""
        requests, calls = since_step.take()
        if not pending and (requests or detail):
            pending.append(_Pending(fallback, detail, 0, [], at=self._clock()))
        if pending:
            pending[-1].add(requests, calls)
            if wake is not None:
                pending[0].detail = {**pending[0].detail, "woken_by": wake}
                wake = None
        for step in pending:
            self._store.record_step(
                job.work.op_id,
                name=step.name,
                detail=step.document(),
                nova_requests=step.requests,
                now=step.at,
            )
        pending.clear()
        return wake

    def _moved(self, job: _Job, was: str) -> None:
        """Tell ``on_phase`` that the operation entered a new phase (recorded)."""
        if self._on_phase is None or job.phase == was:
            return
        try:
            self._on_phase(job.work.op_id, job.phase)
        except TemporaryError as exc:  # the journal or the broker away: this report only
            log.warning(
                "operation.phase_report_failed", operation_id=job.work.op_id, error=str(exc)
            )
        except Exception:  # a report that fails must not stop the operation
            log.exception("operation.phase_report_failed", operation_id=job.work.op_id)

    def _place(self, job: _Job) -> None:
        """Tell the store where the server runs, once the machine has found it."""
        if job.placed or "host" not in job.state:
            return
        job.placed = True
        self._store.place(
            job.work.op_id,
            host=job.state.get("host"),
            availability_zone=job.state.get("availability_zone"),
            now=self._clock(),
        )

    def _persist(self, job: _Job) -> None:
        operation = self._store.advance(
            job.work.op_id,
            phase=job.phase,
            state=job.state,
            expect_version=job.version,
            now=self._clock(),
        )
        job.version = int(getattr(operation, "version", job.version + 1))

    def _forget(self, job: _Job) -> None:
        with self._cond:
            self._jobs.pop(job.work.op_id, None)
            self._unpark(job)
            watchers = self._by_server.get(job.server_id or "")
            if watchers is not None:
                watchers.discard(job)
                if not watchers:
                    del self._by_server[job.server_id or ""]
                    self._recent.pop(job.server_id or "", None)

    def _lose(self, job: _Job, exc: Exception) -> None:
        """The journal says another daemon took the operation over (or ended it):
        stop working on it, write nothing more."""
        op_id = job.work.op_id
        log.warning("operation.lost", operation_id=op_id, error=str(exc))
        self._forget(job)
        self._cloud.requests.forget(op_id)
        if self._on_lost is not None:
            try:
                self._on_lost(op_id)
            except Exception:
                log.exception("operation.lost_report_failed", operation_id=op_id)

    def _finish(self, job: _Job, finish: Finish) -> None:
        op_id = job.work.op_id
        self._store.finish(
            op_id,
            outcome=finish.outcome,
            reason=finish.reason,
            expect_version=job.version,
            now=self._clock(),
        )
        self._forget(job)
        requests = self._cloud.requests.for_operation(op_id)
        self._cloud.requests.forget(op_id)
        log.info(
            "operation.finished",
            operation_id=op_id,
            action=job.work.action,
            server_id=job.server_id,
            outcome=finish.outcome,
            reason=finish.reason,
            nova_requests=requests,
        )
        done = Done(
            op_id, finish.outcome, finish.reason, job.server_id, requests, dict(job.secrets)
        )
        try:
            self._on_done(done)
        except Exception:  # the outcome is in the journal; only its report failed
            log.exception("operation.report_failed", operation_id=op_id, outcome=finish.outcome)

    # -- waiting ----------------------------------------------------------

    def _recent_events(self, server_id: str | None) -> list[Event]:
        with self._cond:
            return [event for _, event in self._recent.get(server_id or "", ())]

    def _watch(self, job: _Job) -> None:
        server_id = job.server_id
        if server_id is not None:
            with self._cond:
                self._by_server.setdefault(server_id, set()).add(job)

    def _park(self, job: _Job, wait: Wait) -> Event | None:
        """Park the job, unless a notification that wakes it came while its
        phase ran: then return that event and leave it unparked."""
        now = self._clock()
        due = job.deadline
        if wait.retry_after_s is not None:
            due = min(due, now + timedelta(seconds=wait.retry_after_s))
        with self._cond:
            missed = self._missed(job, wait)
            if missed is not None:
                return missed
            job.wait = wait
            job.generation += 1
            if job.server_id is not None:
                self._parked.setdefault(job.server_id, set()).add(job)
            heapq.heappush(self._timers, (due, next(self._seq), job, job.generation))
            self._cond.notify_all()
        return None

    def _missed(self, job: _Job, wait: Wait) -> Event | None:
        """A notification of the job's server that came after its phase began and
        wakes ``wait`` (caller holds the condition): from the server's own recent
        notifications, or from the latest of every server (the server may have
        become known to the runner only during the phase)."""
        server_id = job.server_id
        if server_id is None:
            return None
        for seq, event in self._recent.get(server_id, ()):
            if seq > job.seen_seq and wakes(wait, event):
                return event
        for seq, event in reversed(self._latest):
            if seq <= job.seen_seq:
                break
            if event.instance_id == server_id and wakes(wait, event):
                return event
        return None

    def _unpark(self, job: _Job) -> None:
        """Take a job off the parked table (caller holds the condition)."""
        job.wait = None
        job.retrying = False
        job.generation += 1
        server_id = job.server_id
        if server_id is not None and server_id in self._parked:
            self._parked[server_id].discard(job)
            if not self._parked[server_id]:
                del self._parked[server_id]

    def _retry_later(self, job: _Job) -> None:
        job.attempts += 1
        delay = min(RETRY_CAP_S, self._retry_base_s * 2 ** min(job.attempts - 1, 32))
        delay *= random.uniform(0.5, 1.5)  # jitter, not security
        log.warning("operation.retry", operation_id=job.work.op_id, delay_s=round(delay, 2))
        with self._cond:
            job.retrying = True
            self._park(job, Wait(job.phase, retry_after_s=delay, poll=False))  # no event wakes it

    def retry_now(self) -> int:
        """Run now, not at the end of their delay, the phases waiting to be tried
        again after a temporary failure (Nova was out of reach; the daemon calls
        this when it answers again); how many. Their delays keep growing if they
        fail again."""
        with self._cond:
            due = [job for job in self._jobs.values() if job.retrying and job.wait is not None]
            for job in due:
                self._unpark(job)
        for job in due:
            self._dispatch(job, None, None, RECOVERY)
        return len(due)

    def _schedule(self) -> None:
        while True:
            with self._cond:
                if self._stopping:
                    return
                now = self._clock()
                due_jobs = []
                while self._timers and self._timers[0][0] <= now:
                    _, _, job, generation = heapq.heappop(self._timers)
                    if job.generation == generation and job.wait is not None:
                        self._unpark(job)
                        due_jobs.append(job)
                poll_due = (now - self._last_poll).total_seconds() >= self._poll_interval_s
                wait_s = self._poll_interval_s
                if self._timers:
                    wait_s = min(wait_s, (self._timers[0][0] - now).total_seconds())
            for job in due_jobs:
                self._dispatch(job, None, None, TIMER)
            if poll_due:
                self._poll()
            with self._cond:
                if not self._stopping:
                    self._cond.wait(timeout=max(0.01, min(wait_s, 1.0)))

    def _poll(self) -> None:
        """One batched look at every server whose waiters heard nothing lately."""
        now = self._clock()
        self._last_poll = now
        stale = now - timedelta(seconds=self._poll_interval_s)
        with self._cond:
            candidates = [
                job
                for jobs in self._parked.values()
                for job in jobs
                if job.wait is not None and job.wait.poll and (job.last_read or now) <= stale
            ]
        if not candidates:
            return
        since = min(job.last_read or now for job in candidates) - timedelta(seconds=POLL_SKEW_S)
        try:
            changed = {server.id: server for server in self._cloud.changed_since(since)}
        except TemporaryError as exc:
            log.warning("poll.failed", error=str(exc))
            return
        woken = []
        with self._cond:
            for job in candidates:
                snapshot = changed.get(job.server_id or "")
                if job.wait is None:
                    continue
                if snapshot is None or not settled_for(job.wait, snapshot):
                    job.last_read = now  # nothing this wait is for: stay parked
                    continue
                self._unpark(job)
                woken.append((job, snapshot))
        for job, snapshot in woken:
            self._dispatch(job, None, snapshot, POLL)
