"""The commands that talk to the broker, run as an operator runs them against the
real RabbitMQ: a wrong password and a vhost that does not exist are one line on
stderr and exit status 1, never a traceback (README.md, "Exit codes")."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.integration import bus_support
from tests.integration.bus_support import HOST, PASSWORD, PORT, USER, Rabbit

pytestmark = pytest.mark.integration
rabbit = bus_support.rabbit
BIN = Path(sys.executable).parent
SEND = ["send", "--type", "quota.request.approved", "--server", "web-1", "--flavor", "m1.large"]


def command(tmp_path: Path, transport_url: str, *argv: str) -> tuple[int, str]:
    keys = tmp_path / "keys.yaml"
    keys.write_text('keys:\n  ops-1: "0123456789abcdef0123456789"\n')
    keys.chmod(0o600)
    conf = tmp_path / "nova-autopilot.conf"
    conf.write_text(
        f"[DEFAULT]\ntransport_url = {transport_url}\nstate_dir = {tmp_path}\n"
        f"[requests]\nsigning_keys_file = {keys}\nsigning_key_id = ops-1\n"
    )
    done = subprocess.run(
        [str(BIN / "nova-autopilot"), "--config-file", str(conf), *argv],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    return done.returncode, done.stderr.strip()


@pytest.mark.parametrize("argv", [[*SEND, "--wait"], ["approve", "5b0f1c2e"]])
def test_a_wrong_password_is_one_line_and_exit_1(
    rabbit: Rabbit, tmp_path: Path, argv: list[str]
) -> None:
    url = f"rabbit://{quote(USER)}:not-{quote(PASSWORD)}@{HOST}:{PORT}/{quote(rabbit.vhost)}"
    code, err = command(tmp_path, url, *argv)
    assert code == 1
    assert err.startswith(f"nova-autopilot: broker amqp://{USER}@{HOST}:{PORT}/")
    assert "refused the login: wrong user or password" in err
    assert "not-" not in err  # the password is never shown
    assert rabbit.queues() == {}  # nothing declared


def test_a_vhost_that_does_not_exist_is_one_line_and_exit_1(tmp_path: Path) -> None:
    vhost = f"no-such-vhost-{uuid.uuid4().hex[:8]}"
    url = f"rabbit://{quote(USER)}:{quote(PASSWORD)}@{HOST}:{PORT}/{vhost}"
    code, err = command(tmp_path, url, *SEND)
    assert code == 1
    assert "the vhost does not exist or the user may not use it" in err
    assert f"vhost {vhost} not found" in err


def test_no_answer_from_a_daemon_that_is_not_there_exits_4(rabbit: Rabbit, tmp_path: Path) -> None:
    code, err = command(
        tmp_path, rabbit.transport_url, *SEND, "--id", "q-9", "--wait", "--timeout", "2"
    )
    assert code == 4
    assert "no answer to quota.request.approved q-9 within 2 s" in err
    assert "nova-autopilot refusals --request q-9" in err
    assert rabbit.queues()["nova-autopilot.requests"] == 1  # it waits for the daemon
