"""What the end-to-end tests share: one `nova-autopilot run` configured against the box."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tests.integration.daemon_support import BIN
from tests.integration.stack import clouds_yaml
from tests.novabox.client import NovaBox


def daemon_config(
    tmp_path: Path, novabox: NovaBox, policies: str, *, poll_interval: int = 3
) -> tuple[Path, dict[str, str]]:
    """A configuration file for one daemon on the box (its own notification pool and a
    SQLite journal under ``tmp_path``, unsigned requests accepted, no sweeps), and the
    environment whose clouds.yaml names the box: what `run`, `send` and `history`
    are given."""
    clouds = clouds_yaml(tmp_path / "clouds.yaml", novabox.compute_url, name="novabox")
    (tmp_path / "policies.yaml").write_text(policies)
    conf = tmp_path / "nova-autopilot.conf"
    conf.write_text(
        f"[DEFAULT]\ntransport_url = {novabox.transport_url}\n"
        f"state_dir = {tmp_path / 'state'}\nstop_timeout = 20\n"
        f"[notifications]\npool = autopilot-e2e-{uuid.uuid4().hex[:8]}\n"
        f"[policies]\npath = {tmp_path / 'policies.yaml'}\n"
        f"[cloud]\ncloud = novabox\npoll_interval = {poll_interval}\n"
        "[requests]\nrequire_signatures = false\n"
        "[sweeps]\nenabled = false\n"
        "[logging]\nformat = json\n[metrics]\nport = 0\n"
    )
    return conf, {**os.environ, "OS_CLIENT_CONFIG_FILE": str(clouds)}


def history(conf: Path, env: Mapping[str, str], *options: str) -> list[dict[str, Any]]:
    """`nova-autopilot history --json` with ``options``: its operations, newest first."""
    done = subprocess.run(
        [str(BIN / "nova-autopilot"), "--config-file", str(conf), "history", *options, "--json"],
        env=dict(env),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    operations: list[dict[str, Any]] = json.loads(done.stdout)["operations"]
    return operations
