"""How rows reach the journal's tables: ``insert_rows`` against SQLAlchemy's own insert
(on tables unlike the journal's), a message's operation ids against ``json.dumps``."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, create_engine, insert

from nova_autopilot.journal.changes import insert_rows
from nova_autopilot.journal.rows import operation_ids, operation_ids_text
from nova_autopilot.journal.schema import UTCDateTime

metadata = MetaData()
one_column = Table("one_column", metadata, Column("name", String(20)))
times = Table(
    "times",
    metadata,
    Column("n", Integer, primary_key=True),
    Column("at", DateTime(timezone=True)),
    Column("utc", UTCDateTime()),
)


def stored(rows: list[dict[str, object]], table: Table, *, ours: bool) -> list[tuple[object, ...]]:
    engine = create_engine("sqlite://")
    metadata.create_all(engine)
    with engine.begin() as conn:
        if ours:
            insert_rows(conn, table, rows)
        else:
            conn.execute(insert(table), rows)
        return [tuple(row) for row in conn.exec_driver_sql(f"SELECT * FROM {table.name}")]


def test_rows_of_one_column_are_stored_as_sqlalchemy_stores_them() -> None:
    rows: list[dict[str, object]] = [{"name": "a"}, {"name": None}, {"name": "c"}]

    assert stored(rows, one_column, ours=True) == stored(rows, one_column, ours=False)
    assert stored(rows, one_column, ours=True) == [("a",), (None,), ("c",)]


def test_equal_times_in_other_zones_or_folds_are_each_stored_as_themselves() -> None:
    utc = datetime(2026, 11, 1, 8, 30, tzinfo=timezone.utc)
    paris = ZoneInfo("Europe/Paris")
    # 02:30 happens twice in Paris that night (2026-10-25): fold tells them apart.
    first, second = (datetime(2026, 10, 25, 2, 30, tzinfo=paris, fold=f) for f in (0, 1))
    values = [
        utc,
        utc.astimezone(timezone(timedelta(hours=1))),
        datetime(utc.year, utc.month, utc.day, utc.hour, utc.minute, tzinfo=timezone.utc),
        first,
        second,
        None,
    ]
    rows: list[dict[str, object]] = [{"n": n, "at": at, "utc": at} for n, at in enumerate(values)]

    ours = stored(rows, times, ours=True)
    assert ours == stored(rows, times, ours=False)
    assert [utc for _, _, utc in ours[3:5]] == [
        "2026-10-25 00:30:00.000000",
        "2026-10-25 01:30:00.000000",
    ]


def test_a_messages_operation_ids_are_stored_as_json_dumps_writes_them() -> None:
    cases: list[tuple[str, ...]] = [
        (),
        ("0f3a9c",),
        ("0f3a9c", "77b1"),
        ('a"b',),
        ("a, b",),
        ("é1",),
        ("x\\y", "z"),
    ]
    for ids in cases:
        assert operation_ids_text(ids) == json.dumps(list(ids))
        assert operation_ids(operation_ids_text(ids)) == ids
