"""The RabbitMQ permissions of docs/broker.md fit the names the daemon uses.

The page gives each party (Nova's notifier, the daemon, operators, result
watchers, dead-letter inspectors) ``rabbitmqctl set_permissions`` patterns.
These tests read the patterns from the page and check them against the names
the default configuration gives the exchanges and queues: each party may do
what its work needs and nothing listed as refused. RabbitMQ searches a
pattern in a name as ``re.search`` does. The daemon's patterns are the ones
``tests/integration/bus/test_topology.py`` runs every path of the bus with.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest

from nova_autopilot import settings
from nova_autopilot.bus.topology import delay_queue_name

BROKER_PAGE = Path(__file__).resolve().parents[2] / "docs" / "broker.md"
_PATTERN = r"\s*\\?\s*'([^']*)'"
_COMMAND = re.compile(r"rabbitmqctl set_permissions -p \S+ (\S+)" + _PATTERN * 3)


def documented() -> dict[str, dict[str, str]]:
    text = BROKER_PAGE.read_text(encoding="utf-8")
    return {
        user: {"configure": configure, "write": write, "read": read}
        for user, configure, write, read in _COMMAND.findall(text)
    }


PERMISSIONS = documented()


def names() -> dict[str, str]:
    conf = settings.build_conf()
    conf(args=[], default_config_files=[])
    n, r = conf.notifications, conf.requests
    return {
        "nova": n.exchange,
        "pool": n.pool,
        "pool_retry": delay_queue_name(n.pool, float(n.retry_delays[0])),
        "notifications_dead": n.dead_letter_queue,
        "nova_queue": f"{n.topics[0]}.info",
        "legacy_queue": "notifications.info",
        "requests_exchange": r.exchange,
        "requests_queue": r.queue,
        "requests_retry": delay_queue_name(r.queue, float(n.retry_delays[0])),
        "requests_dead": f"{r.queue}.dead",
        "dead_exchange": r.dead_letter_exchange,
        "results": r.results_exchange,
        "reply": f"nova-autopilot.reply.{uuid.uuid4().hex}",
        "default": "amq.default",
        "watch_queue": "autopilot-watch.results",
    }


#: (user, right, names it needs, names it must not have)
CASES = [
    (
        "nova-notify",
        "configure",
        ["nova", "nova_queue", "legacy_queue"],
        ["pool", "requests_queue"],
    ),
    ("nova-notify", "write", ["nova", "nova_queue"], ["pool", "requests_exchange", "default"]),
    ("nova-notify", "read", ["nova"], ["nova_queue", "pool", "notifications_dead"]),
    (
        "nova-autopilot",
        "configure",
        [
            "nova",
            "pool",
            "pool_retry",
            "notifications_dead",
            "requests_exchange",
            "requests_queue",
            "requests_retry",
            "requests_dead",
            "dead_exchange",
            "results",
        ],
        ["nova_queue", "default"],
    ),
    (
        "nova-autopilot",
        "write",
        ["default", "pool", "pool_retry", "requests_queue", "dead_exchange", "results", "reply"],
        ["nova", "nova_queue"],
    ),
    (
        "nova-autopilot",
        "read",
        ["nova", "pool", "pool_retry", "requests_exchange", "requests_queue", "dead_exchange"],
        ["nova_queue", "legacy_queue"],
    ),
    (
        "autopilot-operator",
        "configure",
        ["requests_exchange", "requests_queue", "reply"],
        ["nova", "pool", "requests_dead", "results", "dead_exchange"],
    ),
    (
        "autopilot-operator",
        "write",
        ["requests_exchange", "requests_queue", "reply"],
        ["nova", "default", "results", "pool"],
    ),
    (
        "autopilot-operator",
        "read",
        ["requests_exchange", "reply"],
        ["nova", "pool", "notifications_dead", "requests_dead", "results", "nova_queue"],
    ),
    ("autopilot-watch", "configure", ["watch_queue"], ["results", "requests_queue", "nova"]),
    ("autopilot-watch", "write", ["watch_queue"], ["requests_exchange", "results", "default"]),
    (
        "autopilot-watch",
        "read",
        ["results", "watch_queue"],
        ["requests_queue", "pool", "requests_dead", "nova"],
    ),
    ("autopilot-inspect", "configure", [], ["notifications_dead", "requests_dead", "pool"]),
    ("autopilot-inspect", "write", [], ["notifications_dead", "requests_dead", "default"]),
    (
        "autopilot-inspect",
        "read",
        ["notifications_dead", "requests_dead"],
        ["pool", "requests_queue", "nova", "results"],
    ),
]


def test_the_page_gives_every_party_its_permissions() -> None:
    assert set(PERMISSIONS) == {
        "nova-notify",
        "nova-autopilot",
        "autopilot-operator",
        "autopilot-watch",
        "autopilot-inspect",
    }


def test_the_daemons_permissions_are_the_ones_the_bus_is_tested_with() -> None:
    from tests.integration.bus.test_topology import CONFIGURE, READ, WRITE

    assert PERMISSIONS["nova-autopilot"] == {"configure": CONFIGURE, "write": WRITE, "read": READ}


@pytest.mark.parametrize(
    ("user", "right", "allowed", "refused"), CASES, ids=[f"{u}-{r}" for u, r, *_ in CASES]
)
def test_each_party_gets_what_its_work_needs_and_no_more(
    user: str, right: str, allowed: list[str], refused: list[str]
) -> None:
    pattern = PERMISSIONS[user][right]
    known = names()
    for name in allowed:
        assert re.search(pattern, known[name]), f"{user} lacks {right} on {known[name]}"
    for name in refused:
        assert not re.search(pattern, known[name]), f"{user} has {right} on {known[name]}"
