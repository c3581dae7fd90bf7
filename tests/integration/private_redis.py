"""A Redis server of the test's own, which the test may stop and start at will.

The machine's Redis (127.0.0.1:6379, tests/integration/redis_support.py) is shared
by other tests and by CI: no test may stop, restart or reconfigure it. A test that
takes the coordination backend away starts a :class:`PrivateRedis` instead:

* ``/usr/bin/redis-server`` (``NOVA_AUTOPILOT_REDIS_SERVER`` overrides it) on a
  free TCP port of 127.0.0.1 (found by binding port 0), bound to 127.0.0.1 only;
* with no persistence (``--save "" --appendonly no``): a server stopped and
  started again comes back EMPTY, as a Redis that crashed or failed over to a
  replica that had not caught up: every lock, membership and group key is gone;
* its working directory, log and PID file in a temporary directory of its own;
* in a process group of its own, so nothing of it outlives :meth:`close`.

:meth:`stop` shuts it down (``SHUTDOWN NOSAVE``, else SIGTERM, else SIGKILL) and
returns once the process has exited; :meth:`start` starts it again on the same
port; :meth:`running` says whether it answers ``PING``; :meth:`close` (or leaving
the ``with`` block, or the end of the ``private_redis`` fixture, also when the test
failed) stops it and removes the directory::

    with PrivateRedis() as server:          # or the fixture private_redis
        conf = f"backend_url = {server.url}"
        server.stop()                       # the coordination backend is gone
        server.start()                      # and back, empty, on the same port

Without the binary the tests that need it are unavailable (skipped with a loud
reason, failed in CI: tests/unavailable.py).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import pytest
import redis

from tests.novabox.probes import free_ports
from tests.unavailable import unavailable

__all__ = ["PrivateRedis", "RedisFailed", "private_redis"]

#: The server binary (Debian's place).
SERVER = Path(os.environ.get("NOVA_AUTOPILOT_REDIS_SERVER", "/usr/bin/redis-server"))
HOST = "127.0.0.1"
#: Seconds to wait for the server to answer after a start, or to exit after a stop.
WAIT_S = 30.0


class RedisFailed(RuntimeError):
    """The server did not start or stop as asked; the message ends with its log."""


def free_port() -> int:
    """A free TCP port of 127.0.0.1 (the kernel's choice for port 0)."""
    return free_ports(1)[0]


class PrivateRedis:
    """One private redis-server (see the module's documentation)."""

    def __init__(self, *, binary: Path = SERVER) -> None:
        if not os.access(binary, os.X_OK):
            raise FileNotFoundError(f"no redis-server at {binary}")
        self.binary = binary
        self.dir = Path(tempfile.mkdtemp(prefix="private-redis-"))
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None
        #: How many times it was started (1 after the first start).
        self.starts = 0

    # -- where it is --------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT``, the form of ``[coordination] backend_url``."""
        return f"redis://{HOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    def client(self) -> redis.Redis:
        """A client of the server (short timeouts: it may be down); close it after use."""
        return redis.Redis(host=HOST, port=self.port, socket_timeout=2, socket_connect_timeout=2)

    # -- life cycle ---------------------------------------------------------------------

    def __enter__(self) -> PrivateRedis:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> PrivateRedis:
        """Start the server on its port (the same one every time) and return once it
        answers PING."""
        if self.pid is not None:
            raise RuntimeError(f"the private redis-server on port {self.port} already runs")
        with (self.dir / "server.out").open("ab") as out:
            self._process = subprocess.Popen(
                [
                    str(self.binary),
                    "--port",
                    str(self.port),
                    "--bind",
                    HOST,
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(self.dir),
                    "--daemonize",
                    "no",
                    "--pidfile",
                    str(self.dir / "redis.pid"),
                    "--logfile",
                    str(self.dir / "redis.log"),
                ],
                cwd=self.dir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a process group of its own: killed as one
            )
        self.starts += 1
        deadline = time.monotonic() + WAIT_S
        while not self.running():
            if self._process.poll() is not None:
                raise RedisFailed(
                    f"redis-server exited with {self._process.returncode}{self._tail()}"
                )
            if time.monotonic() > deadline:
                raise RedisFailed(f"redis-server did not answer within {WAIT_S}s{self._tail()}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Shut the server down (``SHUTDOWN NOSAVE``; SIGTERM, then SIGKILL, if it does
        not exit) and return once its process has exited and been reaped. Every key is
        lost (no persistence). Safe to call when it is not running."""
        process = self._process
        if process is None or process.poll() is not None:
            return
        client = self.client()
        try:
            client.shutdown(nosave=True)
        except redis.RedisError:
            pass  # redis-py reads the closed connection as an error, or it is not answering
        finally:
            client.close()
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                process.wait(timeout=WAIT_S / 2)
                return
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, sig)
        process.wait(timeout=WAIT_S)

    def running(self) -> bool:
        """Whether the server process runs and answers PING now."""
        if self.pid is None:
            return False
        client = self.client()
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def close(self) -> None:
        """Stop the server, kill whatever is left of its process group, remove its
        directory. Safe to call more than once."""
        try:
            self.stop()
        finally:
            process = self._process
            if process is not None and process.poll() is None:  # not reaped: its id is ours
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=WAIT_S)
            shutil.rmtree(self.dir, ignore_errors=True)

    def _tail(self, lines: int = 20) -> str:
        parts = []
        for path in (self.dir / "server.out", self.dir / "redis.log"):
            if path.exists():
                tail = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"\n--- {path.name} ---\n" + "\n".join(tail))
        return "".join(parts)


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    """A private redis-server, running, for one test (see :class:`PrivateRedis`); bind it
    in a module with ``private_redis = private_redis_module.private_redis``. Stopped and
    its directory removed afterwards, whatever the test did."""
    try:
        server = PrivateRedis()
    except FileNotFoundError as exc:
        unavailable(f"REDIS SERVER UNAVAILABLE, the coordination outage tests did not run: {exc}")
    try:
        yield server.start()
    finally:
        server.close()
