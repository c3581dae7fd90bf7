"""The systemd unit: systemd itself finds nothing to say about it, its hardening
scores as systemd rates it, and it agrees with the daemon's defaults."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from nova_autopilot import settings
from tests.unavailable import unavailable

ROOT = Path(__file__).resolve().parents[3]
UNIT = ROOT / "systemd" / "nova-autopilot.service"
INSTALLED_BINARY = "/opt/nova-autopilot/bin/nova-autopilot"


def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        unavailable("SYSTEMD-ANALYZE MISSING (apt-get install systemd): the unit was not verified")
    return found


def unit_settings() -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            values.setdefault(key, []).append(value)
    return values


def seconds(value: str) -> int:
    assert value.endswith("s"), value
    assert value[:-1].isdigit(), value
    return int(value[:-1])


def local_copy(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this checkout's nova-autopilot."""
    text = UNIT.read_text()
    assert f"ExecStart={INSTALLED_BINARY} " in text
    local = Path(sys.executable).parent / "nova-autopilot"
    assert local.exists(), local
    copy = tmp_path / UNIT.name
    copy.write_text(text.replace(f"ExecStart={INSTALLED_BINARY} ", f"ExecStart={local} "))
    return copy


def test_systemd_verifies_the_unit_without_a_single_remark(tmp_path: Path) -> None:
    done = subprocess.run(
        [systemd_analyze(), "verify", str(local_copy(tmp_path))],
        capture_output=True, text=True, check=False, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_systemd_rates_the_unit_s_exposure_as_low(tmp_path: Path) -> None:
    done = subprocess.run(
        [systemd_analyze(), "security", "--offline=true", "--threshold=20", "--no-pager",
         str(local_copy(tmp_path))],
        capture_output=True, text=True, check=False, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_unit_agrees_with_the_daemon_s_defaults() -> None:
    unit = unit_settings()
    conf = settings.build_conf()
    conf(args=[], default_config_files=[], default_config_dirs=[])
    assert unit["Type"] == ["notify"]
    assert unit["NotifyAccess"] == ["main"]
    assert unit["User"] == unit["Group"] == ["nova-autopilot"]
    assert "DynamicUser" not in unit
    assert f"/var/lib/{unit['StateDirectory'][0]}" == conf.state_dir
    assert unit["WorkingDirectory"] == [conf.state_dir]
    assert seconds(unit["TimeoutStopSec"][0]) > conf.stop_timeout
    assert seconds(unit["WatchdogSec"][0]) > conf.wedged_after
    assert unit["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert unit["RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6"]


def test_the_sysusers_and_tmpfiles_entries_name_the_unit_s_user() -> None:
    sysusers = (ROOT / "systemd" / "nova-autopilot.sysusers").read_text()
    tmpfiles = (ROOT / "systemd" / "nova-autopilot.tmpfiles").read_text()
    assert "\nu nova-autopilot - " in sysusers
    assert "\nd /etc/nova-autopilot 0750 root nova-autopilot -" in tmpfiles
