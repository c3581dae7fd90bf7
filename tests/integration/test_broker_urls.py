"""A broker URL in the configuration that no connection could be made from (a scheme
no broker speaks, a port above 65535) is a configuration mistake: every command
that reads it says so in one line naming the option, without the URL's password,
and exits 2 (docs/operations.md, "Exit codes"), never with a traceback. Run as an
operator runs them: the installed command, in a process of its own (no service is
needed; they are here for the time a dozen processes take)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent / "nova-autopilot"
SEED = Path(__file__).resolve().parents[2] / "config" / "policies.yaml"
EXIT_INVALID, EXIT_USAGE = 1, 2

SEND = ("send", "--type", "quota.request.approved", "--server", "web-1", "--unsigned")
APPROVE = ("approve", "a" * 32, "--unsigned")
REJECT = ("reject", "b" * 32, "--unsigned")
RUN, CHECK, CHECK_START = ("run",), ("check",), ("check", "--start")

#: (section, option, URL): each broken in its own way.
GARBAGE = ("DEFAULT", "transport_url", "garbage://ops:s3cret-pw@host/")
REQUESTS_PORT = ("requests", "broker_url", "amqp://ops:s3cret-pw@host:99999/")
NOTIFY_PORT = (
    "oslo_messaging_notifications",
    "transport_url",
    "rabbit://ops:s3cret-pw@a:5672,ops:s3cret-pw@b:70000/",
)
CASES = [
    *((GARBAGE, argv) for argv in (RUN, SEND, APPROVE, REJECT, CHECK, CHECK_START)),
    *((REQUESTS_PORT, argv) for argv in (SEND, APPROVE, REJECT, CHECK)),
    # the requests go to the notification broker when they have none of their own
    *((NOTIFY_PORT, argv) for argv in (RUN, SEND, CHECK_START)),
]


def configuration(tmp_path: Path, section: str, option: str, url: str) -> Path:
    path = tmp_path / "nova-autopilot.conf"
    path.write_text(
        f"[DEFAULT]\nstate_dir = {tmp_path / 'state'}\n"
        f"[policies]\npath = {SEED}\n"
        "[requests]\nrequire_signatures = false\n"
        f"[{section}]\n{option} = {url}\n"
    )
    return path


@pytest.mark.parametrize(
    ("broken", "argv"), CASES, ids=[f"{b[0]}-{' '.join(a[:2])}" for b, a in CASES]
)
def test_a_broker_url_that_is_not_one_is_one_line_naming_its_option_and_exit_2(
    tmp_path: Path, broken: tuple[str, str, str], argv: tuple[str, ...]
) -> None:
    section, option, url = broken
    conf = configuration(tmp_path, section, option, url)
    environment = {
        **os.environ,
        "OS_CLIENT_CONFIG_FILE": str(tmp_path / "no-clouds.yaml"),
    }
    environment.pop("NOVA_AUTOPILOT_TRANSPORT_URL", None)
    done = subprocess.run(
        [str(BIN), "--config-file", str(conf), *argv],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env=environment,
    )
    assert "Traceback" not in done.stderr
    assert "s3cret-pw" not in done.stderr + done.stdout
    if argv[0] == "check":  # one mistake among those check lists, each on its line
        (line,) = [s for s in done.stderr.splitlines() if "not a broker URL" in s]
        assert line.startswith(f"[{section}] {option}: "), done.stderr
        assert done.returncode == EXIT_INVALID
        return
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(f"nova-autopilot: [{section}] {option}: "), done.stderr
    assert "not a broker URL" in done.stderr
    assert done.returncode == EXIT_USAGE
