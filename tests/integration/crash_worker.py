"""A daemon to kill: handles one request against a Nova, then runs until SIGKILL.

    python -m tests.integration.crash_worker URL JOURNAL_PATH REQUEST_JSON

Used by the crash-recovery tests, which kill it with SIGKILL in the middle of
an operation and resume the operation in another process.
"""

from __future__ import annotations

import json
import sys
import threading

from nova_autopilot.events import parse_message
from nova_autopilot.journal import Journal
from tests.integration.stack import assemble, load_policies


def main(url: str, journal_path: str, request: str) -> None:
    journal = Journal.open(f"sqlite:///{journal_path}")
    policies = load_policies("60s")
    _, runner, engine = assemble(url, journal, lambda: policies, poll_interval_s=0.2)
    runner.start()
    engine.handle(parse_message(json.loads(request), expect="request"))
    print("handled", flush=True)
    threading.Event().wait()  # until killed


if __name__ == "__main__":
    main(*sys.argv[1:4])
