"""A Redis key namespace of each test's own, for the coordination tests.

Every test gets a fresh group name, which is also the key namespace of the
coordinator (``coordination.backend_url``): every key the test made starts with
it and is deleted afterwards. Redis: ``NOVA_AUTOPILOT_REDIS_URL`` (default
redis://127.0.0.1:6379). When Redis cannot be reached the tests are skipped with
a loud reason, except in CI (``CI`` set), where they fail.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis

from tests.unavailable import unavailable

URL = os.environ.get("NOVA_AUTOPILOT_REDIS_URL", "redis://127.0.0.1:6379")


@dataclass(frozen=True)
class RedisGroup:
    """One test's group (and key namespace) on the real Redis."""

    url: str
    group: str
    client: redis.Redis

    def namespaced_keys(self) -> list[bytes]:
        return list(self.client.scan_iter(match=f"{self.group}*"))


@pytest.fixture
def redis_group() -> Iterator[RedisGroup]:
    client = redis.Redis.from_url(URL)
    try:
        client.ping()
    except redis.RedisError as exc:
        unavailable(f"REDIS UNAVAILABLE, the coordination tests did not run: {exc}")
    group = f"autopilot-test-{uuid.uuid4().hex[:12]}"
    try:
        yield RedisGroup(URL, group, client)
    finally:
        for key in list(client.scan_iter(match=f"{group}*")):
            client.delete(key)
        client.close()
