"""Starting and stopping the box's service processes.

Each service runs in a session and process group of its own, so that
stopping it also stops what it forked (gunicorn's worker, oslo.service's
children). Its stdout and stderr go to ``<run dir>/logs/<name>.log``, and
that is how the run's processes are found again, by this process or by
another one: a process belongs to a run when its stdout or stderr is a file
in the run's ``logs`` directory (deleted or not). Forked children inherit it,
and unlike the command line or the environment it survives the process
renaming itself (gunicorn and oslo.service do). A pid recorded long ago that
the system has since given to another process is never signalled.
"""

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tests.novabox.runs import pid_alive

RUN_ID_VARIABLE = "NOVABOX_RUN_ID"
"""Set in every service's environment, for people looking at ``ps e``."""


@dataclass
class Service:
    """A started service: its name, the pid of its group leader, its log."""

    name: str
    pid: int
    log: Path
    popen: subprocess.Popen[bytes] | None = None
    """Set in the process that started it (None after a reload from state)."""

    def exited(self) -> int | None:
        """The exit code if the leader has exited, else None."""
        if self.popen is not None:
            return self.popen.poll()
        return None if pid_alive(self.pid) else -1

    def log_tail(self, lines: int = 40) -> str:
        return log_tail(self.log, lines)


def start(name: str, argv: list[str], *, env: dict[str, str], cwd: Path, log_dir: Path) -> Service:
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{name}.log"
    with open(log, "ab") as output:
        popen = subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Service(name, popen.pid, log, popen)


def stop_all(services: Iterable[Service], run_dir: Path, *, grace: float = 5.0) -> list[int]:
    """Stop every process of the run: SIGTERM to their groups, SIGKILL after ``grace``.

    The processes are found by their log files, not only by the recorded
    pids, so a worker whose leader died is not missed. Returns the pids
    still alive at the end (normally none).
    """
    services = list(services)
    for signum, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        members = processes_of_run(run_dir)
        if not members:
            break
        for pgid in _groups(members) - {os.getpgrp()}:
            _signal_group(pgid, signum)
        if signum == signal.SIGKILL:
            for pid in members:
                _signal_pid(pid, signum)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and processes_of_run(run_dir):
            _reap(services)
            time.sleep(0.1)
    _reap(services)
    return processes_of_run(run_dir)


def processes_of_run(run_dir: Path) -> list[int]:
    """Live pids whose stdout or stderr is a log file of the run in ``run_dir``."""
    logs = f"{run_dir}/logs/"
    return [pid for pid, target in _log_outputs() if target.startswith(logs)]


def run_dirs_with_processes(runs_dir: Path) -> set[Path]:
    """Run directories (existing or deleted) that live processes still log into."""
    found = set()
    prefix = f"{runs_dir}/"
    for _pid, target in _log_outputs():
        if target.startswith(prefix):
            relative = target.removeprefix(prefix).split("/")
            if len(relative) >= 3 and relative[1] == "logs":
                found.add(runs_dir / relative[0])
    return found


def _log_outputs() -> list[tuple[int, str]]:
    """(pid, path of its stdout or stderr) for every live process but this one."""
    outputs = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        for fd in ("1", "2"):
            try:
                target = os.readlink(entry / "fd" / fd)
            except OSError:
                continue
            if target.startswith("/") and pid_alive(int(entry.name)):
                outputs.append((int(entry.name), target.removesuffix(" (deleted)")))
                break
    return outputs


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def _groups(pids: list[int]) -> set[int]:
    groups = set()
    for pid in pids:
        try:
            groups.add(os.getpgid(pid))
        except ProcessLookupError:
            continue
    return groups


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _signal_pid(pid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signum)


def _reap(services: Iterable[Service]) -> None:
    for service in services:
        if service.popen is not None:
            service.popen.poll()
