"""The journal's behaviour, written against any database, and the helpers of its tests.

``JournalBehaviour`` and ``MigrationBehaviour`` are collected through the test classes
that subclass them: tests/integration/journal/test_store.py runs them on SQLite files,
tests/integration/journal/test_databases.py on a real PostgreSQL and a real MariaDB. A
module using them provides two fixtures: ``journal_url`` (an empty journal database for
the test) and ``fresh_url`` (a database without any table, for the migration tests).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)

from nova_autopilot.errors import PermanentError
from nova_autopilot.journal import (
    INITIAL_PHASE,
    OUTCOMES,
    Accepted,
    Breaker,
    Duplicate,
    DuplicateOperation,
    Journal,
    NewMessage,
    NewOperation,
    Operation,
    OperationFinished,
    SchemaMismatch,
    StaleOperation,
    UnknownOperation,
    migrate,
    store,
)
from nova_autopilot.journal.database import Database
from nova_autopilot.journal.schema import metadata
from nova_autopilot.logs import REDACTED, redact

T = TypeVar("T")
T0 = datetime(2025, 6, 1, 12, 0, tzinfo=timezone.utc)
SECRET = "s3cr3t-Pa55w0rd-never-stored"
JOURNAL_TABLES = {"operations", "steps", "processed_messages", "refusals", "breakers"}


class Clock:
    """A clock that moves only when told to."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


OpenJournal = Callable[..., Journal]


def new_op(**fields: Any) -> NewOperation:
    values: dict[str, Any] = {
        "policy": "grow-on-approval",
        "action": "resize",
        "project_id": "proj-1",
        "server_id": "srv-1",
        "server_name": "web-1",
        "params": {"flavor": "m1.large"},
        "event": {"event_type": "request.resize", "payload": {"flavor": "m1.large"}},
        "why": "request.resize matched request.resize",
    }
    values.update(fields)
    return NewOperation(**values)


def accepted_op(journal: Journal, **fields: Any) -> Operation:
    new = new_op(**fields)
    result = journal.accept(message_key=f"msg-{new.id}", operations=[new])
    assert isinstance(result, Accepted)
    return journal.get(new.id)


def finished_op(journal: Journal, *, outcome: str = "confirmed", **fields: Any) -> Operation:
    return journal.finish(accepted_op(journal, **fields).id, outcome=outcome)


def all_at_once(count: int, work: Callable[[int], T]) -> list[T | BaseException]:
    """Run work(0..count-1) on as many threads, released together; results or errors."""
    start = threading.Barrier(count)

    def run(index: int) -> T | BaseException:
        start.wait(timeout=30)
        try:
            return work(index)
        except Exception as error:  # noqa: BLE001 - the test looks at every outcome
            return error

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(run, range(count)))


