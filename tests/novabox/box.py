"""The whole box: bring Nova up for one run, tell when it is ready, take it all down.

``Box.start`` creates, in order: a run directory, a RabbitMQ vhost, four
databases, the configuration; it syncs the databases (Placement in parallel
with Nova's cell set-up), starts placement-api and nova-api under gunicorn,
nova-conductor, nova-scheduler and nova-compute, and returns once the
compute host is registered, mapped to cell1 and has inventory in Placement.
Each step is recorded in the run's ``state.json`` before it is taken, so
that ``Box.stop`` (in this process, from ``scripts/novabox down``, or from
the stale-run cleaner) knows what to remove: the processes (by process group),
the vhost, the databases and the run directory. A failed start stops what
it started and raises with the tail of the failing service's log.
"""

import atexit
import shutil
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tests.novabox import config as run_config
from tests.novabox import databases, probes, processes
from tests.novabox import services as definitions
from tests.novabox.broker import Broker
from tests.novabox.errors import CommandFailed, NovaBoxError, ServiceFailed, TeardownIncomplete
from tests.novabox.runs import RunId, RunState
from tests.novabox.settings import BoxSettings
from tests.novabox.venv import NovaVenv
from tests.novabox.waiting import Timeout, wait_for

Log = Callable[[str], None]


@dataclass(frozen=True)
class Leftovers:
    """What a stopped run still has on the machine (normally nothing)."""

    pids: list[int]
    vhost: str | None
    databases: list[str]
    run_dir: str | None

    @property
    def clean(self) -> bool:
        return not (self.pids or self.vhost or self.databases or self.run_dir)

    def __str__(self) -> str:
        if self.clean:
            return "nothing left behind"
        parts = []
        if self.pids:
            parts.append(f"processes {self.pids}")
        if self.vhost:
            parts.append(f"vhost {self.vhost}")
        if self.databases:
            parts.append(f"databases {self.databases}")
        if self.run_dir:
            parts.append(f"run directory {self.run_dir}")
        return "left behind: " + ", ".join(parts)


