"""Fixtures the integration and end-to-end tests both use.

``redis_group``         a Redis key namespace of the test's own
                        (tests/integration/redis_support.py).
``postgresql_journal``  a PostgreSQL database of the test's own with the journal's
                        schema, dropped afterwards; its URL (tests/databases.py).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from nova_autopilot.journal import Journal
from tests.databases import fresh_database, reachable
from tests.integration import redis_support

redis_group = redis_support.redis_group


@pytest.fixture
def postgresql_journal() -> Iterator[str]:
    with fresh_database(reachable("postgresql", what="the journal's test on it")) as url:
        Journal.open(url).close()  # the schema once, before the daemons race to it
        yield url
