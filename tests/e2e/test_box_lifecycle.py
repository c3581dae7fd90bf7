"""The box itself: it really uses the machine's services, and takes everything away again.

These tests start boxes of their own, in a run directory of their own, and
look at the machine directly (processes, RabbitMQ through rabbitmqctl, the
database server) rather than trusting the harness's own report.
"""

import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.novabox import databases, probes, stale
from tests.novabox.broker import Broker
from tests.novabox.processes import processes_of_run
from tests.novabox.runs import MANUAL_FILE, RunState, pid_alive
from tests.novabox.settings import REPO_ROOT, BoxSettings
from tests.novabox.venv import NovaVenv

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SCRIPT = REPO_ROOT / "scripts" / "novabox"


@pytest.fixture
def own_settings(box_settings: BoxSettings, tmp_path: Path) -> BoxSettings:
    return dataclasses.replace(box_settings, runs_dir=tmp_path / "runs")


@pytest.fixture
def not_cleaned(box_settings: BoxSettings) -> Iterator[None]:
    """No worker's cleaning of stale runs meanwhile: it would not find this box's run
    folder, and its starting process is gone once ``up`` returns."""
    with stale.cleaning_excluded(box_settings):
        yield


def test_a_box_brought_up_by_the_script_is_real_and_leaves_nothing_behind(
    own_settings: BoxSettings, nova_venv: NovaVenv, not_cleaned: None
) -> None:
    """``scripts/novabox up``, then ``down`` from another process: all of it goes.

    The session's own box is checked the same way when it stops (the
    ``novabox`` fixture fails the run if anything is left).
    """
    broker = Broker.from_settings(own_settings)
    env = {**os.environ, "NOVABOX_RUNS_DIR": str(own_settings.runs_dir)}

    def novabox(command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(SCRIPT), command],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )

    up = novabox("up")
    state = _manual_state(own_settings)
    try:
        assert up.returncode == 0, up.stderr
        assert state is not None
        assert state.compute_url is not None
        assert state.compute_url in up.stdout
        assert state.transport_url in up.stdout
        assert "clouds:" in up.stdout
        # The box outlives the command that started it, and it is real: Nova's
        # services run, declared their queues in the run's vhost and keep
        # their data in the run's own databases.
        assert probes.compute(state.compute_url, "/servers") is not None
        pids = processes_of_run(Path(state.run_dir))
        assert len(pids) >= len(state.services)
        queues = broker.list_queues(state.vhost)
        assert {"conductor", "scheduler", "compute", "compute.novabox"} <= set(queues)
        if state.database_kind != "sqlite":
            assert len(_box_databases(own_settings, nova_venv, state)) == 4
        status = novabox("status")
        assert status.returncode == 0, status.stdout + status.stderr
        exports = novabox("env")
        assert f"export OS_ENDPOINT={state.compute_url}" in exports.stdout
    finally:
        down = novabox("down")

    assert down.returncode == 0, down.stdout + down.stderr
    assert "nothing left behind" in down.stdout
    assert [pid for pid in pids if pid_alive(pid)] == []
    assert processes_of_run(Path(state.run_dir)) == []
    assert state.vhost not in broker.list_vhosts()
    assert _box_databases(own_settings, nova_venv, state) == []
    assert not Path(state.run_dir).exists()
    assert novabox("status").returncode == 3


def _manual_state(settings: BoxSettings) -> RunState | None:
    manual = settings.runs_dir / MANUAL_FILE
    if not manual.exists():
        return None
    return RunState.load(Path(json.loads(manual.read_text())["run_dir"]))


def _box_databases(settings: BoxSettings, venv: NovaVenv, state: RunState) -> list[str]:
    prefix = state.id.database_prefix
    found = []
    for server in databases.server_databases(settings, venv):
        found += [name for name in server.list_box_databases() if name.startswith(prefix)]
    return found
