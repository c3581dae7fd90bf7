"""``python -m nova_autopilot.sandbox``: prints its endpoint, serves it, stops on SIGTERM."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator

import pytest


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