def stored_text(url: str) -> str:
    """Every value of every journal row, as the database returns it."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return "\n".join(
                repr(tuple(row))
                for table in metadata.sorted_tables
                for row in conn.execute(sa.select(table))
            )
    finally:
        engine.dispose()


def table_names(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def execute(url: str, statement: str) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(statement))
    finally:
        engine.dispose()


class JournalBehaviour:
    """What the journal does, whatever database holds it."""

    @pytest.fixture
    def clock(self) -> Clock:
        return Clock()

    @pytest.fixture
    def open_journal(self, journal_url: str) -> Iterator[OpenJournal]:
        opened: list[Journal] = []

        def open_(**options: Any) -> Journal:
            journal = Journal.open(journal_url, **options)
            opened.append(journal)
            return journal

        yield open_
        for journal in opened:
            journal.close()

    @pytest.fixture
    def journal(self, open_journal: OpenJournal, clock: Clock) -> Journal:
        return open_journal(clock=clock)

    # --- accepting messages -------------------------------------------------------------

    def test_a_new_message_is_accepted_with_its_operations_pending_at_their_start(
        self, journal: Journal
    ) -> None:
        new = new_op(
            request_id="req-1",
            correlation_id="corr-1",
            reply_to="amq.reply",
            deadline_at=T0 + timedelta(hours=1),
        )

        result = journal.accept(message_key="request:req-1", operations=[new])

        assert result == Accepted(message_key="request:req-1", operation_ids=(new.id,), at=T0)
        op = journal.get(new.id)
        given = {name: getattr(new, name) for name in NewOperation.__dataclass_fields__}
        assert {name: getattr(op, name) for name in given} == given
        assert (op.status, op.phase, op.state, op.outcome, op.reason) == (
            "pending",
            INITIAL_PHASE,
            {},
            None,
            None,
        )
        assert (op.nova_requests, op.step_count, op.version, op.owner) == (0, 0, 0, None)
        assert op.created_at == op.updated_at == T0
        assert op.message_key == "request:req-1"
        assert journal.is_processed("request:req-1")

    def test_a_message_seen_before_is_a_duplicate_naming_the_first_copy_and_writes_nothing(
        self, journal: Journal, clock: Clock
    ) -> None:
        first = [new_op(), new_op(server_id="srv-2")]
        journal.accept(message_key="nova:msg-1", operations=first)
        clock.advance(minutes=5)
        again = new_op()

        result = journal.accept(message_key="nova:msg-1", operations=[again])

        assert result == Duplicate(
            message_key="nova:msg-1",
            first_seen_at=T0,
            operation_ids=(first[0].id, first[1].id),
        )
        with pytest.raises(UnknownOperation):
            journal.get(again.id)
        assert len(journal.history()) == 2

    def test_a_message_that_led_to_no_operation_is_remembered_all_the_same(
        self, journal: Journal
    ) -> None:
        assert journal.accept(message_key="nova:quiet", operations=[]) == Accepted(
            "nova:quiet", (), T0
        )

        assert journal.is_processed("nova:quiet")
        assert journal.accept(message_key="nova:quiet") == Duplicate("nova:quiet", T0, ())
        assert not journal.is_processed("nova:other")

    def test_message_keys_are_compared_exactly(self, journal: Journal) -> None:
        keys = ["request:Req-1", "request:req-1", "request:req-1 ", "x" * 300, "x" * 301]

        results = [journal.accept(message_key=key) for key in keys]

        assert all(isinstance(result, Accepted) for result in results)
        assert all(isinstance(journal.accept(message_key=key), Duplicate) for key in keys)

    def test_an_operation_id_already_taken_fails_the_whole_message(self, journal: Journal) -> None:
        taken = accepted_op(journal)
        fresh = new_op()

        with pytest.raises(DuplicateOperation) as caught:
            journal.accept(message_key="nova:msg-2", operations=[fresh, new_op(id=taken.id)])

        assert caught.value.operation_id == taken.id
        assert isinstance(caught.value, PermanentError)
        assert not journal.is_processed("nova:msg-2")
        with pytest.raises(UnknownOperation):
            journal.get(fresh.id)

    def test_reads_within_reading_share_one_transaction_and_writes_there_are_refused(
        self, journal: Journal
    ) -> None:
        op = accepted_op(journal)
        begins: list[object] = []

        def begun(conn: object) -> None:
            begins.append(conn)

        sa.event.listen(sa.engine.Engine, "begin", begun)
        try:
            with journal.reading():
                assert journal.get(op.id).id == op.id
                assert journal.count_unfinished() == 1
                assert journal.activities([op.server_id or ""])[op.server_id or ""]
                with journal.reading():  # nested: the same transaction
                    assert set(journal.processed([f"msg-{op.id}", "msg-other"])) == {f"msg-{op.id}"}
                with ThreadPoolExecutor(1) as pool:
                    elsewhere = pool.submit(journal.count_unfinished).result()
                with pytest.raises(RuntimeError, match="within reading"):
                    journal.accept(message_key="msg-late", operations=[new_op()])
            in_block = len(begins)
            assert journal.count_unfinished() == 1
        finally:
            sa.event.remove(sa.engine.Engine, "begin", begun)

        assert elsewhere == 1
        assert in_block == 2  # the block's transaction, and another thread's own
        assert len(begins) == 3
        assert not journal.processed(["msg-late"])

    def test_several_messages_are_accepted_together_as_one_by_one(self, journal: Journal) -> None:
        before = new_op()
        journal.accept(message_key="nova:old", operations=[before])
        one, two, three = new_op(), new_op(server_id="srv-2"), new_op(server_id="srv-3")

        results = journal.accept_many(
            [
                NewMessage("nova:a", (one, two), fingerprint="f-a"),
                NewMessage("nova:quiet"),
                NewMessage("nova:a", (three,), fingerprint="f-other"),  # a copy within
                NewMessage("nova:b", (three,)),
            ]
        )

        assert results == [
            Accepted("nova:a", (one.id, two.id), T0),
            Accepted("nova:quiet", (), T0),
            Duplicate("nova:a", T0, (one.id, two.id), "f-a"),
            Accepted("nova:b", (three.id,), T0),
        ]
        recorded = results[0]
        assert isinstance(recorded, Accepted)
        assert recorded.operations == (journal.get(one.id), journal.get(two.id))
        assert [journal.get(new.id).status for new in (one, two, three)] == ["pending"] * 3
        assert journal.processed(["nova:a", "nova:quiet", "nova:b", "nova:never", "nova:old"]) == {
            "nova:a": Duplicate("nova:a", T0, (one.id, two.id), "f-a"),
            "nova:quiet": Duplicate("nova:quiet", T0, ()),
            "nova:b": Duplicate("nova:b", T0, (three.id,)),
            "nova:old": Duplicate("nova:old", T0, (before.id,)),
        }
        assert journal.accept_many([]) == []

    def test_a_batch_stores_exactly_what_accepting_one_by_one_stores(
        self, journal_url: str, journal: Journal
    ) -> None:
        # accept_many inserts through the driver's executemany, accept through
        # SQLAlchemy's insert: the same rows, value for value, as the database holds them.
        zone = timezone(timedelta(hours=-7, minutes=-30))

        def message(tag: str, fingerprint: str | None) -> NewMessage:
            return NewMessage(
                f"nova:{tag}",
                (
                    new_op(
                        id=f"{tag}-1",
                        deadline_at=datetime(2025, 6, 1, 4, 30, 0, 123456, tzinfo=zone),
                        host=None,
                        availability_zone="az-\u00e9",
                        params={"flavor": "m1.large", "note": "caf\u00e9 \u2713", "n": 1.5},
                        event={"payload": {"nested": [1, None, True, "x" * 3000]}},
                        why="why \u2713",
                    ),
                    new_op(id=f"{tag}-2", mode="dry-run", outcome="dry_run", reason="dry run"),
                ),
                fingerprint=fingerprint,
            )

        for fingerprint in ("f-1", None):
            tags = ("bat", "one") if fingerprint else ("ba2", "on2")
            journal.accept_many([message(tags[0], fingerprint)])
            single = message(tags[1], fingerprint)
            journal.accept(
                message_key=single.message_key,
                operations=single.operations,
                fingerprint=single.fingerprint,
            )
        engine = sa.create_engine(journal_url)
        try:
            with engine.connect() as conn:
                stored = {  # all but the messages' own serial number
                    table: sorted(
                        repr(tuple(row)).replace("bat", "one").replace("ba2", "on2")
                        for row in conn.exec_driver_sql(f"SELECT {columns} FROM {table}")
                    )
                    for table, columns in (
                        ("operations", "*"),
                        (
                            "processed_messages",
                            "message_key, first_seen_at, operation_ids, fingerprint",
                        ),
                    )
                }
        finally:
            engine.dispose()
        for rows in stored.values():
            assert len(rows) in (4, 8)
            assert rows[0::2] == rows[1::2]  # each row of the batch and its one-by-one twin

    def test_a_batch_larger_than_one_statement_is_stored_whole_and_in_order(
        self, journal: Journal
    ) -> None:
        news = [new_op(server_id=f"srv-{n}", params={"n": n}) for n in range(150)]

        results = journal.accept_many(
            [NewMessage(f"nova:{n}", (new,)) for n, new in enumerate(news)]
        )

        assert [r.operation_ids for r in results] == [(new.id,) for new in news]
        assert [journal.get(new.id).params for new in news] == [{"n": n} for n in range(150)]
        assert journal.processed([f"nova:{n}" for n in range(150)]).keys() == {
            f"nova:{n}" for n in range(150)
        }

    def test_a_batch_holding_a_key_seen_before_is_accepted_one_by_one(
        self, journal: Journal, clock: Clock
    ) -> None:
        first = new_op()
        journal.accept(message_key="nova:seen", operations=[first])
        clock.advance(minutes=1)
        fresh, again = new_op(server_id="srv-2"), new_op(server_id="srv-3")

        results = journal.accept_many(
            [NewMessage("nova:new", (fresh,)), NewMessage("nova:seen", (again,))]
        )

        assert results == [
            Accepted("nova:new", (fresh.id,), T0 + timedelta(minutes=1)),
            Duplicate("nova:seen", T0, (first.id,)),
        ]
        assert journal.get(fresh.id).status == "pending"
        with pytest.raises(UnknownOperation):
            journal.get(again.id)

    def test_the_servers_activity_and_placement_are_read_for_several_at_once(
        self, journal: Journal, clock: Clock
    ) -> None:
        finished_op(journal, host="compute-1", availability_zone="az-1")
        clock.advance(minutes=1)
        accepted_op(journal, server_id="srv-2", host="compute-2", availability_zone=None)
        accepted_op(journal, server_id="srv-2")
        servers = ["srv-1", "srv-2", "srv-9"]

        activities = journal.activities(servers)
        placements = journal.placements(servers)

        assert activities == {s: journal.activity(s) for s in servers}
        assert [len(activities[s]) for s in servers] == [1, 2, 0]
        assert placements == {s: journal.placement(s) for s in servers}
        assert placements["srv-2"] == ("compute-2", None)
        assert journal.activities([]) == {}
        assert journal.placements([]) == {}

    def test_ids_repeated_within_one_message_are_refused(self, journal: Journal) -> None:
        new = new_op()

        with pytest.raises(ValueError, match="repeat"):
            journal.accept(message_key="nova:msg-3", operations=[new, new])

    def test_naive_times_and_values_too_long_for_their_column_are_refused(
        self, journal: Journal
    ) -> None:
        with pytest.raises(ValueError, match="timezone-aware"):
            journal.accept(message_key="k", now=datetime(2025, 1, 1))
        with pytest.raises(ValueError, match="timezone-aware"):
            new_op(deadline_at=datetime(2025, 1, 1))
        with pytest.raises(ValueError, match="server_id"):
            new_op(server_id="s" * 65)
        with pytest.raises(ValueError, match="mode"):
            new_op(mode="sometimes")
        assert not journal.is_processed("k")

    def test_pruning_processed_messages_forgets_only_the_older_ones(
        self, journal: Journal, clock: Clock
    ) -> None:
        journal.accept(message_key="old")
        clock.advance(days=3)
        journal.accept(message_key="new")

        assert journal.prune_processed(older_than=T0 + timedelta(days=1)) == 1

        assert not journal.is_processed("old")
        assert journal.is_processed("new")
        assert isinstance(journal.accept(message_key="old"), Accepted)

    # --- steps and the state machine ----------------------------------------------------

    def test_steps_are_numbered_in_order_with_their_times_and_nova_requests_add_up(
        self, journal: Journal, clock: Clock
    ) -> None:
        op = accepted_op(journal)

        journal.record_step(op.id, name="resize", detail={"flavor": "m1.large"}, nova_requests=2)
        clock.advance(seconds=30)
        journal.record_step(op.id, name="wait", detail={}, nova_requests=0)
        clock.advance(seconds=30)
        journal.record_step(op.id, name="confirm", detail={"status": "ACTIVE"}, nova_requests=1)

        steps = journal.steps(op.id)
        assert [(s.seq, s.name, s.nova_requests) for s in steps] == [
            (1, "resize", 2),
            (2, "wait", 0),
            (3, "confirm", 1),
        ]
        assert [s.at for s in steps] == [T0, T0 + timedelta(seconds=30), T0 + timedelta(minutes=1)]
        assert steps[0].detail == {"flavor": "m1.large"}
        after = journal.get(op.id)
        assert (after.nova_requests, after.step_count) == (3, 3)
        assert after.updated_at == T0 + timedelta(minutes=1)
        assert after.version == op.version

    def test_steps_of_an_unknown_operation_raise_and_of_a_quiet_one_are_empty(
        self, journal: Journal
    ) -> None:
        op = accepted_op(journal)

        assert journal.steps(op.id) == []
        with pytest.raises(UnknownOperation):
            journal.steps("nope")
        with pytest.raises(UnknownOperation):
            journal.record_step("nope", name="resize", detail={})
        with pytest.raises(ValueError, match="negative"):
            journal.record_step(op.id, name="resize", detail={}, nova_requests=-1)

    def test_advancing_moves_the_phase_and_state_and_bumps_the_version(
        self, journal: Journal, clock: Clock
    ) -> None:
        op = accepted_op(journal)
        clock.advance(seconds=5)

        moved = journal.advance(
            op.id, phase="resizing", state={"server_id": "srv-1"}, expect_version=op.version
        )

        assert (moved.phase, moved.state, moved.status) == (
            "resizing",
            {"server_id": "srv-1"},
            "running",
        )
        assert moved.version == op.version + 1
        assert moved.updated_at == T0 + timedelta(seconds=5)
        assert journal.get(op.id) == moved

    def test_advancing_from_a_stale_version_raises_and_changes_nothing(
        self, journal: Journal
    ) -> None:
        op = accepted_op(journal)
        journal.advance(op.id, phase="resizing", state={"n": 1}, expect_version=op.version)

        with pytest.raises(StaleOperation) as caught:
            journal.advance(op.id, phase="confirming", state={"n": 2}, expect_version=op.version)

        assert (caught.value.expected, caught.value.actual) == (op.version, op.version + 1)
        assert journal.get(op.id).phase == "resizing"
        with pytest.raises(UnknownOperation):
            journal.advance("nope", phase="x", state={}, expect_version=0)

    def test_finishing_gives_the_outcome_once_and_only_once(
        self, journal: Journal, clock: Clock
    ) -> None:
        op = accepted_op(journal)
        clock.advance(minutes=2)

        done = journal.finish(op.id, outcome="confirmed", reason="flavor m1.large, ACTIVE")

        assert (done.status, done.outcome, done.reason) == (
            "done",
            "confirmed",
            "flavor m1.large, ACTIVE",
        )
        assert done.finished_at == T0 + timedelta(minutes=2)
        assert done.finished
        with pytest.raises(OperationFinished) as caught:
            journal.finish(op.id, outcome="failed", reason="late")
        assert caught.value.outcome == "confirmed"
        with pytest.raises(OperationFinished):
            journal.advance(op.id, phase="again", state={}, expect_version=done.version)
        assert journal.get(op.id) == done

    def test_only_known_outcomes_are_accepted_and_a_changed_operation_is_stale(
        self, journal: Journal
    ) -> None:
        op = accepted_op(journal)

        with pytest.raises(ValueError, match="unknown outcome"):
            journal.finish(op.id, outcome="great")
        with pytest.raises(StaleOperation):
            journal.finish(op.id, outcome="failed", expect_version=op.version + 1)
        assert not journal.get(op.id).finished
        assert journal.finish(op.id, outcome="failed", expect_version=op.version).finished
        with pytest.raises(UnknownOperation):
            journal.finish("nope", outcome="failed")

    def test_an_unfinished_operation_survives_a_restart_with_its_phase_state_and_steps(
        self, open_journal: OpenJournal, clock: Clock
    ) -> None:
        before = open_journal(clock=clock)
        op = accepted_op(before)
        before.record_step(op.id, name="resize", detail={"flavor": "m1.large"}, nova_requests=1)
        moved = before.advance(
            op.id, phase="waiting_verify", state={"old_flavor": "m1.small"}, expect_version=0
        )
        finished_op(before)
        before.close()

        after = open_journal(clock=clock)

        assert after.unfinished() == [moved]
        assert [s.name for s in after.steps(op.id)] == ["resize"]

    # --- claims -------------------------------------------------------------------------

    def test_an_unowned_operation_is_claimed_for_the_lease(
        self, open_journal: OpenJournal, clock: Clock
    ) -> None:
        journal = open_journal(clock=clock, lease=timedelta(minutes=2))
        op = accepted_op(journal)

        claimed = journal.claim(op.id, owner="daemon-a")

        assert claimed is not None
        assert (claimed.owner, claimed.lease_until, claimed.status) == (
            "daemon-a",
            T0 + timedelta(minutes=2),
            "running",
        )
        assert claimed.version == op.version + 1
        clock.advance(minutes=1)
        again = journal.claim(op.id, owner="daemon-a")
        assert again is not None
        assert again.version == claimed.version
        assert again.lease_until == T0 + timedelta(minutes=3)

    def test_a_held_operation_cannot_be_claimed_until_its_lease_runs_out(
        self, open_journal: OpenJournal, clock: Clock
    ) -> None:
        journal = open_journal(clock=clock, lease=timedelta(minutes=2))
        op = accepted_op(journal)
        held = journal.claim(op.id, owner="daemon-a")
        assert held is not None

        assert journal.claim(op.id, owner="daemon-b") is None
        clock.advance(minutes=2, seconds=1)
        taken = journal.claim(op.id, owner="daemon-b")

        assert taken is not None
        assert taken.owner == "daemon-b"
        with pytest.raises(StaleOperation):
            journal.advance(op.id, phase="late", state={}, expect_version=held.version)

    def test_finished_operations_cannot_be_claimed_and_unknown_ones_raise(
        self, journal: Journal
    ) -> None:
        done = finished_op(journal)

        assert journal.claim(done.id, owner="daemon-a") is None
        with pytest.raises(UnknownOperation):
            journal.claim("nope", owner="daemon-a")

    def test_renewing_extends_and_counts_only_the_owners_unfinished_operations(
        self, journal: Journal
    ) -> None:
        ops = [accepted_op(journal) for _ in range(3)]
        for op in ops:
            journal.claim(op.id, owner="daemon-a")
        journal.finish(ops[2].id, outcome="failed")
        other = accepted_op(journal)
        journal.claim(other.id, owner="daemon-b")

        assert journal.renew("daemon-a", until=T0 + timedelta(hours=1)) == 2

        assert [journal.get(op.id).lease_until for op in ops[:2]] == [T0 + timedelta(hours=1)] * 2
        assert journal.get(other.id).lease_until == T0 + timedelta(minutes=5)

    def test_a_released_operation_can_be_claimed_by_another_owner_at_once(
        self, journal: Journal
    ) -> None:
        op = accepted_op(journal)
        journal.claim(op.id, owner="daemon-a")

        assert journal.release("daemon-a") == 1

        assert journal.get(op.id).owner is None
        taken = journal.claim(op.id, owner="daemon-b")
        assert taken is not None
        assert taken.owner == "daemon-b"

    # --- queries ------------------------------------------------------------------------

    def test_getting_an_unknown_operation_raises_a_permanent_error(self, journal: Journal) -> None:
        with pytest.raises(UnknownOperation) as caught:
            journal.get("nope")

        assert isinstance(caught.value, PermanentError)
        assert caught.value.operation_id == "nope"

    def test_unfinished_and_in_flight_list_operations_oldest_first(
        self, journal: Journal, clock: Clock
    ) -> None:
        first = accepted_op(journal, server_id="srv-1")
        clock.advance(seconds=1)
        finished_op(journal, server_id="srv-1")
        clock.advance(seconds=1)
        other = accepted_op(journal, server_id="srv-2")
        clock.advance(seconds=1)
        last = accepted_op(journal, server_id="srv-1")

        assert [op.id for op in journal.unfinished()] == [first.id, other.id, last.id]
        assert [op.id for op in journal.in_flight("srv-1")] == [first.id, last.id]
        assert journal.in_flight("srv-9") == []

    def test_history_lists_newest_first_with_its_filters_and_limit(
        self, journal: Journal, clock: Clock
    ) -> None:
        a = finished_op(journal, server_id="srv-1", policy="p1", outcome="confirmed")
        clock.advance(hours=1)
        b = finished_op(journal, server_id="srv-2", policy="p1", outcome="reverted")
        clock.advance(hours=1)
        c = accepted_op(journal, server_id="srv-1", policy="p2")

        assert [op.id for op in journal.history()] == [c.id, b.id, a.id]
        assert [op.id for op in journal.history(limit=2)] == [c.id, b.id]
        with pytest.raises(ValueError, match="limit"):
            journal.history(limit=0)
        assert [op.id for op in journal.history(server_id="srv-1")] == [c.id, a.id]
        assert [op.id for op in journal.history(policy="p1")] == [b.id, a.id]
        assert [op.id for op in journal.history(outcome="reverted")] == [b.id]
        window = journal.history(since=T0 + timedelta(minutes=30), until=T0 + timedelta(hours=2))
        assert [op.id for op in window] == [b.id]
        assert [op.id for op in journal.history(id_prefix=b.id)] == [b.id]
        assert [op.id for op in journal.history(id_prefix=b.id[:12])] == [b.id]
        assert journal.history(id_prefix=b.id, policy="p2") == []
        assert journal.history(id_prefix="no-such-operation") == []
        assert journal.history(id_prefix="%") == journal.history(id_prefix="_") == []

    def test_counting_for_budgets_filters_and_can_leave_out_outcomes(
        self, journal: Journal, clock: Clock
    ) -> None:
        finished_op(journal, policy="p1", project_id="proj-1")
        clock.advance(hours=2)
        finished_op(journal, policy="p1", project_id="proj-1", outcome="refused")
        finished_op(journal, policy="p1", project_id="proj-2", action="rescue")
        accepted_op(journal, policy="p1", project_id="proj-1", server_id="srv-9")
        accepted_op(journal, policy="p2", project_id="proj-1")
        since = T0 + timedelta(hours=1)

        assert journal.count(since=T0) == 5
        assert journal.count(since=since) == 4
        assert journal.count(since=since, policy="p1") == 3
        assert journal.count(since=since, policy="p1", project_id="proj-1") == 2
        assert journal.count(since=since, server_id="srv-9") == 1
        assert journal.count(since=since, actions=["rescue", "unrescue"]) == 1
        assert journal.count(since=since, policy="p1", exclude_outcomes=["refused"]) == 2

    def test_the_last_finished_operation_on_a_server_is_found_for_cooldowns(
        self, journal: Journal, clock: Clock
    ) -> None:
        assert journal.last_finished(server_id="srv-1") is None
        finished_op(journal, policy="p1")
        clock.advance(minutes=1)
        latest = finished_op(journal, policy="p1")
        clock.advance(minutes=1)
        other_policy = finished_op(journal, policy="p2")
        clock.advance(minutes=1)
        refused = finished_op(journal, policy="p1", outcome="refused")
        accepted_op(journal, policy="p1")

        assert journal.last_finished(server_id="srv-1") == refused
        assert journal.last_finished(server_id="srv-1", policy="p1") == refused
        assert journal.last_finished(server_id="srv-1", policy="p2") == other_policy
        found = journal.last_finished(server_id="srv-1", policy="p1", exclude_outcomes=["refused"])
        assert found == latest
        assert journal.last_finished(server_id="srv-2") is None
        activity = journal.activity("srv-1")
        assert len(activity) == 5
        assert sorted(a.outcome or "-" for a in activity) == [
            "-",
            "confirmed",
            "confirmed",
            "confirmed",
            "refused",
        ]
        assert {a.policy for a in activity} == {"p1", "p2"}
        assert journal.activity("srv-2") == []

    def test_counting_by_host_and_zone_and_what_is_unfinished_or_failed(
        self, journal: Journal, clock: Clock
    ) -> None:
        finished_op(journal, host="compute-1", availability_zone="az-1", outcome="failed")
        clock.advance(minutes=1)
        finished_op(journal, host="compute-1", availability_zone="az-1", outcome="reverted")
        clock.advance(minutes=1)
        accepted_op(journal, policy="p2", host="compute-2", availability_zone="az-1")
        running = accepted_op(journal, policy="p2", server_id="srv-7")

        assert journal.count(since=T0, host="compute-1") == 2
        assert journal.count(since=T0, availability_zone="az-1") == 3
        assert journal.count(since=T0, host="compute-2", availability_zone="az-1") == 1
        assert journal.count_unfinished() == 2
        assert journal.count_unfinished(policy="p2") == 2
        assert journal.count_unfinished(policy="grow-on-approval") == 0
        failures = ("failed", "timed_out", "reverted")
        assert journal.count_finished(since=T0, outcomes=failures) == 2
        assert journal.count_finished(since=T0 + timedelta(seconds=30), outcomes=failures) == 1
        assert journal.count_finished(since=T0, outcomes=failures, policy="p2") == 0

        assert journal.placement("srv-7") == (None, None)
        journal.place(running.id, host="compute-3", availability_zone="az-2")
        journal.place(running.id, host="other", availability_zone=None)  # known: kept
        assert journal.placement("srv-7") == ("compute-3", "az-2")
        assert journal.placement("srv-1") == ("compute-2", "az-1")  # the latest that knew
        with pytest.raises(ValueError, match="host"):
            journal.place(running.id, host="h" * 256, availability_zone=None)

    def test_unfinished_operations_are_counted_by_phase(self, journal: Journal) -> None:
        held = ("queued", "awaiting_approval")
        assert journal.count_unfinished_in(held) == {"queued": 0, "awaiting_approval": 0}
        accepted_op(journal, phase="queued")
        accepted_op(journal, phase="queued", server_id="srv-2")
        accepted_op(journal, phase="awaiting_approval")
        finished_op(journal, phase="awaiting_approval", outcome="expired")
        accepted_op(journal)  # running: in no held phase

        assert journal.count_unfinished_in(held) == {"queued": 2, "awaiting_approval": 1}
        assert journal.count_unfinished_in(["awaiting_approval"]) == {"awaiting_approval": 1}

    def test_a_decision_final_when_recorded_is_accepted_finished_in_one_write(
        self, journal: Journal
    ) -> None:
        new = new_op(outcome="refused", reason="budget(host): 5 of 5 operations used")

        journal.accept(message_key="nova:m-1", operations=[new])

        op = journal.get(new.id)
        assert (op.status, op.outcome, op.reason) == ("done", "refused", new.reason)
        assert op.finished_at == op.created_at == T0
        assert journal.unfinished() == []
        with pytest.raises(ValueError, match="unknown outcome"):
            new_op(outcome="vanished")

    # --- circuit breakers ---------------------------------------------------------------

    def test_a_breaker_is_created_then_changed_only_from_the_version_read(
        self, journal: Journal, clock: Clock
    ) -> None:
        assert journal.breakers() == {}
        opened = Breaker(scope="policy:p1", state="open", failures=3, reason="x", opened_at=T0)

        first = journal.save_breaker(opened, expect_version=None)

        assert first is not None
        assert (first.state, first.version, first.updated_at, first.opened_at) == (
            "open",
            0,
            T0,
            T0,
        )
        assert journal.save_breaker(opened, expect_version=None) is None  # already there
        clock.advance(minutes=1)
        trial = replace(first, state="half_open", trial_operation_id="op-1")
        second = journal.save_breaker(trial, expect_version=0)
        assert second is not None
        assert (second.state, second.trial_operation_id, second.version) == ("half_open", "op-1", 1)
        assert journal.save_breaker(trial, expect_version=0) is None  # stale
        assert journal.breakers(["policy:p1", "global"]) == {"policy:p1": second}

    def test_resetting_breakers_closes_them_and_says_which_were_open(
        self, journal: Journal, clock: Clock
    ) -> None:
        for scope, state in (("global", "open"), ("policy:a", "half_open"), ("policy:b", "open")):
            journal.save_breaker(
                Breaker(scope=scope, state=state, opened_at=T0),
                expect_version=None,  # type: ignore[arg-type]
            )
        clock.advance(minutes=5)

        assert journal.reset_breakers(["policy:a", "policy:zzz"]) == ["policy:a"]
        assert journal.reset_breakers() == ["global", "policy:b"]
        assert journal.reset_breakers() == []
        found = journal.breakers()
        assert {b.state for b in found.values()} == {"closed"}
        assert {b.closed_at for b in found.values()} == {clock.now}
        assert found["policy:a"].trial_operation_id is None

    def test_concurrent_writers_of_one_breaker_never_both_win(self, journal: Journal) -> None:
        opened = Breaker(scope="global", state="open", failures=5, opened_at=T0)
        results = all_at_once(6, lambda _: journal.save_breaker(opened, expect_version=None))
        assert sum(1 for r in results if isinstance(r, Breaker)) == 1, results
        current = journal.breakers()["global"]
        trials = all_at_once(
            6,
            lambda i: journal.save_breaker(
                replace(current, state="half_open", trial_operation_id=f"op-{i}"),
                expect_version=current.version,
            ),
        )
        assert sum(1 for r in trials if isinstance(r, Breaker)) == 1, trials

    # --- retention ----------------------------------------------------------------------

    def test_pruning_deletes_operations_finished_before_the_cutoff_with_their_steps(
        self, journal: Journal, clock: Clock, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(store, "PRUNE_BATCH", 2)  # several batches
        old = [finished_op(journal) for _ in range(5)]
        for op in old:
            journal.record_step(op.id, name="resize", detail={})
        unfinished_old = accepted_op(journal)
        clock.advance(days=10)
        recent = finished_op(journal)

        assert journal.prune(finished_before=T0 + timedelta(days=1)) == 5

        for op in old:
            with pytest.raises(UnknownOperation):
                journal.steps(op.id)
        assert [op.id for op in journal.history()] == [recent.id, unfinished_old.id]
        assert journal.prune(finished_before=T0 + timedelta(days=1)) == 0

    # --- secrets ------------------------------------------------------------------------

    def test_secrets_given_in_params_state_step_details_and_events_are_not_stored(
        self, open_journal: OpenJournal, clock: Clock, journal_url: str
    ) -> None:
        journal = open_journal(clock=clock, redact=redact)
        op = accepted_op(
            journal,
            params={"admin_password": SECRET, "flavor": "m1.large"},
            event={"payload": {"adminPass": SECRET}, "note": f"password={SECRET}"},
        )
        journal.record_step(op.id, name="rescue", detail={"admin_password": SECRET})
        journal.advance(op.id, phase="rescuing", state={"admin_password": SECRET}, expect_version=0)
        journal.finish(op.id, outcome="failed", reason=f"Nova said: token={SECRET}")

        text = stored_text(journal_url)
        assert SECRET not in text
        assert REDACTED in text
        assert journal.get(op.id).params == {"admin_password": REDACTED, "flavor": "m1.large"}

    # --- several threads, several daemons -----------------------------------------------

    def test_threads_accepting_the_same_message_accept_it_exactly_once(
        self, journal: Journal
    ) -> None:
        news = [new_op() for _ in range(8)]

        results = all_at_once(8, lambda i: journal.accept(message_key="m", operations=[news[i]]))

        accepted = [r for r in results if isinstance(r, Accepted)]
        duplicates = [r for r in results if isinstance(r, Duplicate)]
        assert (len(accepted), len(duplicates)) == (1, 7), results
        assert {d.operation_ids for d in duplicates} == {accepted[0].operation_ids}
        assert [op.id for op in journal.unfinished()] == list(accepted[0].operation_ids)

    def test_daemons_sharing_the_journal_accept_a_message_exactly_once(
        self, open_journal: OpenJournal, clock: Clock
    ) -> None:
        daemons = [open_journal(clock=clock) for _ in range(4)]

        results = all_at_once(
            4, lambda i: daemons[i].accept(message_key="shared", operations=[new_op()])
        )

        assert sum(isinstance(r, Accepted) for r in results) == 1, results
        assert sum(isinstance(r, Duplicate) for r in results) == 3, results

    def test_owners_claiming_one_operation_at_once_leave_exactly_one_winner(
        self, open_journal: OpenJournal, clock: Clock
    ) -> None:
        daemons = [open_journal(clock=clock) for _ in range(4)]
        op = accepted_op(daemons[0])

        results = all_at_once(4, lambda i: daemons[i].claim(op.id, owner=f"daemon-{i}"))

        winners = [r for r in results if isinstance(r, Operation)]
        assert len(winners) == 1, results
        assert results.count(None) == 3, results
        assert daemons[0].get(op.id).owner == winners[0].owner

    def test_concurrent_steps_get_distinct_numbers_and_all_their_nova_requests(
        self, journal: Journal
    ) -> None:
        op = accepted_op(journal)

        results = all_at_once(
            8, lambda i: journal.record_step(op.id, name=f"s{i}", detail={}, nova_requests=i)
        )

        assert results == [None] * 8
        steps = journal.steps(op.id)
        assert [s.seq for s in steps] == list(range(1, 9))
        assert sorted(s.name for s in steps) == sorted(f"s{i}" for i in range(8))
        assert journal.get(op.id).nova_requests == sum(range(8))

    def test_concurrent_advances_from_one_version_leave_exactly_one_winner(
        self, open_journal: OpenJournal, clock: Clock
    ) -> None:
        daemons = [open_journal(clock=clock) for _ in range(4)]
        op = accepted_op(daemons[0])

        results = all_at_once(
            4,
            lambda i: daemons[i].advance(
                op.id, phase=f"p{i}", state={"by": i}, expect_version=op.version
            ),
        )

        winners = [r for r in results if isinstance(r, Operation)]
        assert len(winners) == 1, results
        assert all(isinstance(r, StaleOperation) for r in results if r not in winners)
        assert daemons[0].get(op.id).phase == winners[0].phase

    # --- invariants over random sequences -----------------------------------------------

    def test_random_sequences_keep_the_journal_consistent(self, journal: Journal) -> None:
        run_state_machine_as_test(
            lambda: JournalModel(journal),
            settings=settings(
                max_examples=self.property_examples,
                stateful_step_count=25,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow],
            ),
        )

    property_examples = 40


class JournalModel(RuleBasedStateMachine):
    """Random accept / step / advance / finish / claim sequences against a model.

    Invariants: every operation finishes at most once; its steps are numbered 1..n in
    the order recorded; its nova_requests is the sum of its steps'; versions only grow;
    unfinished() lists exactly the operations without an outcome.
    """

    operations = Bundle("operations")

    def __init__(self, journal: Journal) -> None:
        super().__init__()
        self.journal = journal
        self.run = uuid.uuid4().hex[:8]  # keeps runs apart in one database
        self.now = T0
        self.messages: dict[str, tuple[str, ...]] = {}
        self.model: dict[str, dict[str, Any]] = {}

    def tick(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now

    @initialize()
    def start_clean(self) -> None:
        self.seen_before = {op.id for op in self.journal.unfinished()}

    @rule(target=operations, message=st.integers(0, 4), count=st.integers(0, 2))
    def accept(self, message: int, count: int) -> Any:
        key = f"{self.run}:msg-{message}"
        news = [new_op(server_id=f"srv-{message}") for _ in range(count)]
        result = self.journal.accept(message_key=key, operations=news, now=self.tick())
        if key in self.messages:
            assert isinstance(result, Duplicate)
            assert result.operation_ids == self.messages[key]
            return multiple()
        assert isinstance(result, Accepted)
        self.messages[key] = result.operation_ids
        for new in news:
            self.model[new.id] = {"outcome": None, "steps": [], "version": 0, "owner": None}
        return multiple(*result.operation_ids)

    @rule(
        op_id=operations, name=st.sampled_from(["resize", "wait", "confirm"]), n=st.integers(0, 3)
    )
    def record_step(self, op_id: str, name: str, n: int) -> None:
        self.journal.record_step(
            op_id, name=name, detail={"n": n}, nova_requests=n, now=self.tick()
        )
        self.model[op_id]["steps"].append((name, n))

    @rule(op_id=operations, phase=st.sampled_from(["a", "b", "c"]), stale=st.booleans())
    def advance(self, op_id: str, phase: str, stale: bool) -> None:
        entry = self.model[op_id]
        version = entry["version"] - 1 if stale else entry["version"]
        try:
            moved = self.journal.advance(
                op_id, phase=phase, state={"phase": phase}, expect_version=version, now=self.tick()
            )
        except OperationFinished:
            assert entry["outcome"] is not None
        except StaleOperation:
            assert stale
            assert entry["outcome"] is None
        else:
            assert entry["outcome"] is None
            assert not stale
            entry["version"] += 1
            assert moved.version == entry["version"]

    @rule(op_id=operations, outcome=st.sampled_from(OUTCOMES))
    def finish(self, op_id: str, outcome: str) -> None:
        entry = self.model[op_id]
        try:
            self.journal.finish(op_id, outcome=outcome, now=self.tick())
        except OperationFinished as error:
            assert error.outcome == entry["outcome"]
        else:
            assert entry["outcome"] is None
            entry["outcome"] = outcome
            entry["version"] += 1

    @rule(op_id=operations, owner=st.sampled_from(["a", "b"]), wait_s=st.sampled_from([0, 400]))
    def claim(self, op_id: str, owner: str, wait_s: int) -> None:
        entry = self.model[op_id]
        self.now += timedelta(seconds=wait_s)
        claimed = self.journal.claim(op_id, owner=owner, now=self.tick())
        lease_over = entry.get("lease_until") is None or entry["lease_until"] <= self.now
        held_by_another = entry["owner"] not in (None, owner) and not lease_over
        if entry["outcome"] is not None or held_by_another:
            assert claimed is None
            return
        assert claimed is not None
        if entry["owner"] != owner:
            entry["version"] += 1
        entry["owner"], entry["lease_until"] = owner, claimed.lease_until
        assert claimed.version == entry["version"]

    @invariant()
    def the_journal_matches_the_model(self) -> None:
        for op_id, entry in self.model.items():
            op = self.journal.get(op_id)
            steps = self.journal.steps(op_id)
            assert [(s.name, s.nova_requests) for s in steps] == entry["steps"]
            assert [s.seq for s in steps] == list(range(1, len(steps) + 1))
            assert op.nova_requests == sum(s.nova_requests for s in steps)
            assert op.outcome == entry["outcome"]
            assert (op.status == "done") == (op.finished_at is not None) == op.finished
            assert op.version == entry["version"]
        unfinished = {op.id for op in self.journal.unfinished()} - self.seen_before
        assert unfinished == {i for i, e in self.model.items() if e["outcome"] is None}


class MigrationBehaviour:
    """The schema comes from the migrations and matches the code, whatever the database."""

    def test_migrating_an_empty_database_gives_exactly_the_declared_schema(
        self, fresh_url: str
    ) -> None:
        Journal.open(fresh_url).close()

        assert table_names(fresh_url) == JOURNAL_TABLES | {"alembic_version"}
        engine = sa.create_engine(fresh_url)
        try:
            with engine.connect() as conn:
                assert compare_metadata(MigrationContext.configure(conn), metadata) == []
                assert migrate.current_revisions(conn) == (migrate.head(),)
                indexes = {
                    index["name"]
                    for table in JOURNAL_TABLES
                    for index in sa.inspect(conn).get_indexes(table)
                }
        finally:
            engine.dispose()
        for column in ("server_id", "policy", "status", "created_at", "finished_at"):
            assert f"ix_operations_{column}" in indexes

    def test_downgrading_to_nothing_and_upgrading_again_works(self, fresh_url: str) -> None:
        Journal.open(fresh_url).close()
        database = Database(fresh_url, busy_timeout=5)
        try:
            migrate.downgrade(database, to="base")
            assert table_names(fresh_url) & JOURNAL_TABLES == set()
            migrate.upgrade(database)
        finally:
            database.dispose()

        with Journal.open(fresh_url) as journal:
            assert isinstance(journal.accept(message_key="after"), Accepted)

    def test_opening_again_is_idempotent_and_keeps_the_data(self, fresh_url: str) -> None:
        with Journal.open(fresh_url) as journal:
            op = accepted_op(journal)

        with Journal.open(fresh_url) as again, Journal.open(fresh_url) as third:
            assert again.get(op.id) == op
            assert third.is_processed(f"msg-{op.id}")

    def test_daemons_opening_a_new_database_together_migrate_it_once(self, fresh_url: str) -> None:
        results = all_at_once(4, lambda _: Journal.open(fresh_url))

        journals = [r for r in results if isinstance(r, Journal)]
        try:
            assert len(journals) == 4, results
            assert isinstance(journals[0].accept(message_key="k"), Accepted)
            assert journals[3].is_processed("k")
        finally:
            for journal in journals:
                journal.close()

    def test_a_schema_newer_than_this_code_is_refused_with_a_clear_error(
        self, fresh_url: str
    ) -> None:
        Journal.open(fresh_url).close()
        execute(fresh_url, "UPDATE alembic_version SET version_num = '9999'")

        with pytest.raises(SchemaMismatch, match=r"9999.*does not know") as caught:
            Journal.open(fresh_url)

        assert isinstance(caught.value, PermanentError)
        assert migrate.head() in str(caught.value)

    def test_without_migrating_an_outdated_schema_is_refused_and_left_alone(
        self, fresh_url: str
    ) -> None:
        with pytest.raises(SchemaMismatch, match="migrating is off"):
            Journal.open(fresh_url, migrate_schema=False)

        assert table_names(fresh_url) & JOURNAL_TABLES == set()
        Journal.open(fresh_url).close()
        Journal.open(fresh_url, migrate_schema=False).close()

    def test_without_migrating_a_revision_other_than_head_is_refused_as_alembic_finds_it(
        self, fresh_url: str
    ) -> None:
        # Opening without migrating reads the revision without alembic; every revision
        # but this release's alone goes to alembic, for the same errors as before.
        Journal.open(fresh_url).close()
        previous = f"{int(migrate.HEAD) - 1:04d}"

        execute(fresh_url, f"UPDATE alembic_version SET version_num = '{previous}'")
        with pytest.raises(SchemaMismatch, match="migrating is off") as behind:
            Journal.open(fresh_url, migrate_schema=False)
        assert f"is at {previous}, this nova-autopilot needs {migrate.HEAD}" in str(behind.value)

        execute(fresh_url, "UPDATE alembic_version SET version_num = '9999'")
        with pytest.raises(SchemaMismatch, match=r"9999.*does not know"):
            Journal.open(fresh_url, migrate_schema=False)

        execute(fresh_url, f"UPDATE alembic_version SET version_num = '{migrate.HEAD}'")
        execute(fresh_url, "INSERT INTO alembic_version (version_num) VALUES ('9999')")
        with pytest.raises(SchemaMismatch, match=r"9999.*does not know"):
            Journal.open(fresh_url, migrate_schema=False)

        execute(fresh_url, "DELETE FROM alembic_version WHERE version_num = '9999'")
        with Journal.open(fresh_url, migrate_schema=False) as journal:
            assert isinstance(journal.accept(message_key="at-head"), Accepted)
