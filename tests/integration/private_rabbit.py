# mypy: disable-error-code="no-untyped-call"
"""A RabbitMQ node of the tests' own, for the tests that take a broker down.

The machine's RabbitMQ (127.0.0.1:5672, tests/integration/bus_support.py) is
shared with the other tests and with CI: no test may stop, restart or
reconfigure it. A test that restarts or kills a broker starts a
:class:`PrivateRabbit` instead: a node with its own name, AMQP port, Erlang
distribution port, configuration, Erlang cookie, data and log directories, all
in a temporary directory, with no plugins. It is stopped, whatever is left of
its processes killed and the directory removed afterwards, also when the test
failed::

    with PrivateRabbit() as node:            # or the fixture private_rabbit
        conf.set_override("transport_url", node.transport_url)
        ...
        node.stop_app(); node.start_app()    # rabbitmqctl stop_app / start_app
        node.restart_after_kill()            # kill -9 of the node, started again
        node.queue_messages("nova-autopilot")

How it is isolated from the shared broker:

* the scripts run are the server's own (``/usr/lib/rabbitmq/bin``), not the
  wrappers in ``/usr/sbin`` that switch to the ``rabbitmq`` user and its home;
* every setting comes from ``RABBITMQ_*`` environment variables (see
  ``rabbitmq-env`` and ``rabbitmq-defaults`` next to the scripts, and
  RabbitMQ's ``rabbit_env``): a node name of its own, ``RABBITMQ_NODE_PORT``
  and ``RABBITMQ_DIST_PORT`` (free ports, found by binding port 0), its own
  ``RABBITMQ_CONF_ENV_FILE`` (empty), ``RABBITMQ_CONFIG_FILE`` and
  ``RABBITMQ_CONFIG_FILES`` (the system's ``/etc/rabbitmq/rabbitmq.conf``
  would bind 5672), ``RABBITMQ_ENABLED_PLUGINS_FILE`` (``[].``),
  ``RABBITMQ_MNESIA_BASE``, ``RABBITMQ_LOG_BASE``, ``RABBITMQ_PID_FILE``...;
* ``HOME`` is the temporary directory, where a random Erlang cookie of its own
  is written: the node and the ``rabbitmqctl -n NODE`` calls made here (with the
  same environment) share it, and nothing else can talk to the node;
* the node only listens on 127.0.0.1. It registers its name with the
  machine's ``epmd`` (which every Erlang node shares; the name goes away with
  the node). Where no ``epmd`` runs yet, the node starts one, which stays, as
  with any Erlang program.

guest/guest may log in (from localhost only, RabbitMQ's default). A node boots
in 4 to 5 s here (RabbitMQ 3.10 on Erlang 25), the same again after a kill;
``stop_app`` then ``start_app`` take 1 to 2 s; each ``rabbitmqctl`` call takes
about a second (an Erlang VM of its own), so waits poll AMQP, not rabbitmqctl.
What a restart keeps is RabbitMQ's rule: durable queues, exchanges and their
bindings (between durable ends), with their persistent messages; transient
queues and exchanges are deleted, with the bindings to and from them.
The scripts' folder can be set with ``NOVA_AUTOPILOT_RABBITMQ_SBIN``; when the
server's scripts or Erlang are missing, the tests using the fixture are
skipped with a loud reason, except in CI, where they fail
(tests/unavailable.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import amqp
import pytest
from kombu.connection import Connection

from tests.unavailable import unavailable

__all__ = ["NodeFailed", "PrivateRabbit", "ToolsMissing", "private_rabbit", "server_scripts"]

USER = "guest"
PASSWORD = "guest"
HOST = "127.0.0.1"
#: Where distributions put the server's own scripts (not the /usr/sbin wrappers).
SCRIPT_DIRS = ("/usr/lib/rabbitmq/bin", "/usr/local/lib/rabbitmq/bin")
#: The ports rabbitmqctl's own Erlang node listens on (rabbitmq-env's
#: RABBITMQ_CTL_DIST_PORT_MIN..MAX): never given to the node, every CLI call needs them.
CLI_DIST_PORTS = range(35672, 35683)
#: Errors of a boot that another process's taking a port between its choice and
#: the node's binding explains: the boot is tried again on other ports.
PORT_TAKEN = ("eaddrinuse", "address already in use")


class ToolsMissing(RuntimeError):
    """The RabbitMQ server's scripts, or Erlang, are not installed."""


class NodeFailed(RuntimeError):
    """The node did not start, stop or answer as asked; the message ends with its log."""


