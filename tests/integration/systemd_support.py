"""systemd's end of the daemon's notifications (``NOTIFY_SOCKET``), for the tests
that run `nova-autopilot run` as systemd runs it (tests/integration/test_service.py,
tests/integration/bus/test_broker_restart.py): :class:`Manager` receives every
datagram the daemon sends (READY=1, WATCHDOG=1, STATUS=...) in order of arrival;
the ``manager`` fixture gives one on a socket of its own, removed afterwards."""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import time
from collections.abc import Iterator

import pytest

__all__ = ["Manager", "manager"]


class Manager:
    """systemd's end of NOTIFY_SOCKET: every datagram, in order of arrival."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.2)
        self.messages: list[dict[str, str]] = []
        #: When each message arrived (time.monotonic()), in the same order.
        self.arrived: list[float] = []
        self._closed = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._closed:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            fields = dict(line.split("=", 1) for line in data.decode().split("\n"))
            self.arrived.append(time.monotonic())
            self.messages.append(fields)

    def seen(self, name: str, since: int = 0) -> list[int]:
        """Indexes of the messages carrying ``name``, from ``since`` on."""
        return [i for i, m in enumerate(list(self.messages)) if i >= since and name in m]

    def statuses(self, since: int = 0) -> list[tuple[int, str]]:
        return [(i, m["STATUS"]) for i, m in enumerate(list(self.messages))
                if i >= since and "STATUS" in m]  # fmt: skip

    def close(self) -> None:
        self._closed = True
        self.sock.close()


@pytest.fixture
def manager() -> Iterator[Manager]:
    directory = tempfile.mkdtemp(prefix="na-notify-")  # short: socket paths are limited
    listening = Manager(os.path.join(directory, "notify"))
    yield listening
    listening.close()
    os.unlink(listening.path)
    os.rmdir(directory)
