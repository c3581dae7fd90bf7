"""The five services of a box: how each is started, and how the box knows it is ready."""

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.novabox import config as run_config
from tests.novabox import probes
from tests.novabox.processes import RUN_ID_VARIABLE
from tests.novabox.settings import REPO_ROOT
from tests.novabox.venv import NovaVenv

CONTROL_PLANE = ("placement-api", "nova-api", "nova-conductor", "nova-scheduler")
COMPUTE = "nova-compute"
NOVA_SERVICES = ("nova-conductor", "nova-scheduler", "nova-compute")


@dataclass(frozen=True)
class Readiness:
    """One condition the box waits for while it starts."""

    service: str
    """Whose log to show if the condition never holds."""
    what: str
    probe: Callable[[], object]


def environment(
    venv: NovaVenv, cfg: run_config.RunConfig, run_id: str, *, sqlite: bool
) -> dict[str, str]:
    """The environment of every Nova and Placement process (not the caller's own)."""
    env = {
        "PATH": f"{venv.bin}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(REPO_ROOT),
        "PYTHONUNBUFFERED": "1",
        "VIRTUAL_ENV": str(venv.path),
        # Native threads; see tests.novabox.bootstrap for why this is set.
        "OS_NOVA_DISABLE_EVENTLET_PATCHING": "1",
        "OS_NOVA_CONFIG_DIR": str(cfg.nova_dir),
        "OS_NOVA_CONFIG_FILES": "api-paste.ini;nova.conf",
        "OS_PLACEMENT_CONFIG_DIR": str(cfg.placement_dir),
        RUN_ID_VARIABLE: run_id,
    }
    if sqlite:
        env["NOVABOX_SQLITE"] = "1"
    return env


def commands(venv: NovaVenv, cfg: run_config.RunConfig) -> dict[str, list[str]]:
    """Service name -> command line."""

    def gunicorn(port: int, app: str, name: str) -> list[str]:
        return [
            venv.command("gunicorn"),
            "--bind", f"127.0.0.1:{port}",
            "--workers", "1",
            "--worker-class", "gthread",
            "--threads", "8",
            "--timeout", "120",
            "--graceful-timeout", "3",
            "--name", name,
            app,
        ]  # fmt: skip

    def nova(service: str, conf: Path) -> list[str]:
        python = str(venv.python)
        return [python, "-m", "tests.novabox.bootstrap", service, "--config-file", str(conf)]

    return {
        "placement-api": gunicorn(
            cfg.placement_port, "tests.novabox.bootstrap:placement_api()", "placement-api"
        ),
        "nova-api": gunicorn(cfg.compute_port, "tests.novabox.bootstrap:compute_api()", "nova-api"),
        "nova-conductor": nova("conductor", cfg.nova_conf),
        "nova-scheduler": nova("scheduler", cfg.nova_conf),
        "nova-compute": nova("compute", cfg.compute_conf),
    }


def control_plane_ready(cfg: run_config.RunConfig) -> list[Readiness]:
    return [
        Readiness("placement-api", "the placement API to answer",
                  lambda: probes.placement(cfg.placement_url, "/")),
        Readiness("nova-api", "the compute API to answer",
                  lambda: probes.compute(cfg.compute_url, "/")),
        Readiness("nova-conductor", "the conductor to report up",
                  lambda: _up(cfg).get("nova-conductor") == "up"),
    ]  # fmt: skip


def compute_ready(cfg: run_config.RunConfig) -> list[Readiness]:
    return [
        Readiness("nova-compute", "scheduler and compute to report up",
                  lambda: all(_up(cfg).get(name) == "up" for name in NOVA_SERVICES)),
        Readiness("nova-compute", "the compute node's inventory in placement",
                  lambda: probes.provider_has_inventory(
                      cfg.placement_url, run_config.COMPUTE_HOST)),
    ]  # fmt: skip


def _up(cfg: run_config.RunConfig) -> dict[str, str]:
    return probes.services_up(cfg.compute_url, NOVA_SERVICES)
