"""What the daemon says about itself: liveness, readiness, and the sections of its status.

Liveness is whether the daemon really works, what the systemd watchdog is fed
on (:mod:`.systemd`). The daemon is alive when every consumer's thread turns,
attached to its queue or trying to get it back (a broker outage, however long,
is a problem to tell and makes the daemon not ready, but no wedge: a restart
cannot end it), no message has been in a handler (or waiting for one) longer
than ``wedged_after`` seconds, and the operation runner can still run a task
within that time. A handler
stuck on a journal write behind a database lock, or a worker pool whose every
thread hangs, is *wedged*: the process still runs but does no work, and only
a restart helps.

Readiness asks three things: are the consumers attached to their queues, does
the journal take a write now (a probe row written and rolled back), and did
Nova answer recently. Nova is never asked per probe: :class:`Reachability`
asks it in the background every ``interval_s`` seconds and remembers the last
success; Nova counts as reachable while that success is younger than three
intervals.

The status document is a mapping of sections, one per part (``daemon``,
``readiness``, ``operations``, ``consumers``, ``counters``...), each built by a
function of this module from the part's own plain values, so a new part adds
one section without touching the others.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from nova_autopilot.actions.runner import Running
from nova_autopilot.bus import BusHealth, CounterSnapshot, IntakeHealth
from nova_autopilot.engine.tally import TallySnapshot
from nova_autopilot.errors import AutopilotError
from nova_autopilot.logs import get_logger

__all__ = [
    "Liveness",
    "Pulse",
    "Reachability",
    "Readiness",
    "consumers_section",
    "counters_section",
    "operations_section",
    "readiness",
]

log = get_logger(__name__)

#: Nova counts as reachable while its last answer is younger than this many intervals.
REACHABLE_FOR_INTERVALS = 3


@dataclass(frozen=True, slots=True)
class Pulse:
    """What one liveness check found: ``alive``, or the reasons it is not (one short
    phrase each)."""

    alive: bool
    #: Why it is not alive; or, alive, what it is getting over (a reconnection).
    problems: tuple[str, ...] = ()


class Liveness:
    """Judges the bus's health and the runner's responsiveness.

    ::

        liveness = Liveness(bus_health=bus.health, runner_responsive=runner.responsive,
                            wedged_after=20.0)
        pulse = liveness.check()      # Pulse(alive=False, problems=("requests: ...",))
    """

    def __init__(
        self,
        *,
        bus_health: Callable[[], BusHealth],
        runner_responsive: Callable[[float], bool],
        wedged_after: float,
    ) -> None:
        self._bus_health = bus_health
        self._runner_responsive = runner_responsive
        self.wedged_after = wedged_after

    def check(self) -> Pulse:
        passing: list[str] = []
        problems = [*self._bus_problems(passing), *self._runner_problems()]
        return Pulse(alive=not problems, problems=tuple(problems + passing))

    def _bus_problems(self, passing: list[str]) -> list[str]:
        """What wedges the daemon; ``passing`` gets what does not yet (a consumer
        reconnecting for less than ``wedged_after``)."""
        problems = []
        for intake in self._bus_health().intakes:
            if not intake.attached:
                reason = f" ({intake.last_error})" if intake.last_error else ""
                detached = intake.detached_for_s
                if intake.reconnecting or (detached is not None and detached < self.wedged_after):
                    since = "" if detached is None else f" for {detached:.0f} s"
                    passing.append(f"{intake.name} consumer not attached{since}{reason}")
                else:
                    problems.append(
                        f"{intake.name} consumer not attached and not reconnecting{reason}"
                    )
            elif not intake.alive:
                problems.append(f"{intake.name} consumer not turning")
            oldest = intake.oldest_in_flight_s
            if oldest is not None and oldest >= self.wedged_after:
                problems.append(f"{intake.name} handler wedged for {oldest:.0f} s")
        return problems

    def _runner_problems(self) -> list[str]:
        if self._runner_responsive(self.wedged_after):
            return []
        return [f"operation workers wedged (no free worker within {self.wedged_after:g} s)"]


class Reachability:
    """Whether Nova answered recently, asked in the background every ``interval_s``.
    ``on_back`` is called (from the asking thread) when Nova answers a check after
    one or more it did not answer."""

    def __init__(
        self,
        *,
        check: Callable[[], None],
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
        on_back: Callable[[], None] | None = None,
    ) -> None:
        self._check = check
        self.interval_s = interval_s
        self._clock = clock
        self._on_back = on_back
        self._lock = threading.Lock()
        self._last_ok: float | None = None
        self._last_error: str | None = None
        self._checks = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, name="autopilot-reachability", daemon=True
        )

    def record(self, *, ok: bool, error: str | None = None) -> None:
        """The outcome of one check (also of one made elsewhere, at start-up)."""
        with self._lock:
            self._checks += 1
            if ok:
                self._last_ok = self._clock()
                self._last_error = None
            else:
                self._last_error = error

    def refresh(self) -> bool:
        """Ask Nova now; True when it answered."""
        try:
            self._check()
        except AutopilotError as exc:
            self.record(ok=False, error=str(exc))
            log.warning("cloud.unreachable", error=str(exc))
            return False
        with self._lock:
            was_away = self._last_error is not None
        self.record(ok=True)
        if was_away:
            log.info("cloud.reachable")
            if self._on_back is not None:
                self._on_back()
        return True

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.refresh()

    def state(self) -> dict[str, Any]:
        """``reachable``, the age of the last answer, the last error since then."""
        with self._lock:
            age = None if self._last_ok is None else self._clock() - self._last_ok
            error, checks = self._last_error, self._checks
        reachable = age is not None and age <= REACHABLE_FOR_INTERVALS * self.interval_s
        return {
            "reachable": reachable,
            "last_ok_age_s": None if age is None else round(age, 3),
            "last_error": error,
            "checks": checks,
        }


@dataclass(frozen=True, slots=True)
class Readiness:
    ready: bool
    #: part -> what is wrong with it (empty when ready).
    problems: Mapping[str, str]

    def as_dict(self) -> dict[str, Any]:
        return {"ready": self.ready, "problems": dict(self.problems)}


def readiness(
    *,
    intakes: Sequence[IntakeHealth],
    check_journal: Callable[[], None],
    cloud: Mapping[str, Any],
    coordination: str | None = None,
) -> Readiness:
    """Ready when every consumer is attached, the journal takes a write, Nova
    answered recently and the coordination backend took the last heartbeat
    (``coordination``: why not, None when it did); otherwise what is not."""
    problems: dict[str, str] = {}
    detached = [h for h in intakes if not h.attached]
    if detached:
        problems["consumers"] = "; ".join(
            f"{h.name} not attached to {h.queue}" + (f" ({h.last_error})" if h.last_error else "")
            for h in detached
        )
    try:
        check_journal()
    except AutopilotError as exc:
        problems["journal"] = f"not writable: {exc}"
    if not cloud.get("reachable"):
        age = cloud.get("last_ok_age_s")
        since = "never answered" if age is None else f"last answered {age:.0f} s ago"
        error = cloud.get("last_error")
        problems["cloud"] = f"Nova {since}" + (f" ({error})" if error else "")
    if coordination:
        problems["coordination"] = coordination
    return Readiness(ready=not problems, problems=problems)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def operations_section(running: Sequence[Running], *, now: datetime) -> list[dict[str, Any]]:
    """The operations in flight, oldest first, with their age."""
    return [
        {
            "operation_id": r.op_id,
            "action": r.action,
            "server_id": r.server_id,
            "phase": r.phase,
            "waiting": r.waiting,
            "attempts": r.attempts,
            "started_at": _iso(r.started_at),
            "age_s": round((now - r.started_at).total_seconds(), 3),
        }
        for r in running
    ]


def consumers_section(intakes: Sequence[IntakeHealth]) -> list[dict[str, Any]]:
    return [
        {
            "name": h.name,
            "source": h.source,
            "queue": h.queue,
            "broker": h.broker,
            "up": h.alive,
            "attached": h.attached,
            "reconnecting": h.reconnecting,
            "connected_since": _iso(h.connected_since),
            "reconnects": h.reconnects,
            "last_error": h.last_error,
            "in_flight": h.in_flight,
            "oldest_in_flight_s": h.oldest_in_flight_s,
        }
        for h in intakes
    ]


def _pairs(counts: Mapping[tuple[str, str], int], first: str, second: str) -> list[dict[str, Any]]:
    return [{first: a, second: b, "count": n} for (a, b), n in sorted(counts.items())]


def counters_section(
    *,
    tally: TallySnapshot,
    bus: Mapping[str, CounterSnapshot],
    nova_calls: Mapping[tuple[str, int], int],
) -> dict[str, Any]:
    """The figures the metrics also show, as plain JSON."""
    return {
        "events_received": _pairs(tally.received, "source", "event_type"),
        "events_matched": _pairs(tally.matched, "source", "event_type"),
        "decisions": _pairs(tally.decisions, "policy", "outcome"),
        "guard_refusals": dict(sorted(tally.refusals.items())),
        "operations_finished": _pairs(tally.finished, "action", "outcome"),
        "duplicates": dict(sorted(tally.duplicates.items())),
        "messages": {name: counts.as_dict() for name, counts in sorted(bus.items())},
        "nova_requests": [
            {"call": call, "status": status, "count": n}
            for (call, status), n in sorted(nova_calls.items())
        ],
    }