def server_scripts() -> Path:
    """The folder of ``rabbitmq-server``, ``rabbitmqctl`` and ``rabbitmq-env``
    themselves; :class:`ToolsMissing` when there is none, or no ``erl``."""
    candidates = [os.environ.get("NOVA_AUTOPILOT_RABBITMQ_SBIN", ""), *SCRIPT_DIRS]
    found = shutil.which("rabbitmq-server")
    if found:  # a generic-unix or Homebrew install: the scripts are the commands
        candidates.append(str(Path(found).resolve().parent))
    for candidate in filter(None, candidates):
        folder = Path(candidate)
        commands = ("rabbitmq-server", "rabbitmqctl")
        if all(os.access(folder / c, os.X_OK) for c in commands) and (
            (folder / "rabbitmq-env").is_file()
        ):
            if shutil.which("erl") is None:
                raise ToolsMissing("no 'erl' (Erlang) on PATH to run a RabbitMQ node")
            return folder
    raise ToolsMissing(
        "no RabbitMQ server scripts (rabbitmq-server, rabbitmqctl, rabbitmq-env) in "
        f"{', '.join(filter(None, candidates))} (NOVA_AUTOPILOT_RABBITMQ_SBIN sets the folder)"
    )


def _free_ports(count: int) -> list[int]:
    """``count`` distinct free TCP ports of 127.0.0.1 (each held until all are chosen),
    none of rabbitmqctl's."""
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < count:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            held.append(sock)
            sock.bind((HOST, 0))
            port = sock.getsockname()[1]
            if port not in CLI_DIST_PORTS:
                ports.append(port)
        return ports
    finally:
        for sock in held:
            sock.close()


