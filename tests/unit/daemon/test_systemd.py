"""The systemd notification client, against real datagram sockets: what systemd
would read, for a socket path and for an abstract socket; nothing at all when no
service manager listens."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from nova_autopilot.daemon.systemd import Notifier, notify_address, watchdog_interval


class Manager:
    """The service manager's end: a bound AF_UNIX datagram socket."""

    def __init__(self, address: str | bytes) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(5)

    def receive(self) -> dict[str, str]:
        data = self.sock.recv(4096).decode()
        return dict(line.split("=", 1) for line in data.split("\n"))

    def nothing_waiting(self) -> bool:
        self.sock.setblocking(False)
        try:
            self.sock.recv(4096)
        except BlockingIOError:
            return True
        finally:
            self.sock.settimeout(5)
        return False


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[tuple[Manager, str]]:
    path = str(tmp_path / "notify")
    listening = Manager(path)
    yield listening, path
    listening.sock.close()


def test_without_notify_socket_every_call_does_nothing() -> None:
    notifier = Notifier.from_environment({})
    assert not notifier.enabled
    assert notifier.watchdog_s is None
    assert not notifier.ready(status="up")
    assert not notifier.watchdog()
    assert not notifier.stopping()


def test_ready_with_status_reaches_the_socket_path_as_one_datagram(
    manager: tuple[Manager, str],
) -> None:
    listening, path = manager
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": path})
    assert notifier.ready(status="consuming: 0 operations in flight")
    assert listening.receive() == {"READY": "1", "STATUS": "consuming: 0 operations in flight"}
    notifier.close()


def test_the_abstract_namespace_form_is_reached_through_its_at_sign() -> None:
    name = f"nova-autopilot-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    listening = Manager(b"\0" + name.encode())
    try:
        notifier = Notifier.from_environment({"NOTIFY_SOCKET": "@" + name})
        assert notifier.stopping(status="stopping")
        assert listening.receive() == {"STOPPING": "1", "STATUS": "stopping"}
    finally:
        listening.sock.close()


def test_a_reload_is_announced_with_the_monotonic_time_it_started(
    manager: tuple[Manager, str],
) -> None:
    listening, path = manager
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": path})
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    notifier.reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    message = listening.receive()
    assert message["RELOADING"] == "1"
    assert before <= int(message["MONOTONIC_USEC"]) <= after


def test_watchdog_pings_go_out_only_when_a_watchdog_is_set_for_this_process(
    manager: tuple[Manager, str],
) -> None:
    listening, path = manager
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}
    notifier = Notifier.from_environment(env)
    assert notifier.watchdog_s == 30.0
    assert notifier.watchdog()
    assert listening.receive() == {"WATCHDOG": "1"}

    unset = Notifier.from_environment({"NOTIFY_SOCKET": path})
    assert not unset.watchdog()
    assert listening.nothing_waiting()


def test_the_watchdog_interval_belongs_to_the_process_watchdog_pid_names() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "5000000"}, 42) == 5.0
    assert watchdog_interval({"WATCHDOG_USEC": "5000000", "WATCHDOG_PID": "42"}, 42) == 5.0
    assert watchdog_interval({"WATCHDOG_USEC": "5000000", "WATCHDOG_PID": "43"}, 42) is None
    assert watchdog_interval({"WATCHDOG_USEC": "5000000", "WATCHDOG_PID": "x"}, 42) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}, 42) is None
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}, 42) is None
    assert watchdog_interval({}, 42) is None


def test_a_status_with_a_newline_stays_one_assignment(manager: tuple[Manager, str]) -> None:
    listening, path = manager
    Notifier.from_environment({"NOTIFY_SOCKET": path}).status("one\nREADY=1")
    assert listening.receive() == {"STATUS": "one READY=1"}


def test_an_address_systemd_may_give_but_this_client_does_not_speak_is_ignored() -> None:
    assert notify_address({"NOTIFY_SOCKET": "vsock:2:1234"}) is None
    assert notify_address({"NOTIFY_SOCKET": "@"}) is None
    assert notify_address({"NOTIFY_SOCKET": "/run/systemd/notify"}) == "/run/systemd/notify"


def test_a_manager_that_went_away_costs_a_logged_failure_not_an_exception(
    tmp_path: Path,
) -> None:
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert not notifier.ready()
    assert not notifier.status("still running")
    listening = Manager(str(tmp_path / "gone"))
    try:
        assert notifier.status("back")
        assert listening.receive() == {"STATUS": "back"}
    finally:
        listening.sock.close()