@dataclass
class Box:
    """A running (or stopped) box. Build it with :meth:`start` or :meth:`attach`."""

    settings: BoxSettings
    venv: NovaVenv
    state: RunState
    log: Log = print
    services: dict[str, processes.Service] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    stopped: bool = False
    _deadline: float = 0.0

    # -- what tests and the CLI read -------------------------------------------------

    @property
    def run_id(self) -> str:
        return self.state.run_id

    @property
    def run_dir(self) -> Path:
        return Path(self.state.run_dir)

    @property
    def compute_url(self) -> str:
        return self._required(self.state.compute_url, "compute_url")

    @property
    def placement_url(self) -> str:
        return self._required(self.state.placement_url, "placement_url")

    @property
    def transport_url(self) -> str:
        return self._required(self.state.transport_url, "transport_url")

    @property
    def amqp_url(self) -> str:
        return self._required(self.state.amqp_url, "amqp_url")

    @property
    def vhost(self) -> str:
        return self._required(self.state.vhost, "vhost")

    def log_tail(self, service: str, lines: int = 40) -> str:
        return processes.log_tail(self.run_dir / "logs" / f"{service}.log", lines)

    # -- start ---------------------------------------------------------------------

    @classmethod
    def start(
        cls, settings: BoxSettings, venv: NovaVenv, *, manual: bool = False, log: Log = print
    ) -> "Box":
        """Start a box and return it once it is ready.

        A box started with ``manual=True`` is meant to outlive this process
        (``scripts/novabox up``); any other box is also stopped at interpreter
        exit if nobody stopped it before.
        """
        run_id = RunId.new()
        run_dir = settings.runs_dir / str(run_id)
        run_dir.mkdir(parents=True)
        state = RunState(run_id=str(run_id), run_dir=str(run_dir), manual=manual)
        state.save()
        box = cls(settings, venv, state, log)
        if not manual:
            atexit.register(box._stop_at_exit)
        try:
            box._bring_up()
        except BaseException:
            log(f"novabox: start failed; stopping run {run_id} (logs kept in {run_dir}/logs)")
            try:
                box.stop(keep_run_dir=True)
            except Exception as exc:  # noqa: BLE001 (the start failure is what to report)
                log(f"novabox: stopping the failed run also failed: {exc}")
            raise
        return box

    @classmethod
    def attach(cls, settings: BoxSettings, run_dir: Path, *, log: Log = print) -> "Box":
        """A box started by another process (to stop it or show its status)."""
        state = RunState.load(run_dir)
        venv = NovaVenv(settings.venv_dir, built=False, seconds=0.0)
        box = cls(settings, venv, state, log)
        logs = run_dir / "logs"
        box.services = {
            name: processes.Service(name, pid, logs / f"{name}.log")
            for name, pid in state.services.items()
        }
        return box

    def _bring_up(self) -> None:
        started = time.monotonic()
        self._deadline = started + self.settings.start_timeout
        run_id = self.state.id
        broker = Broker.from_settings(self.settings)

        with self._timed("resources"):
            self.state.vhost = run_id.vhost
            self.state.transport_url = broker.transport_url(run_id.vhost)
            self.state.amqp_url = broker.amqp_url(run_id.vhost)
            self.state.save()
            broker.create_vhost(run_id.vhost)
            dbs = databases.choose(self.settings, self.venv, self.run_dir)
            names = databases.names_for(run_id)
            self.state.database_kind = dbs.kind
            self.state.databases = list(names.values())
            self.state.save()
            dbs.create(list(names.values()))

        compute_port, placement_port = probes.free_ports(2)
        cfg = run_config.RunConfig(
            run_dir=self.run_dir,
            compute_port=compute_port,
            placement_port=placement_port,
            transport_url=self.state.transport_url,
            database_urls={role: dbs.url(name) for role, name in names.items()},
            debug=self.settings.debug,
        )
        run_config.write_all(cfg, self.venv.path / "etc" / "nova" / "api-paste.ini")
        self.state.compute_url = cfg.compute_url
        self.state.placement_url = cfg.placement_url
        self.state.save()
        env = definitions.environment(self.venv, cfg, self.run_id, sqlite=dbs.kind == "sqlite")

        with self._timed("database sync"):
            self._sync_databases(cfg, env, cell0_url=dbs.url(names["nova_cell0"]))

        with self._timed("services ready"):
            commands = definitions.commands(self.venv, cfg)
            # nova-compute pings the conductor once at start and waits 10s if
            # nobody answers: start it only once the conductor is up.
            self._start_services(commands, definitions.CONTROL_PLANE, env)
            self._wait_until_ready(definitions.control_plane_ready(cfg))
            self._start_services(commands, (definitions.COMPUTE,), env)
            self._wait_until_ready(definitions.compute_ready(cfg))
            self._map_compute_host(cfg, env)

        self.state.ready = True
        self.state.save()
        self.timings["total"] = time.monotonic() - started
        summary = ", ".join(f"{k} {v:.1f}s" for k, v in self.timings.items())
        self.log(f"novabox: run {run_id} ready ({self.state.database_kind}; {summary})")

    def _sync_databases(
        self, cfg: run_config.RunConfig, env: dict[str, str], *, cell0_url: str
    ) -> None:
        """Create the schemas: four independent sequences, run side by side."""
        manage = self.venv.command("nova-manage")
        nova = [manage, "--config-file", str(cfg.nova_conf)]
        cell0 = [manage, "--config-file", str(cfg.cell0_conf)]
        placement = [
            self.venv.command("placement-manage"),
            "--config-file",
            str(cfg.placement_conf),
        ]
        sequences = [
            [
                [*nova, "api_db", "sync"],
                [*nova, "cell_v2", "map_cell0", "--database_connection", cell0_url],
                [*nova, "cell_v2", "create_cell", "--name", "cell1"],
            ],
            [[*nova, "db", "sync", "--local_cell"]],
            [[*cell0, "db", "sync", "--local_cell"]],
            [[*placement, "db", "sync"]],
        ]

        def run(sequence: list[list[str]]) -> None:
            for argv in sequence:
                self._command(argv, env)

        with ThreadPoolExecutor(len(sequences), thread_name_prefix="novabox-sync") as pool:
            for future in [pool.submit(run, sequence) for sequence in sequences]:
                future.result()

    def _start_services(
        self, commands: dict[str, list[str]], names: tuple[str, ...], env: dict[str, str]
    ) -> None:
        for name in names:
            service = processes.start(
                name, commands[name], env=env, cwd=self.run_dir, log_dir=self.run_dir / "logs"
            )
            self.services[name] = service
            self.state.services[name] = service.pid
            self.state.save()

    def _wait_until_ready(self, steps: list[definitions.Readiness]) -> None:
        for step in steps:
            self._wait_for(step.service, step.what, step.probe)

    def _map_compute_host(self, cfg: run_config.RunConfig, env: dict[str, str]) -> None:
        """Map the compute host to cell1 (what ``discover_hosts`` is for), then check it."""
        nova_manage = [self.venv.command("nova-manage"), "--config-file", str(cfg.nova_conf)]
        discover = [*nova_manage, "cell_v2", "discover_hosts", "--strict", "--verbose"]

        def discovered() -> bool:
            try:
                self._command(discover, env)
            except CommandFailed as exc:
                if exc.returncode == 1:  # --strict: no new host found yet
                    return False
                raise
            return True

        self._wait_for("nova-compute", "the compute host to be mapped to cell1", discovered)
        self._wait_for(
            "nova-compute",
            "the compute node to be listed",
            lambda: probes.hypervisor_listed(cfg.compute_url, run_config.COMPUTE_HOST),
        )

    def _wait_for(self, service: str, what: str, probe: Callable[[], object]) -> None:
        def check() -> object:
            self._raise_if_a_service_exited()
            return probe()

        remaining = max(1.0, self._deadline - time.monotonic())
        try:
            wait_for(check, timeout=remaining, what=what, interval=0.2)
        except Timeout as exc:
            raise ServiceFailed(self._with_log(service, str(exc))) from None

    def _raise_if_a_service_exited(self) -> None:
        for name, service in self.services.items():
            code = service.exited()
            if code is not None:
                raise ServiceFailed(self._with_log(name, f"{name} exited with status {code}"))

    def _with_log(self, service: str, message: str) -> str:
        log = self.run_dir / "logs" / f"{service}.log"
        return f"{message}\n--- last lines of {log} ---\n{self.log_tail(service)}"

    def _command(self, argv: list[str], env: dict[str, str]) -> str:
        result = subprocess.run(
            argv,
            env=env,
            cwd=self.run_dir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
            start_new_session=True,
        )
        output = result.stdout + result.stderr
        log_dir = self.run_dir / "logs"
        log_dir.mkdir(exist_ok=True)
        with open(log_dir / "setup.log", "a") as handle:
            handle.write(f"$ {' '.join(argv)}\n{output}\n")
        if result.returncode != 0:
            raise CommandFailed(argv, result.returncode, output)
        return output

    def _timed(self, name: str) -> "_Timer":
        return _Timer(self.timings, name)

    # -- stop ----------------------------------------------------------------------

    def stop(self, *, keep_run_dir: bool | None = None) -> Leftovers:
        """Stop every process, delete the vhost and the databases, remove the run directory.

        Each step is tried even when an earlier one failed. Returns what is
        left (see :attr:`Leftovers.clean`); raises :class:`TeardownIncomplete`
        only when a step raised, after all were tried.
        """
        started = time.monotonic()
        keep = self.settings.keep_run_dir if keep_run_dir is None else keep_run_dir
        errors: list[str] = []
        processes.stop_all(self.services.values(), self.run_dir)
        broker = Broker.from_settings(self.settings)
        if self.state.vhost:
            try:
                broker.delete_vhost(self.state.vhost)
            except NovaBoxError as exc:
                errors.append(f"deleting vhost {self.state.vhost}: {exc}")
        dbs = self._databases()
        if dbs is not None and self.state.databases:
            try:
                dbs.drop(self.state.databases)
            except NovaBoxError as exc:
                errors.append(f"dropping databases: {exc}")
        leftovers = self.leftovers(include_run_dir=False)
        if leftovers.clean and not keep:
            shutil.rmtree(self.run_dir, ignore_errors=True)
        self.stopped = True
        self.timings["stop"] = time.monotonic() - started
        atexit.unregister(self._stop_at_exit)
        self.log(f"novabox: run {self.run_id} stopped in {self.timings['stop']:.1f}s, {leftovers}")
        if errors:
            raise TeardownIncomplete("; ".join(errors))
        return self.leftovers(include_run_dir=not keep)

    def leftovers(self, *, include_run_dir: bool = True) -> Leftovers:
        """Look at the machine for anything of this run still there."""
        broker = Broker.from_settings(self.settings)
        vhost = self.state.vhost if self.state.vhost in broker.list_vhosts() else None
        dbs = self._databases()
        remaining: list[str] = []
        if dbs is not None and dbs.kind != "sqlite":
            prefix = self.state.id.database_prefix
            remaining = [name for name in dbs.list_box_databases() if name.startswith(prefix)]
        run_dir = str(self.run_dir) if include_run_dir and self.run_dir.exists() else None
        return Leftovers(processes.processes_of_run(self.run_dir), vhost, remaining, run_dir)

    def _databases(self) -> databases.Databases | None:
        kind = self.state.database_kind
        if kind is None:
            return None
        if kind == "sqlite":
            return databases.SqliteDatabases(self.run_dir / "db")
        url = self.settings.mysql_url if kind == "mysql" else self.settings.postgresql_url
        return databases.ServerDatabases(kind, url, self.venv)

    def _stop_at_exit(self) -> None:
        if not self.stopped:
            self.stop()

    @staticmethod
    def _required(value: str | None, name: str) -> str:
        if value is None:
            raise NovaBoxError(f"the box has no {name} (it did not get that far)")
        return value


@dataclass
class _Timer:
    timings: dict[str, float]
    name: str
    started: float = 0.0

    def __enter__(self) -> None:
        self.started = time.monotonic()

    def __exit__(self, *exc: object) -> None:
        self.timings[self.name] = time.monotonic() - self.started
