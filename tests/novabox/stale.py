"""Clean up after runs whose owner died without stopping them.

A run normally stops itself (test fixture finalizer, ``atexit``,
``scripts/novabox down``). When its owner is killed outright, its vhost,
databases, processes and run directory stay. Before starting a box, the
harness looks for every run it can find (run directories, processes that
log into one, ``novabox-*`` vhosts, ``novabox_*`` databases) and removes the
ones with no owner left: a test run whose creating process is gone (its
services are orphans), a ``scripts/novabox up`` box none of whose services
lives.
"""

import fcntl
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.novabox import databases, processes
from tests.novabox.broker import Broker
from tests.novabox.errors import NovaBoxError
from tests.novabox.runs import RunId, RunState, owner_alive, pid_alive
from tests.novabox.settings import BoxSettings
from tests.novabox.venv import NovaVenv


def clean_stale_runs(
    settings: BoxSettings, venv: NovaVenv, *, log: Callable[[str], None] = print
) -> list[str]:
    """Remove what dead runs left; returns the run ids cleaned."""
    broker = Broker.from_settings(settings)
    vhosts = {run_id: vhost for vhost in broker.list_box_vhosts() if (run_id := _vhost_run(vhost))}
    servers = databases.server_databases(settings, venv)
    dbs: dict[str, list[tuple[databases.Databases, str]]] = {}
    for server in servers:
        for name in server.list_box_databases():
            run_id = RunId.from_database(name)
            if run_id is not None:
                dbs.setdefault(str(run_id), []).append((server, name))
    existing = list(settings.runs_dir.iterdir()) if settings.runs_dir.is_dir() else []
    with_processes = processes.run_dirs_with_processes(settings.runs_dir)
    run_dirs = {
        path.name: path
        for path in [*existing, *with_processes]
        if RunId.parse(path.name) is not None
    }

    cleaned = []
    for run_id in sorted(set(vhosts) | set(dbs) | set(run_dirs)):
        if _alive(run_id, run_dirs.get(run_id)):
            continue
        processes.stop_all([], settings.runs_dir / run_id)
        try:
            if run_id in vhosts:
                broker.delete_vhost(vhosts[run_id])
            for server, name in dbs.get(run_id, []):
                server.drop([name])
        except NovaBoxError as exc:
            log(f"novabox: could not clean stale run {run_id}: {exc}")
            continue
        shutil.rmtree(settings.runs_dir / run_id, ignore_errors=True)
        cleaned.append(run_id)
    if cleaned:
        log(f"novabox: cleaned {len(cleaned)} stale run(s): {', '.join(cleaned)}")
    return cleaned


@contextmanager
def cleaning_excluded(settings: BoxSettings) -> Iterator[None]:
    """Held around the tests' cleaning, and by a test while a box the cleaning could not
    tell alive is up (a ``scripts/novabox up`` box in a runs folder of the test's own,
    whose starting process is gone): each waits for the other, across pytest-xdist's
    workers."""
    settings.runs_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(settings.runs_dir.parent / "novabox-cleaning.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _vhost_run(vhost: str) -> str | None:
    run_id = RunId.from_vhost(vhost)
    return None if run_id is None else str(run_id)


def _alive(run_id: str, run_dir: Path | None) -> bool:
    """Whether the run still has an owner.

    A test run is owned by the process that started it; once that is gone,
    its services are orphans to stop. A box from ``scripts/novabox up`` is
    owned by its services as long as one of them lives.
    """
    parsed = RunId.parse(run_id)
    if parsed is None:
        return True  # not a run id of ours: leave it alone
    state = _load_state(run_dir)
    if state is not None and state.manual:
        return owner_alive(state)
    return pid_alive(parsed.owner_pid)


def _load_state(run_dir: Path | None) -> RunState | None:
    if run_dir is None:
        return None
    try:
        return RunState.load(run_dir)
    except (OSError, ValueError, TypeError):
        return None
