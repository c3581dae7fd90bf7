"""``--transport-url`` (else ``$NOVA_AUTOPILOT_TRANSPORT_URL``) reaches the connection
on the real RabbitMQ: a request sent with it lands in the vhost it names, though
the configuration names a broker nobody listens on."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration import bus_support
from tests.integration.bus_support import Rabbit

pytestmark = pytest.mark.integration
rabbit = bus_support.rabbit
BIN = Path(sys.executable).parent
SEND = ["send", "--type", "quota.request.approved", "--server", "web-1", "--flavor", "m1.large"]


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def send(tmp_path: Path, *argv: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    keys = tmp_path / "keys.yaml"
    keys.write_text('keys:\n  ops-1: "0123456789abcdef0123456789"\n')
    keys.chmod(0o600)
    conf = tmp_path / "nova-autopilot.conf"
    conf.write_text(
        f"[DEFAULT]\ntransport_url = rabbit://guest:guest@127.0.0.1:{unused_port()}/\n"
        f"state_dir = {tmp_path}\n"
        f"[requests]\nsigning_keys_file = {keys}\nsigning_key_id = ops-1\n"
    )
    done = subprocess.run(
        [str(BIN / "nova-autopilot"), "--config-file", str(conf), *SEND, *argv],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
    )
    return done.returncode, done.stdout, done.stderr


def test_the_configurations_broker_is_not_reached(tmp_path: Path) -> None:
    code, _, err = send(tmp_path)
    assert code == 3
    assert "unreachable: connection refused" in err


def test_a_request_sent_with_the_flag_lands_in_the_vhost_it_names(
    rabbit: Rabbit, tmp_path: Path
) -> None:
    code, out, err = send(tmp_path, "--id", "req-flag", "--transport-url", rabbit.transport_url)
    assert (code, err) == (0, "")
    assert out == "sent quota.request.approved req-flag\n"
    assert rabbit.queues()["nova-autopilot.requests"] == 1


def test_the_variable_does_the_same_and_the_flag_goes_before_it(
    rabbit: Rabbit, tmp_path: Path
) -> None:
    env = {"NOVA_AUTOPILOT_TRANSPORT_URL": rabbit.transport_url}
    code, _, err = send(tmp_path, env=env)
    assert (code, err) == (0, "")
    assert rabbit.queues()["nova-autopilot.requests"] == 1
    dead = f"rabbit://guest:guest@127.0.0.1:{unused_port()}/"
    code, _, err = send(tmp_path, "--transport-url", dead, env=env)
    assert code == 3
    assert "unreachable: connection refused" in err
    assert rabbit.queues()["nova-autopilot.requests"] == 1  # nothing more
