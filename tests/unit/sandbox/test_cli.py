"""``python -m nova_autopilot.sandbox``: prints its endpoint, serves it, stops on SIGTERM;
prints the clouds.yaml that reaches it."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import openstack
import pytest
import yaml


@pytest.fixture
def process() -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nova_autopilot.sandbox",
            "--port",
            "0",
            "--flavor",
            "small:1:512:10",
            "--server",
            "web-1:small",
            "--server",
            "broken:small:ERROR",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    yield proc
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)


def test_the_entry_point_prints_its_url_serves_the_api_and_stops_on_sigterm(
    process: subprocess.Popen[str],
) -> None:
    assert process.stdout is not None
    url = process.stdout.readline().strip()
    assert url.startswith("http://127.0.0.1:")
    assert url.endswith("/v2.1")

    request = urllib.request.Request(
        url + "/servers/detail",
        headers={"X-Auth-Token": "admin:admin", "OpenStack-API-Version": "compute 2.100"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        servers = json.loads(response.read())["servers"]
    assert {(s["name"], s["status"], s["flavor"]["original_name"]) for s in servers} == {
        ("web-1", "ACTIVE", "small"),
        ("broken", "ERROR", "small"),
    }

    process.terminate()
    assert process.wait(10) == 0


def test_a_bad_flavor_spec_is_refused_with_a_clear_message() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "nova_autopilot.sandbox", "--flavor", "small:one"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "bad --flavor or --server" in result.stderr


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _sandbox(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nova_autopilot.sandbox", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_printed_clouds_yaml_reaches_the_sandbox_served_on_that_port(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = str(_free_port())
    printed = _sandbox("--port", port, "--print-clouds-yaml", "--cloud-name", "here")
    assert printed.returncode == 0, printed.stderr
    url = f"http://127.0.0.1:{port}/v2.1"
    assert yaml.safe_load(printed.stdout)["clouds"]["here"]["auth"]["endpoint"] == url
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text(printed.stdout)

    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "nova_autopilot.sandbox", "--port", port),
            *("--flavor", "small:1:512:10", "--server", "web-1:small"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == url
        monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(clouds))
        conn = openstack.connect(cloud="here")  # openstacksdk's own lookup of the file
        try:
            servers = [(s.name, s.status) for s in conn.compute.servers()]
        finally:
            conn.close()
        assert servers == [("web-1", "ACTIVE")]
    finally:
        proc.terminate()
        proc.wait(10)


def test_printing_the_clouds_yaml_serves_nothing_and_needs_a_port() -> None:
    printed = _sandbox("--print-clouds-yaml")
    assert printed.returncode == 2
    assert "--print-clouds-yaml needs the --port" in printed.stderr
    assert printed.stdout == ""
    listening_everywhere = _sandbox("--host", "0.0.0.0", "--port", "8774", "--print-clouds-yaml")
    assert listening_everywhere.returncode == 0
    entry = yaml.safe_load(listening_everywhere.stdout)["clouds"]["sandbox"]
    assert entry == {
        "auth_type": "admin_token",
        "auth": {"endpoint": "http://127.0.0.1:8774/v2.1", "token": "admin:admin"},
        "compute_endpoint_override": "http://127.0.0.1:8774/v2.1",
    }