class PrivateRabbit:
    """One private RabbitMQ node (see the module's documentation).

    :meth:`start` (or ``with``) boots it and returns once it serves AMQP and
    ``rabbitmqctl await_startup`` agrees; :meth:`close` stops it, kills what is
    left of its processes and removes its directory. Every wait has a deadline;
    a node that does not come up is a :class:`NodeFailed` with the tail of its log.
    """

    def __init__(
        self,
        *,
        prefix: str = "nova-autopilot-test",
        boot_timeout: float = 90.0,
        ctl_timeout: float = 60.0,
    ) -> None:
        self.scripts = server_scripts()
        self.node = f"{prefix}-{os.getpid()}-{uuid.uuid4().hex[:6]}@localhost"
        self.boot_timeout = boot_timeout
        self.ctl_timeout = ctl_timeout
        self.port = 0
        self.dist_port = 0
        self.dir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        #: Seconds each boot took, up to the node serving (for the report of a test).
        self.boot_seconds: list[float] = []

    # --- where it is ----------------------------------------------------------------

    @property
    def transport_url(self) -> str:
        """oslo.messaging's form, as in Nova's configuration (the default vhost)."""
        return f"rabbit://{USER}:{PASSWORD}@{HOST}:{self.port}/"

    @property
    def amqp_url(self) -> str:
        return f"amqp://{USER}:{PASSWORD}@{HOST}:{self.port}//"

    @property
    def log_file(self) -> Path:
        assert self.dir is not None
        return self.dir / "log" / f"{self.node}.log"

    # --- starting and stopping the node ---------------------------------------------

    def __enter__(self) -> PrivateRabbit:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def start(self, *, attempts: int = 3) -> PrivateRabbit:
        """Create the node's directory and boot it (on other ports when one of
        the chosen ones was taken meanwhile)."""
        if self.dir is not None:
            raise RuntimeError("a PrivateRabbit starts once; build a new one")
        self.dir = Path(tempfile.mkdtemp(prefix="private-rabbit-"))
        try:
            self._write_files()
            for attempt in range(1, attempts + 1):
                self.port, self.dist_port = _free_ports(2)
                try:
                    self._boot()
                    return self
                except NodeFailed as exc:
                    taken = any(sign in str(exc).lower() for sign in PORT_TAKEN)
                    if not taken or attempt == attempts:
                        raise
                    self._kill_processes()
                    shutil.rmtree(self.dir / "mnesia", ignore_errors=True)
        except BaseException:
            self.close()
            raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Stop the node (``rabbitmqctl stop``, else SIGKILL), kill every process
        left of it, remove its directory. Safe to call more than once."""
        try:
            if self._process is not None and not self._exited():
                try:
                    self.ctl("stop", timeout=30)
                    self._wait(self._exited, f"{self.node} to exit after rabbitmqctl stop", 30)
                except NodeFailed:
                    pass  # killed below
        finally:
            try:
                self._kill_processes()
            finally:
                if self.dir is not None:
                    shutil.rmtree(self.dir, ignore_errors=True)

    def stop_app(self) -> None:
        """``rabbitmqctl stop_app``: RabbitMQ stops (every connection closed, the
        transient queues and exchanges gone), the Erlang node stays up."""
        self.ctl("stop_app")
        self._wait(lambda: not self.serves(), "the AMQP port to close after stop_app")

    def start_app(self) -> None:
        """``rabbitmqctl start_app``, then wait until the node serves again."""
        self.ctl("start_app")
        self._wait(self.serves, "AMQP after start_app")
        self.ctl("await_startup", "--timeout", str(round(self.boot_timeout)))

    def kill(self) -> None:
        """SIGKILL of the node's Erlang VM (``beam.smp``), as in a crash or an OOM
        kill: nothing is flushed or closed cleanly. Returns once it is gone."""
        pid = self.beam_pid()
        os.kill(pid, signal.SIGKILL)
        # The server script exits with the VM; then its helpers (erl_child_setup...).
        self._wait(self._exited, f"{self.node} to exit after SIGKILL of {pid}", 30)
        self._kill_processes()

    def restart_after_kill(self) -> None:
        """:meth:`kill`, then boot the node again on the same data directory
        (and the same ports): it recovers from what it had on disk."""
        self.kill()
        self._boot()

    def beam_pid(self) -> int:
        """The OS process id of the node's Erlang VM (from its PID file, checked to
        be one of the processes started here)."""
        assert self.dir is not None
        assert self._process is not None
        pid = int((self.dir / "node.pid").read_text().strip())
        if os.getpgid(pid) != self._process.pid:
            raise NodeFailed(f"{pid}, in {self.dir / 'node.pid'}, is not a process of {self.node}")
        return pid

    def ensure_running(self) -> None:
        """Boot the node again if its VM is gone, start RabbitMQ if it was stopped
        (what a test that failed half-way may leave)."""
        if self._process is None or self._exited():
            self._kill_processes()
            self._boot()
        elif not self.serves():
            self.start_app()

    def reset(self) -> None:
        """Leave the node as a test found it: running, with no queue and no
        exchange but the broker's own."""
        self.ensure_running()
        queues = [row["name"] for row in self.list_queues("name")]
        exchanges = [n for n in self.exchanges() if n and not n.startswith("amq.")]
        if queues or exchanges:
            with Connection(self.amqp_url) as conn:
                channel = conn.default_channel
                for name in queues:
                    channel.queue_delete(queue=name)
                for name in exchanges:
                    channel.exchange_delete(exchange=name)

    # --- looking at it --------------------------------------------------------------

    def ctl(self, *args: str, timeout: float | None = None) -> str:
        """``rabbitmqctl -n NODE -q ARGS`` (with the node's cookie); its output."""
        try:
            result = subprocess.run(
                [str(self.scripts / "rabbitmqctl"), "-n", self.node, "-q", *args],
                env=self._env(),
                cwd=self.dir,
                capture_output=True,
                text=True,
                check=False,
                timeout=timeout or self.ctl_timeout,
            )
        except subprocess.TimeoutExpired as exc:
            raise NodeFailed(f"rabbitmqctl {' '.join(args)} timed out{self._log_tail()}") from exc
        if result.returncode != 0:
            raise NodeFailed(
                f"rabbitmqctl -n {self.node} {' '.join(args)} exited {result.returncode}: "
                f"{result.stdout}{result.stderr}{self._log_tail()}"
            )
        return result.stdout

    def serves(self) -> bool:
        """Whether guest can open an AMQP connection to the node now."""
        connection = amqp.Connection(
            host=f"{HOST}:{self.port}", userid=USER, password=PASSWORD, connect_timeout=2
        )
        try:
            connection.connect()
            connection.close()
        except Exception:  # noqa: BLE001 - refused, reset, or py-amqp's errors of a boot
            connection.collect()  # the socket, whatever state it is in
            return False
        return True

    def list_queues(self, *fields: str) -> list[dict[str, Any]]:
        """``rabbitmqctl list_queues FIELDS`` of the default vhost, as rows."""
        rows: list[dict[str, Any]] = json.loads(
            self.ctl("list_queues", "-p", "/", *fields, "--formatter", "json") or "[]"
        )
        return rows

    def queues(self) -> dict[str, int]:
        """Queue name -> messages (ready and unacknowledged), as the node says."""
        return {
            r["name"]: int(r.get("messages") or 0) for r in self.list_queues("name", "messages")
        }

    def queue_messages(self, name: str) -> int | None:
        """The messages in queue ``name`` as the node says; None when it does not exist."""
        return self.queues().get(name)

    def queue_durable(self, name: str) -> bool | None:
        """Whether queue ``name`` is durable; None when it does not exist."""
        info = self.queue_info(name)
        return None if info is None else bool(info["durable"])

    def queue_info(self, name: str) -> dict[str, Any] | None:
        """``{"messages": ..., "durable": ..., "type": ...}`` of queue ``name`` in one
        ``rabbitmqctl`` call (``type``: ``classic`` or ``quorum``); None when it does
        not exist."""
        rows = self.list_queues("name", "messages", "durable", "type")
        return next(
            (
                {
                    "messages": int(r.get("messages") or 0),
                    "durable": bool(r["durable"]),
                    "type": str(r.get("type")),
                }
                for r in rows
                if r["name"] == name
            ),
            None,
        )

    def exchanges(self) -> dict[str, bool]:
        """Exchange name -> durable, for the default vhost."""
        rows = json.loads(
            self.ctl("list_exchanges", "-p", "/", "name", "durable", "--formatter", "json") or "[]"
        )
        return {str(r["name"]): bool(r["durable"]) for r in rows}

    # --- inside ---------------------------------------------------------------------

    def _env(self) -> dict[str, str]:
        assert self.dir is not None
        d = self.dir
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        return {
            **inherited,
            "HOME": str(d),  # the cookie: d/.erlang.cookie
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": HOST,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONF_ENV_FILE": str(d / "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": str(d / "rabbitmq.conf"),
            "RABBITMQ_CONFIG_FILES": str(d / "conf.d"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(d / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(d / "enabled_plugins"),
            "RABBITMQ_PLUGINS_EXPAND_DIR": str(d / "plugins-expand"),
            "RABBITMQ_MNESIA_BASE": str(d / "mnesia"),
            "RABBITMQ_LOG_BASE": str(d / "log"),
            "RABBITMQ_PID_FILE": str(d / "node.pid"),
            "RABBITMQ_MOTD_FILE": str(d / "motd"),
            "ERL_EPMD_ADDRESS": HOST,
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }

    def _write_files(self) -> None:
        d = self.dir
        assert d is not None
        for folder in ("mnesia", "log", "conf.d", "plugins-expand"):
            (d / folder).mkdir()
        cookie = d / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(20).upper())
        cookie.chmod(0o400)
        (d / "rabbitmq-env.conf").write_text("")
        (d / "enabled_plugins").write_text("[].\n")
        # The listener comes from RABBITMQ_NODE_IP_ADDRESS / _PORT; a small disk
        # limit, so that a nearly full /tmp does not block the tests' publishers.
        (d / "rabbitmq.conf").write_text("disk_free_limit.absolute = 10MB\n")

    def _boot(self) -> None:
        """Start the server script and wait until the node serves."""
        assert self.dir is not None
        began = time.monotonic()
        with (self.dir / "server.out").open("ab") as out:
            self._process = subprocess.Popen(
                [str(self.scripts / "rabbitmq-server")],
                env=self._env(),
                cwd=self.dir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: killed as one
            )

        def served() -> bool:
            if self._exited():
                raise NodeFailed(f"{self.node} exited while booting{self._log_tail()}")
            return self.serves()

        self._wait(served, f"{self.node} to serve AMQP on port {self.port}", self.boot_timeout)
        self.ctl("await_startup", "--timeout", str(round(self.boot_timeout)))
        self.boot_seconds.append(round(time.monotonic() - began, 1))

    def _wait(self, check: Any, what: str, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (timeout or self.boot_timeout)
        while not check():
            if time.monotonic() > deadline:
                raise NodeFailed(f"timed out waiting for {what}{self._log_tail()}")
            time.sleep(0.1)

    def _exited(self) -> bool:
        """Whether the server script has exited, without reaping it: until
        :meth:`_kill_processes` reaps it, its process id (the id of the node's
        process group) cannot be given to another process."""
        process = self._process
        if process is None or process.returncode is not None:
            return True
        try:
            status = os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return True
        return status is not None

    def _kill_processes(self) -> None:
        """SIGKILL to what is left of the node's process group (by its id), then reap
        the server script (once: its id is free for others after that)."""
        process = self._process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired as exc:
            raise NodeFailed(f"{self.node}'s processes outlived SIGKILL") from exc

    def _log_tail(self, lines: int = 40) -> str:
        if self.dir is None:
            return ""
        parts = []
        for path in (self.dir / "server.out", self.log_file):
            if path.exists():
                tail = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"\n--- {path.name} (last {len(tail)} lines) ---\n" + "\n".join(tail))
        return "".join(parts)


@pytest.fixture(scope="module")
def private_rabbit() -> Iterator[PrivateRabbit]:
    """A private node for the test module (see :class:`PrivateRabbit`); bind it in a
    module with ``private_rabbit = private_rabbit_module.private_rabbit``. Tests
    leave it running and clean (:meth:`PrivateRabbit.reset`)."""
    try:
        node = PrivateRabbit()
    except ToolsMissing as exc:
        unavailable(f"RABBITMQ SERVER UNAVAILABLE, the broker restart tests did not run: {exc}")
    with node:
        yield node
