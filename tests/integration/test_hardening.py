"""The unit's ``MemoryDenyWriteExecute=``, for real: the kernel's equivalent,
``prctl(PR_SET_MDWE)``, is inherited across ``execve``, so a process that sets
it and then executes ``nova-autopilot`` runs the daemon's code the way the
unit does. The first test proves the wrapper really denies writable and
executable memory; the second runs the demo under it, on the real RabbitMQ."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.integration import bus_support
from tests.unavailable import unavailable

rabbit = bus_support.rabbit

BIN = Path(sys.executable).parent

#: Sets PR_SET_MDWE (65) with PR_MDWE_REFUSE_EXEC_GAIN, checks it with
#: PR_GET_MDWE (66), then runs argv[1:]: as the unit's MemoryDenyWriteExecute=.
UNDER_MDWE = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:
    sys.exit("no-mdwe: " + os.strerror(ctypes.get_errno()))
assert libc.prctl(66, 0, 0, 0, 0) == 1
os.execv(sys.argv[1], sys.argv[1:])
"""

WRITE_AND_EXECUTE = """
import mmap
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
except OSError as exc:
    print("denied", exc.errno)
else:
    print("allowed")
"""


def under_mdwe(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-c", UNDER_MDWE, *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=os.environ | {"PYTHONUNBUFFERED": "1"},
    )
    if done.returncode != 0 and "no-mdwe:" in done.stderr:
        unavailable(f"THE KERNEL REFUSES PR_SET_MDWE: {done.stderr.strip()}")
    return done


def test_the_wrapper_denies_writable_and_executable_memory() -> None:
    plain = subprocess.run(
        [sys.executable, "-c", WRITE_AND_EXECUTE], capture_output=True, text=True, check=True
    )
    assert plain.stdout.strip() == "allowed"
    denied = under_mdwe(sys.executable, "-c", WRITE_AND_EXECUTE)
    assert denied.stdout.strip().startswith("denied"), denied.stderr


def test_the_demo_runs_under_memory_deny_write_execute_on_the_real_rabbitmq(
    rabbit: bus_support.Rabbit,
) -> None:
    done = under_mdwe(str(BIN / "nova-autopilot"), "demo", "--broker", rabbit.transport_url)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "demo: every flow ended as expected" in done.stdout
