"""What the several daemons tests share, on the sandbox Nova
(tests/integration/test_several_daemons.py) and on the real one
(tests/e2e/test_several_daemons.py): the stream of requests, and the journal's
operations read back."""

from __future__ import annotations

import random
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa

REQUESTS_PER_SERVER = 5


def requests_for(
    server_ids: list[str], *, flavor: str = "m1.large", prefix: str = "quota", seed: int = 7
) -> list[dict[str, Any]]:
    """Five requests per server, in an order that mixes the servers."""
    bodies = [
        {
            "version": 1,
            "type": "quota.request.approved",
            "id": f"{prefix}-{server_id}-{n}",
            "timestamp": datetime.now(timezone.utc).isoformat(),
            "server": {"id": server_id},
            "flavor": flavor,
            "approved_by": "bob",
        }
        for server_id in server_ids
        for n in range(REQUESTS_PER_SERVER)
    ]
    random.Random(seed).shuffle(bodies)
    return bodies


def operations(journal: str) -> list[dict[str, Any]]:
    """Every operation in the journal at ``journal`` (a URL), as a dict."""
    engine = sa.create_engine(journal)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT id, server_id, outcome, reason, owner, nova_requests, created_at, "
                    "finished_at FROM operations"
                )
            )
            return [dict(row._mapping) for row in rows]
    finally:
        engine.dispose()
