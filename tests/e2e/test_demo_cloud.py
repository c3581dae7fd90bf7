"""``nova-autopilot demo --cloud`` against the real Nova: the command as an operator
runs it (a subprocess, a clouds.yaml, the box's RabbitMQ vhost), through every flow,
and what it leaves behind afterwards: nothing, also when interrupted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from openstack.compute.v2.flavor import Flavor

from nova_autopilot.demo.staging import NAME_PREFIX
from tests.novabox.broker import Broker
from tests.novabox.client import IMAGE_ID, NovaBox
from tests.novabox.settings import BoxSettings
from tests.waiting import until

pytestmark = pytest.mark.e2e

SCRIPT = Path(sys.executable).parent / "nova-autopilot"
RUN_TIMEOUT_S = 180.0


@pytest.fixture
def clouds_yaml(novabox: NovaBox, tmp_path: Path) -> Path:
    """The clouds.yaml entry the box prints, as an operator would save it."""
    path = tmp_path / "clouds.yaml"
    url = novabox.compute_url
    path.write_text(
        "clouds:\n"
        "  novabox:\n"
        "    auth_type: admin_token\n"
        f"    auth: {{endpoint: '{url}', token: 'admin:admin'}}\n"
        f"    compute_endpoint_override: '{url}'\n"
    )
    return path


def demo_command(novabox: NovaBox, flavors: tuple[Flavor, Flavor], *extra: str) -> list[str]:
    small, large = flavors
    return [
        str(SCRIPT),
        "demo",
        "--cloud",
        "novabox",
        "--broker",
        novabox.transport_url,
        "--image",
        IMAGE_ID,
        "--flavor",
        small.name,
        "--resize-flavor",
        large.name,
        *extra,
    ]


def environment(clouds_yaml: Path) -> dict[str, str]:
    return {**os.environ, "OS_CLIENT_CONFIG_FILE": str(clouds_yaml), "PYTHONUNBUFFERED": "1"}


def demo_servers(novabox: NovaBox) -> list[str]:
    return [
        str(s.name)
        for s in novabox.conn.compute.servers(all_projects=True)
        if str(s.name or "").startswith(NAME_PREFIX)
    ]


def demo_queues(novabox: NovaBox, box_settings: BoxSettings) -> list[str]:
    queues = Broker.from_settings(box_settings).list_queues(novabox.vhost)
    return [name for name in queues if name.startswith(NAME_PREFIX)]


def test_the_demo_plays_every_flow_on_the_real_nova_and_leaves_nothing_behind(
    novabox: NovaBox,
    box_settings: BoxSettings,
    flavors: tuple[Flavor, Flavor],
    clouds_yaml: Path,
) -> None:
    done = subprocess.run(
        demo_command(
            novabox,
            flavors,
            "--fail-reboot-metadata",
            "novabox:fail=reboot",
            "--fail-spawn-metadata",
            "novabox:fail=spawn",
        ),
        env=environment(clouds_yaml),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    small, large = flavors
    assert f"flavor {small.name} -> {large.name}, network none" in out
    assert "<- resize confirmed" in out
    assert "<- resize reverted (health gate failed: tcp: " in out
    assert "   rescue: rescued [status=RESCUE" in out
    assert "<- unrescue unrescued" in out
    assert "build-1 is ERROR and was never launched; operations on it: 0" in out
    assert "cleaned up: 4 servers deleted, the demo's queues removed" in out
    history = out.split("\n== history: what the daemon did", 1)[1].split("\n== verdict\n")[0]
    for outcome in ("confirmed", "reverted: health gate failed: tcp: ", "rescued", "unrescued"):
        assert f"\n  outcome   {outcome}" in history
    assert "skipped" not in out
    assert "demo: every flow ended as expected" in out
    assert demo_servers(novabox) == []
    assert demo_queues(novabox, box_settings) == []


def test_an_interrupted_demo_still_deletes_its_servers_and_queues(
    novabox: NovaBox,
    box_settings: BoxSettings,
    flavors: tuple[Flavor, Flavor],
    clouds_yaml: Path,
) -> None:
    process = subprocess.Popen(
        demo_command(novabox, flavors),  # no fault metadata: the failed boots are skipped
        env=environment(clouds_yaml),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout or ()), daemon=True)
    reader.start()
    try:
        until(
            lambda: any("resize requested" in line for line in lines),
            RUN_TIMEOUT_S,
            "the demo's first resize",
        )
        assert demo_servers(novabox) != []
        process.send_signal(signal.SIGINT)  # Ctrl-C in the middle of a flow
        code = process.wait(timeout=RUN_TIMEOUT_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    reader.join(10)
    out = "".join(lines)
    assert code == 130, out
    assert "interrupted: cleaning up" in out
    assert "cleaned up: 2 servers deleted, the demo's queues removed" in out
    assert "db-1 rescue      skipped: a real cloud cannot be told to fail" in out
    assert "build-1          skipped: a real cloud cannot be told to fail a first boot" in out
    assert demo_servers(novabox) == []
    assert demo_queues(novabox, box_settings) == []
