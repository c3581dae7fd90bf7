"""A storm of events against the guards, with the real parts: the engine, the runner,
the journal on SQLite and openstacksdk over HTTP to the sandbox Nova.

10,000 "server went to ERROR" notifications for 500 servers on 10 compute hosts in 2
availability zones arrive in a burst on 8 threads, in batches of 50 decided together
(as the bus's handler threads hand them to the engine). The budgets per host, zone
and in all must bound what reaches Nova, every event must end as an operation in the
journal (run or refused, with its guard), and when Nova fails every rescue (2,000
events) the circuit breaker must stop the write calls: none but those of the
failures that opened it and of the operations then in flight. The figures (events
per second, writes, refusals by guard) are printed for docs/guards.md.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from nova_autopilot.events import Event, parse_message
from nova_autopilot.guards import BreakerLimits, GuardSettings
from nova_autopilot.policies import load_texts
from nova_autopilot.policies.model import Budget
from nova_autopilot.sandbox.faults import ServerFaults
from tests.integration.stack import Stack
from tests.waiting import until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SERVERS, EVENTS, HOSTS, ZONES, THREADS, BATCH = 500, 10_000, 10, 2, 8, 50
#: The failing storm: failed operations that open the global breaker, and how many
#: operations may be unfinished at once.
BREAKER_FAILURES, MAX_CONCURRENT = 3, 4
#: It is shorter: the breaker opens within its first events, and every later decision
#: is the same refusal (8,000 more would add half a minute and prove nothing more).
FAILING_EVENTS = 2_000
PER_HOST, PER_ZONE, IN_ALL = 5, 30, 60
POLICY = """
policies:
  - name: rescue-on-error
    when: {source: nova, event: instance.update, match: {field: payload.state, equals: error}}
    do: {action: rescue, params: {server: "{{ instance_id }}"}}
    confirm: {timeout: 60s}
