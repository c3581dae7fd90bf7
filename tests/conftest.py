"""What every test run shares: how the tests are spread over pytest-xdist's workers,
and the fixtures the integration and end-to-end tests both use.

``make test`` runs the suite on two workers (``-n 2 --dist loadgroup``; how, in
tests/parallel.py). Tests marked ``slow`` start first. Tests that must run in one
worker, one after the other, carry ``xdist_group``:

``novabox``  every end-to-end test on the session's real Nova (tests/e2e), marked
             here: it is a session fixture, and a second worker would start a
             second one.
``novabox-own``  tests/e2e/test_box_lifecycle.py, which brings up a box of its own
             with ``scripts/novabox``: a group apart, so that another worker can
             run it meanwhile (a worker's cleaning of stale boxes waits until
             that box is down: tests/novabox/stale.py).

Fixtures:

``redis_group``         a Redis key namespace of the test's own
                        (tests/integration/redis_support.py).
``postgresql_journal``  a PostgreSQL database of the test's own with the journal's
                        schema, dropped afterwards; its URL (tests/databases.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nova_autopilot.journal import Journal
from tests import parallel
from tests.databases import fresh_database, reachable
from tests.integration import redis_support

E2E = Path(__file__).parent / "e2e"
#: The end-to-end tests that start a Nova box of their own, not the session's.
OWN_BOX = ("test_box_lifecycle.py",)
#: About how long the end-to-end tests on the session's box take, one after the other
#: on one worker (tests/parallel.py starts the longest first).
BOX_SECONDS = 240

redis_group = redis_support.redis_group


@pytest.fixture
def postgresql_journal() -> Iterator[str]:
    with fresh_database(reachable("postgresql", what="the journal's test on it")) as url:
        Journal.open(url).close()  # the schema once, before the daemons race to it
        yield url


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> Iterator[None]:
    for item in items:  # before xdist (and everyone else) looks at the marks
        if item.path.is_relative_to(E2E):
            own = item.path.name in OWN_BOX
            item.add_marker(pytest.mark.xdist_group("novabox-own" if own else "novabox"))
            if not own:
                item.add_marker(pytest.mark.slow(BOX_SECONDS))
    yield
    parallel.slow_first(items)
    parallel.write_groups(config, items)  # every group known, before xdist says it collected


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    node.workerinput[parallel.GROUPS_DIR] = parallel.new_groups_dir(node.config)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    return parallel.scheduler(config, log)


def pytest_unconfigure(config: pytest.Config) -> None:
    parallel.remove_groups_dir(config)
