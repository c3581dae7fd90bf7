"""What systemd hears from the daemon, and the protocol it hears it through.

The daemon's main loop calls :meth:`ServiceLink.tick` about once a second:

* ``READY=1`` goes out once, when the daemon says it is ready (the journal
  is open and both consumers are attached);
* ``STATUS=`` whenever the line changes: the state, the operations in
  flight, the messages handled, each consumer's state;
* ``WATCHDOG=1`` every half watchdog interval, and only while
  :class:`~nova_autopilot.daemon.health.Liveness` finds the daemon alive. While it
  is wedged the pings stop and systemd restarts the service after
  ``WatchdogSec``; each change between alive and wedged is logged. A consumer
  reconnecting for less than ``wedged_after`` is no wedge: the pings go on,
  the status line says it, and ``service.degraded`` is a warning.

The :class:`Notifier` speaks the notification protocol (sd_notify(3),
sd_watchdog_enabled(3)). A service started with ``Type=notify`` finds the
address of the service manager's socket in ``NOTIFY_SOCKET``: a file system
path, or an abstract socket name written with a leading ``@``. Each
notification is one datagram of newline-separated ``NAME=value`` assignments,
for example ``READY=1`` or ``STATUS=...``. When the unit sets ``WatchdogSec=``,
``WATCHDOG_USEC`` gives the interval in microseconds (and ``WATCHDOG_PID``, when
set, the process it is meant for); the service must then send ``WATCHDOG=1``
more often than that, or the manager kills and restarts it.

Without ``NOTIFY_SOCKET`` (the daemon runs in a terminal, or under another
supervisor) every call does nothing. A failed send is logged and never
raised: telling systemd must not stop the daemon's work.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from nova_autopilot.daemon.health import Liveness, Pulse
from nova_autopilot.logs import get_logger

__all__ = [
    "Counts",
    "Notifier",
    "ServiceLink",
    "notify_address",
    "status_line",
    "watchdog_interval",
]

log = get_logger(__name__)

#: Longest time between two ticks of the main loop.
TICK_S = 1.0


def notify_address(environ: Mapping[str, str]) -> str | bytes | None:
    """The address ``NOTIFY_SOCKET`` names: a path, abstract-namespace bytes, or None
    (unset, or a kind of address this module does not speak)."""
    value = environ.get("NOTIFY_SOCKET", "")
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        return b"\0" + value[1:].encode()
    if value:
        log.warning("sdnotify.unsupported_address", address=value)
    return None


def watchdog_interval(environ: Mapping[str, str], pid: int) -> float | None:
    """Seconds within which systemd expects ``WATCHDOG=1``, or None when no watchdog
    is set for process ``pid`` (``WATCHDOG_USEC`` unset, invalid, zero, or
    ``WATCHDOG_PID`` naming another process)."""
    owner = environ.get("WATCHDOG_PID", "")
    if owner:
        try:
            if int(owner) != pid:
                return None
        except ValueError:
            return None
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 1_000_000 if usec > 0 else None


class Notifier:
    """Sends notifications to the service manager; does nothing without one.

    ::

        notifier = Notifier.from_environment()
        notifier.ready(status="consuming")
        notifier.watchdog()        # every watchdog_s / 2 while healthy
        notifier.reloading(); ...; notifier.ready()
        notifier.stopping()
    """

    def __init__(self, address: str | bytes | None, *, watchdog_s: float | None = None) -> None:
        self.address = address
        self.watchdog_s = watchdog_s if address is not None else None
        self._socket: socket.socket | None = None
        self._lock = threading.Lock()
        self._failing = False

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        env = os.environ if environ is None else environ
        return cls(notify_address(env), watchdog_s=watchdog_interval(env, os.getpid()))

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, **fields: object) -> bool:
        """Send ``NAME=value`` lines (``notify(READY=1, STATUS="up")``); True once sent."""
        if self.address is None or not fields:
            return False
        lines = []
        for name, value in fields.items():
            text = str(value)
            if "\n" in text:  # one assignment a line: a newline would start another
                text = " ".join(text.splitlines())
            lines.append(f"{name}={text}")
        return self._send("\n".join(lines).encode())

    def ready(self, *, status: str | None = None) -> bool:
        """Start-up (or a reload) is complete."""
        return self.notify(READY=1, **_status(status))

    def status(self, text: str) -> bool:
        """A one-line description of the service's state (``systemctl status`` shows it)."""
        return self.notify(STATUS=text)

    def watchdog(self) -> bool:
        """Keep-alive: the service is healthy (only send it when it is)."""
        return self.notify(WATCHDOG=1) if self.watchdog_s is not None else False

    def reloading(self, *, status: str | None = None) -> bool:
        """A reload starts; :meth:`ready` says it ended. ``MONOTONIC_USEC`` tells
        systemd when, so that it can match the reload it asked for."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify(RELOADING=1, MONOTONIC_USEC=usec, **_status(status))

    def stopping(self, *, status: str | None = None) -> bool:
        """The service is shutting down."""
        return self.notify(STOPPING=1, **_status(status))

    def close(self) -> None:
        with self._lock:
            if self._socket is not None:
                self._socket.close()
                self._socket = None

    def _send(self, datagram: bytes) -> bool:
        with self._lock:
            try:
                if self._socket is None:
                    self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                    self._socket.setblocking(False)
                self._socket.sendto(datagram, self.address)  # type: ignore[arg-type]
            except OSError as exc:
                if not self._failing:  # once per run of failures, not once per ping
                    log.warning("sdnotify.failed", address=repr(self.address), error=str(exc))
                self._failing = True
                return False
            if self._failing:
                log.info("sdnotify.recovered", address=repr(self.address))
            self._failing = False
            return True


def _status(text: str | None) -> dict[str, str]:
    return {} if text is None else {"STATUS": text}


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
        self._passing: tuple[str, ...] = ()
        self._last_ping: float | None = None
        self._last_status = ""

    @property
    def tick_s(self) -> float:
        """How long the main loop may wait before the next :meth:`tick`."""
        watchdog = self.notifier.watchdog_s
        return min(TICK_S, watchdog / 4) if watchdog else TICK_S

    def tick(self, *, ready: bool) -> Pulse:
        """Look at the daemon; announce readiness, status and liveness as due."""
        pulse = self._liveness.check()
        if not self._ready:
            problems = pulse.problems
            self._status(status_line("starting", self._counts(), problems))
            if ready:
                self._ready = True
                self._alive = True
                self.notifier.ready(status=self._line(pulse))
                log.info("service.ready", watchdog_s=self.notifier.watchdog_s)
            return pulse
        self._note(pulse)
        self._status(self._line(pulse))
        if pulse.alive:
            self._ping()
        return pulse

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

    def _line(self, pulse: Pulse) -> str:
        state = "running" if pulse.alive else "WEDGED"
        return status_line(state, self._counts(), pulse.problems)

    def _note(self, pulse: Pulse) -> None:
        if pulse.alive and pulse.problems != self._passing:
            self._passing = pulse.problems
            if pulse.problems:  # getting over it: no restart would help
                log.warning("service.degraded", problems=list(pulse.problems))
        if pulse.alive == self._alive:
            return
        self._alive = pulse.alive
        if pulse.alive:
            log.info("service.unwedged")
        else:
            log.error(
                "service.wedged",
                problems=list(pulse.problems),
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
