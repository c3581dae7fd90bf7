"""The systemd notification protocol (sd_notify(3), sd_watchdog_enabled(3)).

A service started with ``Type=notify`` finds the address of the service
manager's socket in ``NOTIFY_SOCKET``: a file system path, or an abstract
socket name written with a leading ``@``. Each notification is one datagram
of newline-separated ``NAME=value`` assignments, for example ``READY=1`` or
``STATUS=...``. When the unit sets ``WatchdogSec=``, ``WATCHDOG_USEC`` gives
the interval in microseconds (and ``WATCHDOG_PID``, when set, the process it
is meant for); the service must then send ``WATCHDOG=1`` more often than
that, or the manager kills and restarts it.

Without ``NOTIFY_SOCKET`` (the daemon runs in a terminal, or under another
supervisor) every call does nothing. A failed send is logged and never
raised: telling systemd must not stop the daemon's work.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Mapping

from nova_autopilot.logs import get_logger

__all__ = ["Notifier", "notify_address", "watchdog_interval"]

log = get_logger(__name__)


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
