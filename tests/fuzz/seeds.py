"""Write the fuzzers' seed corpora: ``python -m tests.fuzz.seeds``.

From Nova's notification samples (tests/data), valid operator requests and
the seed policies. The first byte of a parse_message or verifier input picks
the channel or the headers; a verifier input then carries its own signature
header (a length byte and the bytes) before the body (tests/fuzz/targets.py).
Inputs the fuzzers found (crashes, once fixed) live beside the seeds, named
``found-*``; this script never removes them.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.samples import on_the_wire, sample, sample_names

ROOT = Path(__file__).resolve().parents[2]
CORPUS = Path(__file__).parent / "corpus"
SERVER = "178b0921-8f85-4257-88b6-2e743b5a975c"
REQUESTS = {
    "quota": {
        "version": 1,
        "type": "quota.request.approved",
        "id": "quota-2026-0042",
        "timestamp": "2026-11-25T09:10:00Z",
        "server": {"id": SERVER},
        "project_id": "project-a",
        "flavor": "m1.large",
        "requested_by": "alice",
        "approved_by": "bob",
        "reason": "OPS-1234",
        "parameters": {"rescue_image": "rescue-2026.11", "lock": True, "count": 2},
    },
    "repair": {
        "type": "server.repair.done",
        "id": "repair-7",
        "timestamp": "2026-11-25 09:10:00.123456",
        "server": "web-1",
    },
    "approve": {
        "type": "operation.approve",
        "id": "approve-1",
        "timestamp": "2026-11-25T09:10:00+01:00",
        "server": {"id": SERVER, "name": "web-1"},
        "parameters": {"operation_id": "op-1"},
    },
}


def _write(target: str, name: str, data: bytes) -> None:
    folder = CORPUS / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)


def main() -> None:
    for name in sample_names():
        notification = sample(name)
        _write("parse_message", f"wire-{name}", b"\x01" + on_the_wire(notification))
        _write("parse_message", f"dict-{name}", b"\x00" + json.dumps(notification).encode())
    for name, request in REQUESTS.items():
        body = json.dumps(request).encode()
        _write("parse_message", f"request-{name}", b"\x02" + body)
        for choice, headers in enumerate(("unsigned", "forged", "ops", "team-a")):
            signature = b"0" * 64 if headers == "forged" else b""
            _write(
                "verifier", f"{headers}-{name}", bytes([choice, len(signature)]) + signature + body
            )
    for path in (
        ROOT / "config" / "policies.yaml",
        ROOT / "operator" / "nova_autopilot" / "demo" / "seed" / "demo-policies.yaml",
    ):
        _write("policy_loader", path.name, path.read_bytes())


if __name__ == "__main__":
    main()