"""
BUDGETS: dict[Any, Budget] = {
    "host": Budget(PER_HOST, 3600),
    "zone": Budget(PER_ZONE, 3600),
    "all": Budget(IN_ALL, 3600),
}


def settings(**changes: Any) -> GuardSettings:
    base: dict[str, Any] = {
        "default_cooldown_s": 1800,
        "budgets": BUDGETS,
        "max_concurrent": 100,
        "loop": Budget(5, 3600),
    }
    return GuardSettings(**(base | changes))


def went_to_error(servers: list[str], n: int) -> Event:
    """The n-th event of the storm: round-robin over the servers, whose place in the
    list decides their compute host and availability zone."""
    slot = n % len(servers)
    host = f"compute-{slot % HOSTS}"
    return parse_message(
        {
            "event_type": "instance.update",
            "priority": "INFO",
            "publisher_id": f"nova-compute:{host}",
            "message_id": f"storm-{n}",
            "payload": {
                "nova_object.name": "InstanceUpdatePayload",
                "nova_object.data": {
                    "uuid": servers[slot],
                    "tenant_id": "project-1",
                    "state": "error",
                    "host": host,
                    "availability_zone": f"az-{slot % HOSTS % ZONES}",
                },
            },
        },
        expect="nova",
    )


def storm(stack: Stack, servers: list[str], count: int, first: int = 0) -> float:
    """``count`` events on 8 threads in batches, as the bus hands them over; events
    per second."""
    events = [went_to_error(servers, n) for n in range(first, first + count)]
    batches = [events[n : n + BATCH] for n in range(0, len(events), BATCH)]
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        for decided in pool.map(stack.engine.handle_events, batches):
            for made in decided:
                assert isinstance(made, list)
                assert len(made) == 1  # every event is decided: one operation each
    return count / (time.perf_counter() - started)


def writes(stack: Stack) -> int:
    """Write calls Nova received: every POST of a server action."""
    return sum(n for call, n in stack.sandbox.request_counts().items() if call.startswith("POST"))


def outcomes(stack: Stack, since: datetime, *, storm_only: bool = True) -> Counter[str]:
    """Outcomes of the operations the storm's events led to (``storm_only``), or of all:
    Nova's own notifications (a server going to ERROR when its rescue fails) are
    decided too."""
    found = stack.journal.history(since=since, limit=EVENTS * 2)
    return Counter(
        op.outcome or "unfinished"
        for op in found
        if not storm_only or str(op.event.get("message_id")).startswith("storm-")
    )


def report(title: str, events: int, rate: float, stack: Stack, since: datetime) -> None:
    refusals = stack.engine.tally.snapshot().refusals
    print(
        f"\n{title}: {events} events for {SERVERS} servers at {rate:,.0f} events/s; "
        f"Nova write calls {writes(stack)}; outcomes {dict(outcomes(stack, since))} "
        f"(with Nova's own events: {dict(outcomes(stack, since, storm_only=False))}); "
        f"refusals by guard {dict(sorted(refusals.items()))}"
    )


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Any]:
    stacks: list[Stack] = []

    def make_(guard_settings: GuardSettings) -> tuple[Stack, list[str]]:
        stack = Stack(tmp_path / f"s{len(stacks)}", guard_settings=guard_settings)
        stack.policies = load_texts([("storm.yaml", POLICY)])
        stacks.append(stack.start())
        stack.sandbox.add_flavor("m1.small")
        servers = [stack.sandbox.add_server(f"web-{n}", "m1.small").id for n in range(SERVERS)]
        return stack, servers

    yield make_
    for stack in stacks:
        stack.stop()


def test_a_storm_reaches_nova_only_as_far_as_the_budgets_allow(make: Any) -> None:
    stack, servers = make(settings())
    since = datetime.now(timezone.utc)

    rate = storm(stack, servers, EVENTS)
    until(lambda: not stack.journal.unfinished(), 60, "every operation to end")

    report("storm", EVENTS, rate, stack, since)
    found = outcomes(stack, since)
    assert sum(found.values()) == EVENTS  # nothing lost: every event decided or refused
    ran = found["rescued"]
    allowed = min(PER_HOST * HOSTS, PER_ZONE * ZONES, IN_ALL)
    assert found == {"rescued": ran, "refused": EVENTS - ran}
    assert 0 < ran <= allowed
    assert outcomes(stack, since, storm_only=False)["rescued"] == ran
    assert writes(stack) == ran  # one rescue call per operation, none for a refusal
    refusals = stack.engine.tally.snapshot().refusals
    assert sum(refusals.values()) == sum(outcomes(stack, since, storm_only=False).values()) - ran
    assert refusals["budget(host)"] > 0
    assert set(refusals) <= {"busy", "cooldown", "budget(host)", "budget(zone)", "budget(global)"}


def test_a_storm_of_failing_operations_opens_the_breaker_and_nova_hears_no_more(
    make: Any,
) -> None:
    breaker = BreakerLimits(failures=BREAKER_FAILURES, window_s=600, half_open_after_s=1800)
    stack, servers = make(settings(breaker=breaker, max_concurrent=MAX_CONCURRENT))
    stack.sandbox.faults.set_everyone(ServerFaults(fail=frozenset({"rescue"})))
    since = datetime.now(timezone.utc)

    rate = storm(stack, servers, FAILING_EVENTS)
    until(lambda: not stack.journal.unfinished(), 60, "every operation to end")
    report("failing storm", FAILING_EVENTS, rate, stack, since)

    state = stack.journal.breakers()["global"]
    assert state.state == "open"
    found = outcomes(stack, since)
    assert sum(found.values()) == FAILING_EVENTS
    failed = found["failed"]
    assert found == {"failed": failed, "refused": FAILING_EVENTS - failed}
    assert outcomes(stack, since, storm_only=False)["failed"] == failed
    assert writes(stack) == failed  # only the operations that ran called Nova
    # How many may run: decisions are taken in batches under one lock against the
    # journal, each counted for the next, so at most MAX_CONCURRENT operations are
    # unfinished at any moment, and every batch reads the breaker first. The breaker is
    # moved after an operation's failure is written, under the decisions' lock (between
    # two batches): it opens on the failures it counts then,
    # BREAKER_FAILURES, or more if operations in flight at the third failure (at most
    # MAX_CONCURRENT - 1) ended before it was moved. Besides those failures, only the
    # operations in flight when it opened ran: 3 + 4 = 7 here.
    print(f"breaker opened after {state.failures} failures; {failed} operations ran")
    assert BREAKER_FAILURES <= state.failures <= BREAKER_FAILURES + MAX_CONCURRENT - 1
    assert failed <= state.failures + MAX_CONCURRENT
    after = [
        op
        for op in stack.journal.history(since=state.opened_at, limit=FAILING_EVENTS)
        if op.created_at > (state.opened_at or since)
    ]
    assert after
    assert all(op.outcome == "refused" for op in after)  # nothing decided after it ran
    # A decision already past the breaker when it opened is refused by another guard.
    guards_after = Counter((op.reason or "").split(":")[0] for op in after)
    assert set(guards_after) <= {"breaker(global)", "busy", "concurrency", "cooldown"}
    assert guards_after["breaker(global)"] >= len(after) - THREADS
    opened = [r for r in stack.results if r["action"] == "breaker"]
    assert [r["outcome"] for r in opened] == ["opened"]

    calls = writes(stack)
    refused_by_breaker = stack.engine.tally.snapshot().refusals["breaker"]
    storm(stack, servers, 1000, first=FAILING_EVENTS)  # it goes on: nothing reaches Nova
    assert writes(stack) == calls
    assert stack.engine.tally.snapshot().refusals["breaker"] == refused_by_breaker + 1000
