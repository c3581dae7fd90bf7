"""What the installed ``nova-autopilot`` imports for each command: only what the
command needs. The tests start hundreds of these processes, and most of a
process's time was its imports (openstacksdk alone about half a second): a
listing of the journal loads no openstacksdk and no broker client, ``send`` no
SQLAlchemy, ``--help`` none of them. Asserted on the modules loaded, not on a
time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nova_autopilot.journal import Journal

ROOT = Path(__file__).resolve().parents[3]
SEED = str(ROOT / "config" / "policies.yaml")
EVENT = str(ROOT / "tests" / "data" / "nova-notification-samples" / "instance-create-error.json")
SCRIPT = Path(sys.executable).parent / "nova-autopilot"

#: Runs the console script as installed, then writes the names of the modules the
#: process loaded to the file named by $MODULES_OUT (at exit, after main()).
_PROBE = """
import atexit, json, os, runpy, sys
def _write():
    with open(os.environ["MODULES_OUT"], "w") as out:
        json.dump(sorted(sys.modules), out)
atexit.register(_write)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""

CLOUD = {"openstack", "keystoneauth1"}
BROKER = {"kombu", "amqp", "oslo_messaging"}
DATABASE = {"sqlalchemy", "alembic"}
CONFIGURATION = {"oslo_config"}
LOGGING = {"structlog", "rich"}


def loaded(tmp_path: Path, *argv: str, code: int = 0) -> set[str]:
    """The top-level packages ``nova-autopilot argv`` loaded; it exited with ``code``."""
    out = tmp_path / "modules.json"
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, str(SCRIPT), *argv],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "MODULES_OUT": str(out)},
    )
    assert done.returncode == code, done.stderr
    return {name.partition(".")[0] for name in json.loads(out.read_text())}


@pytest.fixture
def conf(tmp_path: Path) -> str:
    """A configuration whose journal exists (empty) and names no signing key."""
    path = tmp_path / "nova-autopilot.conf"
    path.write_text(f"[DEFAULT]\nstate_dir = {tmp_path}\n[policies]\npath = {SEED}\n")
    with Journal.open(f"sqlite:///{tmp_path / 'journal.sqlite'}"):
        pass
    return str(path)


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["--version"],
        ["history", "--help"],
        ["send", "--help"],
        ["approve", "--help"],
        ["status", "--help"],
        ["run", "--help"],
        ["demo", "--help"],
    ],
    ids=" ".join,
)
def test_help_and_version_load_no_service_client_and_no_configuration(
    tmp_path: Path, argv: list[str]
) -> None:
    heavy = CLOUD | BROKER | DATABASE | CONFIGURATION | LOGGING
    assert loaded(tmp_path, *argv) & heavy == set()


@pytest.mark.parametrize(
    "argv", [["history"], ["pending"], ["refusals"], ["breaker", "list"]], ids=" ".join
)
def test_the_journal_listings_load_no_openstacksdk_and_no_broker_client(
    tmp_path: Path, conf: str, argv: list[str]
) -> None:
    modules = loaded(tmp_path, "--config-file", conf, *argv)
    assert "sqlalchemy" in modules  # the probe sees what the command loads
    assert modules & (CLOUD | BROKER) == set()


@pytest.mark.parametrize(
    "argv", [["history"], ["pending"], ["refusals"], ["breaker", "list"]], ids=" ".join
)
def test_the_journal_listings_load_no_structlog(tmp_path: Path, conf: str, argv: list[str]) -> None:
    # They redact what they show and log nothing: no structlog, nor the rich it
    # imports when rich is installed.
    modules = loaded(tmp_path, "--config-file", conf, *argv)
    assert "sqlalchemy" in modules
    assert modules & LOGGING == set()


@pytest.mark.parametrize(
    "argv", [["history"], ["pending"], ["refusals"], ["breaker", "list"]], ids=" ".join
)
def test_the_journal_listings_load_no_alembic(tmp_path: Path, conf: str, argv: list[str]) -> None:
    # The journal is at this release's schema: checking so takes one query, no alembic
    # (nor the mako and pygments that alembic imports).
    modules = loaded(tmp_path, "--config-file", conf, *argv)
    assert "sqlalchemy" in modules
    assert modules & {"alembic", "mako", "pygments"} == set()


def test_send_loads_no_openstacksdk_and_no_database(tmp_path: Path, conf: str) -> None:
    # Checked, then refused before connecting: no signing key is configured.
    argv = ["send", "--type", "quota.request.approved", "--server", "web-1", "--flavor", "m1"]
    modules = loaded(tmp_path, "--config-file", conf, *argv, code=2)
    assert "kombu" in modules  # the broker URLs were checked
    assert modules & (CLOUD | DATABASE) == set()


def test_check_loads_no_openstacksdk_and_no_database(tmp_path: Path) -> None:
    assert loaded(tmp_path, "check", "--policies", SEED) & (CLOUD | DATABASE) == set()


def test_explain_loads_only_the_policies(tmp_path: Path) -> None:
    modules = loaded(tmp_path, "explain", "--policies", SEED, "--event", EVENT)
    assert modules & (CLOUD | BROKER | DATABASE | CONFIGURATION | LOGGING) == set()
