"""What systemd hears from the daemon: readiness, a status line, the watchdog.

The daemon's main loop calls :meth:`ServiceLink.tick` about once a second:

* ``READY=1`` goes out once, when the daemon says it is ready (the journal
  is open and both consumers are attached);
* ``STATUS=`` whenever the line changes: the state, the operations in
  flight, the messages handled, each consumer's state;
* ``WATCHDOG=1`` every half watchdog interval, and only while
  :class:`~nova_autopilot.daemon.liveness.Liveness` finds the daemon alive. While it
  is wedged the pings stop and systemd restarts the service after
  ``WatchdogSec``; each change between alive and wedged is logged.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from nova_autopilot.daemon.liveness import Liveness, Verdict
from nova_autopilot.daemon.sdnotify import Notifier
from nova_autopilot.logs import get_logger

__all__ = ["Counts", "ServiceLink", "status_line"]

log = get_logger(__name__)

#: Longest time between two ticks of the main loop.
TICK_S = 1.0


@dataclass(frozen=True, slots=True)
class Counts:
    """The live figures the status line shows."""

    in_flight: int
    waiting: int
    handled: int
    dead_lettered: int
    consumers: Sequence[tuple[str, bool]]  # (intake name, attached)


def status_line(state: str, counts: Counts, problems: Sequence[str] = ()) -> str:
    """``running: 2 operations in flight (1 waiting), 15 messages handled, ...``."""
    consumers = ", ".join(
        f"{name} {'attached' if attached else 'detached'}" for name, attached in counts.consumers
    )
    parts = [
        f"{counts.in_flight} operation{'s' if counts.in_flight != 1 else ''} in flight "
        f"({counts.waiting} waiting)",
        f"{counts.handled} message{'s' if counts.handled != 1 else ''} handled",
        f"{counts.dead_lettered} dead-lettered",
        f"consumers: {consumers or 'none'}",
    ]
    head = f"{state} ({'; '.join(problems)})" if problems else state
    return f"{head}: {', '.join(parts)}"


class ServiceLink:
    """Tells systemd how the daemon is doing; does nothing without systemd."""

    def __init__(
        self,
        *,
        notifier: Notifier,
        liveness: Liveness,
        counts: Callable[[], Counts],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.notifier = notifier
        self._liveness = liveness
        self._counts = counts
        self._clock = clock
        self._ready = False
        self._alive = True
        self._last_ping: float | None = None
        self._last_status = ""

    @property
    def tick_s(self) -> float:
        """How long the main loop may wait before the next :meth:`tick`."""
        watchdog = self.notifier.watchdog_s
        return min(TICK_S, watchdog / 4) if watchdog else TICK_S

    def tick(self, *, ready: bool) -> Verdict:
        """Look at the daemon; announce readiness, status and liveness as due."""
        verdict = self._liveness.check()
        if not self._ready:
            problems = verdict.problems
            self._status(status_line("starting", self._counts(), problems))
            if ready:
                self._ready = True
                self._alive = True
                self.notifier.ready(status=self._line(verdict))
                log.info("service.ready", watchdog_s=self.notifier.watchdog_s)
            return verdict
        self._note(verdict)
        self._status(self._line(verdict))
        if verdict.alive:
            self._ping()
        return verdict

    def reloading(self) -> None:
        """A reload starts (before READY=1 there is nothing to announce)."""
        if self._ready:
            self.notifier.reloading(status="reloading: policies, signing keys, log level")

    def reloaded(self) -> None:
        """The reload ended (applied or refused): running again."""
        if self._ready:
            self._last_status = self._line(self._liveness.check())
            self.notifier.ready(status=self._last_status)

    def stopping(self) -> None:
        self.notifier.stopping(status=status_line("stopping", self._counts()))

    def _line(self, verdict: Verdict) -> str:
        state = "running" if verdict.alive else "WEDGED"
        return status_line(state, self._counts(), verdict.problems)

    def _note(self, verdict: Verdict) -> None:
        if verdict.alive == self._alive:
            return
        self._alive = verdict.alive
        if verdict.alive:
            log.info("service.unwedged")
        else:
            log.error(
                "service.wedged",
                problems=list(verdict.problems),
                note="no WATCHDOG=1 while wedged: systemd restarts the service after WatchdogSec",
            )

    def _status(self, line: str) -> None:
        if line != self._last_status:
            self._last_status = line
            self.notifier.status(line)

    def _ping(self) -> None:
        watchdog = self.notifier.watchdog_s
        if watchdog is None:
            return
        now = self._clock()
        if self._last_ping is None or now - self._last_ping >= watchdog / 2:
            self.notifier.watchdog()
            self._last_ping = now
