"""``writeMode: append``: one history row per change, idempotent under redelivery, on every sink.

The oracle is the events themselves, read field by field here (not through ``sinks.history``): each
event is one row whose operation, writetime, source position, keys and written values are the
event's; delivering the same events again, in other batches, adds nothing.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import random
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest

from pipeline_runtime.events import Bound, Cell, ChangeEvent, CollectionChange, Deletion, ElementCell, Op, Position
from pipeline_runtime.events import SourcePosition as Source
from pipeline_runtime.sinks.base import Batch, Checkpoint, Sink, TableNaming
from pipeline_runtime.sinks.clickhouse.history import ClickHouseHistorySink
from pipeline_runtime.sinks.postgres.history import PostgresHistorySink
from pipeline_runtime.sinks.timescale import TimescaleHistorySink
from tests.integration.sinks.conftest import Harness, _ch_client
from tests.integration.sinks.workload import Workload, contract_schema

pytestmark = [pytest.mark.postgres, pytest.mark.clickhouse]

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_numbers = itertools.count(1)


@pytest.fixture(params=["postgres", "clickhouse", "timescaledb"])
def history_harness(request: pytest.FixtureRequest) -> Harness:
    kind = request.param
    fixture = {"postgres": "postgres_dsn", "timescaledb": "timescaledb_dsn", "clickhouse": "chdb_dsn"}[kind]
    return Harness(kind, request.getfixturevalue(fixture), f"hist{next(_numbers)}")


@pytest.fixture
async def history(history_harness: Harness) -> AsyncIterator[tuple[Harness, Sink]]:
    harness = history_harness
    naming = TableNaming(target=harness.namespace)
    sink: Sink
    if harness.kind == "postgres":
        sink = PostgresHistorySink("hist", harness.dsn, naming)
    elif harness.kind == "timescaledb":
        sink = TimescaleHistorySink("hist", harness.dsn, naming, chunk_interval="1 day", pool_size=1)
    else:
        sink = ClickHouseHistorySink("hist", harness.dsn, naming)
    harness.made.append(sink)
    await sink.open()
    try:
        yield harness, sink
    finally:
        await sink.close()


async def history_rows(harness: Harness, table: str = "t") -> list[dict[str, Any]]:
    name = f"{table}_changes"
    if harness.kind == "clickhouse":
        result = _ch_client(harness.dsn).query(f"SELECT * FROM `{harness.namespace}`.`{name}` FINAL")
        return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]
    async with harness.connection() as conn:
        return [dict(r) for r in await conn.fetch(f'SELECT * FROM "{harness.namespace}"."{name}"')]


def moment(row: dict[str, Any], column: str) -> int:
    """A timestamp column as µs since the epoch, whatever the driver returned."""
    value = row[column]
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return (value - EPOCH) // dt.timedelta(microseconds=1)


def decoded(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


async def test_every_change_is_one_row_and_redelivery_adds_none(history: tuple[Harness, Sink]) -> None:
    harness, sink = history
    schema = contract_schema()
    await sink.ensure_table(schema)
    events = Workload(schema, seed=7).events(300)
    checkpoint = Checkpoint("p", "node-1", events[-1].source.position)
    for start in range(0, 300, 100):
        await sink.write(Batch(events[start : start + 100]))
    await sink.write(Batch([], checkpoint))
    rows = await history_rows(harness)
    # An upsert without cells or liveness (the generator makes a few; Cassandra never does) writes nothing.
    changes = [e for e in events if e.cells or e.liveness or e.deletion]
    assert 250 < len(changes) < 300
    assert len(rows) == len(changes)
    # The same changes again, regrouped and shuffled (a replay after a crash): nothing new.
    again = list(events)
    random.Random(3).shuffle(again)
    for start in range(0, 300, 70):
        await sink.write(Batch(again[start : start + 70]))
    assert len(await history_rows(harness)) == len(changes)
    assert await sink.committed_positions("p") == {"node-1": checkpoint.position}

    by_source = {(r["_segment"], r["_offset"]): r for r in rows}
    for event in changes:
        row = by_source[(event.source.position.segment_id, event.source.position.offset)]
        assert row["_node"] == "node-1"
        assert row["_op"] == str(event.op)
        assert moment(row, "_writetime") == event.max_timestamp
        assert row["pk"] == event.partition_key["pk"]
        if event.op is Op.UPSERT and not event.static:
            assert (row["ck"], row["ck2"]) == (event.clustering_key["ck"], event.clustering_key["ck2"])
        for name in ("a", "b", "d"):
            cell = event.cells.get(name)
            if isinstance(cell, Cell):
                want = None if cell.deleted else cell.value
                got = Decimal(str(row[name])) if name == "d" and row[name] is not None else row[name]
                assert got == want, (name, event)
                assert (name in row["_deleted"]) is cell.deleted


async def test_each_kind_of_change_reads_as_it_happened(history: tuple[Harness, Sink]) -> None:
    harness, sink = history
    schema = contract_schema()
    await sink.ensure_table(schema)
    ts = 1_700_000_000_000_000
    pk = {"pk": "p1"}
    row_key = {"ck": 2, "ck2": "b"}

    def source(offset: int) -> Source:
        return Source("n1", Position(9, offset))

    tags = CollectionChange(None, (ElementCell("red", None, ts), ElementCell("blue", None, ts, deleted=True)))
    attrs = CollectionChange(Deletion(ts - 1, 1), (ElementCell("k1", 5, ts),))
    events = [
        ChangeEvent(Op.UPSERT, "ks", "t", pk, source(10), row_key, {"a": Cell(41, ts, 3600, 1_900_000_000)}),
        ChangeEvent(Op.UPSERT, "ks", "t", pk, source(20), row_key, {"tags": tags, "attrs": attrs}),
        ChangeEvent(Op.UPSERT, "ks", "t", pk, source(30), row_key, {"b": Cell(None, ts + 5, None, 1, deleted=True)}),
        ChangeEvent(
            Op.DELETE_RANGE,
            "ks",
            "t",
            pk,
            source(40),
            deletion=Deletion(ts + 9, 1),
            range_start=Bound((1,), True),
            range_end=Bound((3, "z"), False),
        ),
        ChangeEvent(Op.DELETE_PARTITION, "ks", "t", pk, source(50), deletion=Deletion(ts + 10, 1)),
    ]
    await sink.write(Batch(events))
    rows = {r["_offset"]: r for r in await history_rows(harness)}
    assert sorted(rows) == [10, 20, 30, 40, 50]

    upsert = rows[10]
    assert (upsert["a"], upsert["_ttl"], upsert["_op"]) == (41, 3600, "upsert")
    assert moment(upsert, "_expires_at") == 1_900_000_000 * 1_000_000
    assert upsert["b"] is None and list(upsert["_deleted"]) == []

    collections = rows[20]
    assert decoded(collections["tags"]) == {"cleared": False, "added": ["red"], "removed": ["blue"]}
    assert decoded(collections["attrs"]) == {"cleared": True, "put": {"k1": 5}, "removed": []}

    assert list(rows[30]["_deleted"]) == ["b"] and rows[30]["b"] is None

    ranged = rows[40]
    assert ranged["_op"] == "delete_range" and ranged["ck"] is None
    assert decoded(ranged["_range_start"]) == {"values": [1], "inclusive": True}
    assert decoded(ranged["_range_end"]) == {"values": [3, "z"], "inclusive": False}
    assert moment(ranged, "_writetime") == ts + 9

    partition = rows[50]
    assert (partition["_op"], partition["pk"], partition["ck"]) == ("delete_partition", "p1", None)


async def test_a_new_column_is_added_and_a_retyped_one_is_drift(history: tuple[Harness, Sink]) -> None:
    from dataclasses import replace  # noqa: PLC0415

    from pipeline_runtime.errors import SchemaDriftError  # noqa: PLC0415
    from tests.integration.sinks.workload import column  # noqa: PLC0415

    harness, sink = history
    schema = contract_schema()
    await sink.ensure_table(schema)
    wider = replace(schema, columns=(*schema.columns, column("extra", "bigint")))
    await sink.ensure_table(wider)
    source = Source("n1", Position(1, 1))
    await sink.write(Batch([ChangeEvent(Op.UPSERT, "ks", "t", {"pk": "x"}, source, {"ck": 1, "ck2": "a"},
                                        {"extra": Cell(2**40, 5)})]))  # fmt: skip
    assert [r["extra"] for r in await history_rows(harness)] == [2**40]
    retyped = replace(schema, columns=(*schema.columns, column("extra", "text")))
    with pytest.raises(SchemaDriftError, match="extra"):
        await sink.ensure_table(retyped)


async def test_a_chunk_interval_that_is_not_an_interval_names_the_setting(timescaledb_dsn: str) -> None:
    from pipeline_runtime.errors import ConfigError  # noqa: PLC0415

    sink = TimescaleHistorySink("hist", timescaledb_dsn, TableNaming(target="badchunk"), chunk_interval="soon")
    await sink.open()
    try:
        with pytest.raises(ConfigError, match=r"timescale\.chunkInterval 'soon' is not an interval"):
            await sink.ensure_table(contract_schema())
    finally:
        await sink.close()
