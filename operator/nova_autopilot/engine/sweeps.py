"""Sweeps: look at Nova's state now and then, so that a lost notification loses nothing.

Notifications are edge-triggered: when one is lost (a broker restart, a full
queue, a compute service that could not send), no policy hears of the change.
A sweep is level-triggered: every ``[sweeps] interval`` it lists the servers
whose status a policy may want to act on and hands one event of source
``sweep`` per server to the engine, which matches, guards, records and runs it
as any other event (``docs/sweeps.md``):

* ``sweep.server.verify_resize``: status VERIFY_RESIZE (a resize awaits confirmation);
* ``sweep.server.rescue``: status RESCUE;
* ``sweep.server.error``: status ERROR, after having been launched.

A sweep costs nothing when no enabled policy listens to one of these event
types: it does not even ask Nova. Otherwise it makes one list call per status
that some policy listens to (all projects, in pages of Nova's ``max_limit``).

A server with a task in progress is left out: Nova is working on it. The
event's message id is the server, its status and Nova's ``updated`` time,
so the same stuck state leads to one decision whatever the number of sweeps
that see it, while a server that gets stuck again later (``updated`` moved) is
seen again.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Protocol

from nova_autopilot.cloud import Listing, ServerState
from nova_autopilot.errors import AutopilotError, BadMessage, CloudError
from nova_autopilot.events import Event
from nova_autopilot.events.wire import parse_timestamp
from nova_autopilot.logs import get_logger
from nova_autopilot.policies import PolicySet

log = get_logger(__name__)

#: Nova's status -> the event type a sweep emits for a server in it.
EVENT_TYPES: Final = {
    "VERIFY_RESIZE": "sweep.server.verify_resize",
    "RESCUE": "sweep.server.rescue",
    "ERROR": "sweep.server.error",
}
SOURCE: Final = "sweep"


class ServerLister(Protocol):
    """The one call a sweep makes (``cloud.Cloud`` implements it)."""

    def servers_in(self, statuses: tuple[str, ...]) -> Listing: ...


def _stuck_for(server: ServerState, now: datetime) -> int | None:
    """Whole seconds since Nova last changed the server; None when it does not say."""
    if not server.updated:
        return None
    try:
        updated = parse_timestamp(server.updated, field="updated")
    except BadMessage:
        return None
    return max(0, int((now - updated).total_seconds()))


def server_event(server: ServerState, now: datetime) -> Event | None:
    """The sweep event for one server, or None when its state is not one a sweep reports:
    a server Nova is working on (a task in progress, such as the confirmation of a
    resize) is not stuck, and an ERROR server that never launched has nothing to rescue."""
    event_type = EVENT_TYPES.get(server.status)
    if event_type is None or server.task_state is not None:
        return None
    if server.status == "ERROR" and not server.launched:
        return None
    # The keys of a versioned instance notification's payload, where they exist.
    payload: dict[str, Any] = {
        "uuid": server.id,
        "display_name": server.name,
        "tenant_id": server.project_id,
        "host": server.host,
        "availability_zone": server.availability_zone,
        "status": server.status,
        "state": server.vm_state,
        "task_state": server.task_state,
        "power_state": server.power_state,
        "flavor": {"name": server.flavor_name},
        "launched_at": server.launched_at,
        "updated_at": server.updated,
        "locked": server.locked,
        "fault": {"message": server.fault} if server.fault else None,
        "stuck_for_s": _stuck_for(server, now),
    }
    return Event(
        source=SOURCE,
        format=SOURCE,
        event_type=event_type,
        payload=payload,
        message_id=f"{server.id}:{server.status}:{server.updated or 'unknown'}",
        instance_id=server.id,
        project_id=server.project_id,
        host=server.host,
        timestamp=now,
    )


def listened(policies: PolicySet) -> tuple[str, ...]:
    """The statuses some enabled policy wants to hear of, in :data:`EVENT_TYPES` order."""
    wanted = set(policies.listening(SOURCE, tuple(EVENT_TYPES.values())))
    return tuple(status for status, event_type in EVENT_TYPES.items() if event_type in wanted)


@dataclass(frozen=True, slots=True)
class Sweep:
    """What one sweep saw and did. ``skipped``: why it did not look (``not_leader``,
    ``no_policy``); ``error``: why its look at Nova failed."""

    at: datetime
    statuses: tuple[str, ...] = ()
    servers: int = 0
    events: tuple[Event, ...] = ()
    operations: int = 0
    requests: int = 0
    duration_s: float = 0.0
    skipped: str | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "statuses": list(self.statuses),
            "servers": self.servers,
            "events": len(self.events),
            "operations": self.operations,
            "nova_requests": self.requests,
            "duration_s": round(self.duration_s, 3),
            "skipped": self.skipped,
            "error": self.error,
        }


def look(
    cloud: ServerLister,
    policies: PolicySet,
    now: datetime,
    *,
    monotonic: Callable[[], float] = time.monotonic,
) -> tuple[Sweep, list[Event]]:
    """One look at Nova for ``policies``: what it saw, and the events it would emit."""
    statuses = listened(policies)
    if not statuses:
        return Sweep(now, skipped="no_policy"), []
    started = monotonic()
    listing = cloud.servers_in(statuses)
    events = [e for e in (server_event(s, now) for s in listing.servers) if e is not None]
    sweep = Sweep(
        now,
        statuses=statuses,
        servers=len(listing.servers),
        events=tuple(events),
        requests=listing.requests,
        duration_s=monotonic() - started,
    )
    return sweep, events


@dataclass(frozen=True, slots=True)
class SweepCounts:
    """The sweeps so far, for the metrics: by result (``done``, ``failed``,
    ``not_leader``, ``no_policy``), the events they emitted, and when the last
    done sweep looked (seconds since the epoch)."""

    by_result: dict[str, int]
    events: int
    last_done_at: float | None


def _result(sweep: Sweep) -> str:
    if sweep.skipped is not None:
        return sweep.skipped
    return "failed" if sweep.error is not None else "done"


class Sweeper:
    """Sweeps every ``interval_s`` seconds in a thread of its own, where ``leader()``
    says this daemon is the one to (several daemons would otherwise all sweep).
    ``decide`` decides a sweep's events together, as the engine's
    ``handle_events`` does (one journal transaction for them all)."""

    def __init__(
        self,
        *,
        cloud: ServerLister,
        policies: Callable[[], PolicySet],
        decide: Callable[[Sequence[Event]], Sequence[Sequence[str] | Exception]],
        clock: Callable[[], datetime],
        interval_s: float,
        leader: Callable[[], bool] = lambda: True,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._cloud = cloud
        self._policies = policies
        self._decide = decide
        self._clock = clock
        self.interval_s = interval_s
        self.leader = leader
        self._monotonic = monotonic
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.last: Sweep | None = None
        self.count = 0
        self._results: Counter[str] = Counter()
        self._events = 0
        self._last_done_at: float | None = None

    def look(self) -> tuple[Sweep, list[Event]]:
        """List the servers the policies may want, and their events; decide nothing."""
        return look(self._cloud, self._policies(), self._clock(), monotonic=self._monotonic)

    def sweep(self) -> Sweep:
        """One sweep now: look, then hand every event to the engine."""
        with self._lock:
            started = self._monotonic()
            if not self.leader():
                result = Sweep(self._clock(), skipped="not_leader")
            else:
                result = self._sweep(started)
            self.last = result
            self.count += 1
            self._results[_result(result)] += 1
            self._events += len(result.events)
            if _result(result) == "done":
                self._last_done_at = result.at.timestamp()
        if result.skipped is None and result.error is None:
            log.info("sweep.done", **{k: v for k, v in result.as_dict().items() if v is not None})
        return result

    def _sweep(self, started: float) -> Sweep:
        try:
            looked, events = self.look()
        except CloudError as exc:
            log.warning("sweep.failed", error=str(exc))
            return Sweep(self._clock(), error=str(exc), duration_s=self._monotonic() - started)
        operations = 0
        for event, decided in zip(events, self._decide(events) if events else [], strict=True):
            if not isinstance(decided, Exception):
                operations += len(decided)
                continue
            log.error(
                "sweep.event_failed",
                event_type=event.event_type,
                server_id=event.instance_id,
                error=str(decided),
            )
        return Sweep(
            looked.at,
            statuses=looked.statuses,
            servers=looked.servers,
            events=looked.events,
            operations=operations,
            requests=looked.requests,
            duration_s=self._monotonic() - started,
            skipped=looked.skipped,
        )

    def state(self) -> dict[str, Any]:
        """For ``/status``: the interval, the sweeps so far and the last one."""
        last = self.last
        return {
            "interval_s": self.interval_s,
            "sweeps": self.count,
            "last": last.as_dict() if last is not None else None,
        }

    def counts(self) -> SweepCounts:
        with self._lock:
            return SweepCounts(dict(self._results), self._events, self._last_done_at)

    # -- the thread ---------------------------------------------------------

    def start(self) -> None:
        """Sweep now, then every ``interval_s``, until :meth:`stop`."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="sweeper", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                self.sweep()
            except AutopilotError as exc:  # the journal out of reach, say: try at the next turn
                log.warning("sweep.failed", error=str(exc))
            if self._stop.wait(self.interval_s):
                return

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
