"""SIGHUP on a daemon started with ``run --os-cloud NAME --transport-url URL``: the
configuration files read again stay under the command line's values, as at start,
so a reload with the files unchanged asks for no restart, and a file's change to an
option the command line overrides is named as overridden, not as needing a restart."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest

from tests.integration import bus_support
from tests.integration.daemon_support import BIN, DaemonWorld, Running, stop_daemon
from tests.waiting import until

pytestmark = pytest.mark.integration

#: A broker and a cloud the files name and the command line replaces: neither exists.
FILE_BROKER = "rabbit://nobody:file-secret@192.0.2.1:5672/"


def reloads(daemon: Running, count: int) -> None:
    daemon.process.send_signal(signal.SIGHUP)
    until(lambda: len(daemon.logged("daemon.reloaded")) == count, 30, f"reload {count}")


def test_a_reload_keeps_the_command_lines_cloud_and_broker(
    daemon_world: DaemonWorld, rabbit: bus_support.Rabbit
) -> None:
    _, conf, env = daemon_world
    text = conf.read_text()
    assert f"transport_url = {rabbit.transport_url}\n" in text
    assert "cloud = sandbox\n" in text
    conf.write_text(
        text.replace(
            f"transport_url = {rabbit.transport_url}", f"transport_url = {FILE_BROKER}"
        ).replace("cloud = sandbox", "cloud = file-cloud")
    )
    daemon = Running(
        subprocess.Popen(
            [
                str(BIN / "nova-autopilot"),
                "--config-file",
                str(conf),
                "run",
                "--os-cloud",
                "sandbox",
                "--transport-url",
                rabbit.transport_url,
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
    )
    try:
        process = daemon.process
        until(lambda: daemon.logged("daemon.started") or process.poll() is not None, 60, "start")
        assert daemon.logged("daemon.started"), "".join(daemon.raw)

        # The files as they were: nothing needs a restart, nothing is overridden anew.
        reloads(daemon, 1)
        assert daemon.logged("settings.restart_needed") == []
        assert daemon.logged("settings.overridden") == []

        # The files name yet another cloud, and a new stop_timeout: only the latter
        # needs a restart; the cloud is the command line's still.
        write(conf, conf.read_text().replace("cloud = file-cloud", "cloud = other-file-cloud"))
        write(conf, conf.read_text().replace("stop_timeout = 20", "stop_timeout = 21"))
        reloads(daemon, 2)
        assert [line["options"] for line in daemon.logged("settings.restart_needed")] == [
            ["[DEFAULT] stop_timeout"]
        ]
        assert [line["options"] for line in daemon.logged("settings.overridden")] == [
            ["[cloud] cloud"]
        ]
        assert "file-secret" not in "".join(daemon.raw)
    finally:
        stop_daemon(daemon)


def write(path: Path, text: str) -> None:
    assert text != path.read_text()
    path.write_text(text)
