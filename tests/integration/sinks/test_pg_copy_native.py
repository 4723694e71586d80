"""The compiled COPY encoder stores exactly what asyncpg stores from the Python path's records.

Both are COPYed into twin staging tables of the real PostgreSQL and compared
column by column as PostgreSQL prints them: every CQL type, random decimals,
varints, timestamps (naive, aware, before 1970 and 2000) and dates, nulls,
tombstones and TTLs. One difference is deliberate: asyncpg writes
``date.min``/``date.max`` (and the datetime extremes) as -infinity/infinity,
the native encoder writes the dates themselves, as Cassandra holds them. Bad
values are row-level errors, and the batches the Python fast path declines the
native one declines too.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from devservices.pytest_require import unavailable
from pipeline_runtime.cql.schema import ColumnKind, TableSchema
from pipeline_runtime.cql.values import EMPTY
from pipeline_runtime.errors import RowRejectedError, SinkError, SinkUnavailableError
from pipeline_runtime.events import (
    Cell,
    ChangeEvent,
    CollectionChange,
    Deletion,
    ElementCell,
    Liveness,
    Op,
    Position,
    SourcePosition,
)
from pipeline_runtime.native import native_module
from pipeline_runtime.sinks.base import Batch, Checkpoint
from pipeline_runtime.sinks.changes import Layout
from pipeline_runtime.sinks.deadletter import JsonlDeadLetters
from pipeline_runtime.sinks.postgres import PostgresSink
from pipeline_runtime.sinks.postgres.ddl import ensure_tables
from pipeline_runtime.sinks.postgres.records import RecordBuilder
from pipeline_runtime.sinks.postgres.sink import PARALLEL_MIN_ROWS, _chunks
from pipeline_runtime.sinks.postgres.sql import TableSql
from pipeline_runtime.sinks.postgres.typemap import pg_encoder, register_codecs
from pipeline_runtime.sinks.retry import Backoff
from pipeline_runtime.sinks.writer import BatchWriter
from tests.integration.sinks.test_sink_types import SAMPLES
from tests.integration.sinks.workload import column


@pytest.fixture(autouse=True)
def _compiled_core() -> None:
    if native_module() is None:
        unavailable("headrace_native is not built: `make dev` (pip install ./native) builds it")


SRC = SourcePosition("n", Position(1, 1))
UTC_PLUS_2 = dt.timezone(dt.timedelta(hours=2))


def schema() -> TableSchema:
    columns = [
        column("id", "bigint", ColumnKind.PARTITION_KEY, 0),
        column("k", "decimal", ColumnKind.CLUSTERING, 0),
        column("dec", "decimal"),
        column("big", "varint"),
        column("at", "timestamp"),
        column("day", "date"),
        column("real", "float"),
        column("tags", "set<text>"),
    ]
    columns += [column(f"c{i}", cql) for i, (cql, _) in enumerate(SAMPLES)]
    return TableSchema("ks", "native", uuid.uuid4(), tuple(columns))


def random_decimal(rng: random.Random) -> Decimal:
    digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 40)))
    sign = rng.choice(["", "-"])
    return Decimal(f"{sign}{digits}E{rng.randint(-45, 45)}")


def random_events(count: int, seed: int) -> list[ChangeEvent]:
    rng = random.Random(seed)
    out = []
    for i in range(count):
        cells: dict[str, Any] = {
            "dec": Cell(random_decimal(rng), 10 + i, ttl=60, local_deletion_time=5_000 + i),
            "big": Cell(rng.choice([0, -1, 2**63, -(2**70) - 3, rng.randint(-(10**30), 10**30)]), 10),
            "at": Cell(
                rng.choice(
                    [
                        dt.datetime(1969, 12, 31, 23, 59, 59, 999_999),
                        dt.datetime(1999, 1, 1, 0, 0, 0, 1),
                        dt.datetime(2024, 2, 29, 12, 30, tzinfo=UTC_PLUS_2),
                        dt.datetime(1, 1, 1, 0, 0, 1),
                        dt.datetime(9999, 12, 31, 23, 59, 59),
                    ]
                ),
                10,
            ),
            "day": Cell(rng.choice([dt.date(1, 1, 2), dt.date(1999, 12, 31), dt.date(2000, 1, 1)]), 10),
            "real": Cell(rng.choice([-0.0, 1e-40, 3.5, float("inf")]), 10),
        }
        if i % 3 == 0:
            cells["dec"] = Cell(None, 11, deleted=True, local_deletion_time=99)
        if i % 4 == 0:
            cells.update({f"c{j}": Cell(value, 12) for j, (_, value) in enumerate(SAMPLES)})
        if i % 5 == 1:  # a set's elements (one dead, one expiring), sometimes an overwrite or set to null
            elements = (
                ElementCell(f"t{i}", None, 20 + i),
                ElementCell("shared", None, 21, ttl=30, local_deletion_time=7_000),
                ElementCell("removed", None, 22, deleted=True, local_deletion_time=70),
            )
            deletion = Deletion(19, 50) if i % 10 == 1 else None
            cells["tags"] = CollectionChange(deletion, elements if i % 15 != 1 else ())
        out.append(
            ChangeEvent(
                Op.UPSERT,
                "ks",
                "native",
                {"id": i},
                SRC,
                {"k": random_decimal(rng)},
                cells,
                Liveness(7, 60, 1_000) if i % 2 else None,
            )
        )
    return out


async def _stage(conn: asyncpg.Connection, sql: TableSql, name: str) -> None:
    await conn.execute(f"CREATE TEMP TABLE {name} (LIKE {sql.rows})")


async def _contents(conn: asyncpg.Connection, name: str) -> list[tuple[str, ...]]:
    rows = await conn.fetch(f"SELECT {name}::text AS row FROM {name} ORDER BY id")
    return [r["row"] for r in rows]


async def test_native_copy_stores_what_asyncpg_stores(postgres_dsn: str) -> None:
    table = schema()
    sql = TableSql(Layout(table), "ks", "native")
    builder = RecordBuilder(sql.layout, pg_encoder)
    columns = [*sql.layout.key_names, *(n for n, _ in sql.row_columns)]
    events = random_events(300, seed=7)
    records = builder.fast(events)
    data = builder.copy_data(events)
    assert records is not None and data is not None
    assert data[1] == len(records) == 300
    conn = await asyncpg.connect(postgres_dsn)
    await register_codecs(conn)
    try:
        await ensure_tables(conn, sql)
        await _stage(conn, sql, "from_python")
        await _stage(conn, sql, "from_native")
        await conn.copy_records_to_table("from_python", records=records, columns=columns)
        await conn.copy_to_table("from_native", source=_chunks(data[0]), columns=columns, format="binary")
        python, native = await _contents(conn, "from_python"), await _contents(conn, "from_native")
    finally:
        await conn.close()
    assert len(native) == 300
    mismatched = [
        [(a, b) for a, b in zip(p.split(","), n.split(","), strict=False) if a != b]
        for p, n in zip(python, native, strict=True)
        if p != n
    ]
    assert not mismatched, mismatched[:3]


async def test_extreme_dates_are_stored_as_dates(postgres_dsn: str) -> None:
    table = schema()
    sql = TableSql(Layout(table), "ks", "native")
    builder = RecordBuilder(sql.layout, pg_encoder)
    (event,) = random_events(1, seed=2)
    event.cells["day"] = Cell(dt.date.min, 10)
    event.cells["at"] = Cell(dt.datetime.max, 10)
    data = builder.copy_data([event])
    assert data is not None
    conn = await asyncpg.connect(postgres_dsn)
    await register_codecs(conn)
    try:
        await ensure_tables(conn, sql)
        await _stage(conn, sql, "extremes")
        columns = [*sql.layout.key_names, *(n for n, _ in sql.row_columns)]
        await conn.copy_to_table("extremes", source=_chunks(data[0]), columns=columns, format="binary")
        row = await conn.fetchrow("SELECT day::text, at::text FROM extremes")
    finally:
        await conn.close()
    assert row is not None
    assert tuple(row) == ("0001-01-01", "9999-12-31 23:59:59.999999+00")


@pytest.mark.parametrize(
    ("column_name", "value"),
    [("c4", 2**15), ("c3", 2**31), ("real", 1e300), ("c9", "not a double"), ("c11", "not bytes")],
)
async def test_values_no_decoder_produces_are_bugs_not_bad_rows(
    column_name: str, value: Any, postgres_dsn: str, tmp_path: Path
) -> None:
    """A smallint of 2**15 or a text where a double belongs cannot come from Cassandra: the encoder's
    ValueError/TypeError/OverflowError is a bug. It fails the batch, dead-letters nothing and commits nothing."""
    builder = RecordBuilder(Layout(schema()), pg_encoder)
    (event,) = random_events(1, seed=1)
    event.cells[column_name] = Cell(value, 10)
    with pytest.raises((ValueError, TypeError, OverflowError)):
        builder.copy_data([event])

    sink = PostgresSink("pg", postgres_dsn)
    await sink.open()
    try:
        await sink.ensure_table(schema())
        letters = JsonlDeadLetters(tmp_path / "dead.jsonl")
        writer = BatchWriter(sink, letters, Backoff(initial=0.01, attempts=2))
        with pytest.raises(SinkError) as caught:
            await writer.write(Batch([event], Checkpoint("bug", "n", Position(1, 1))))
        assert not isinstance(caught.value, RowRejectedError) and not caught.value.retryable
        assert "internal error" in str(caught.value) and "position is kept" in str(caught.value)
        assert not (tmp_path / "dead.jsonl").exists()
        assert await sink.committed_positions("bug") == {}
    finally:
        await sink.close()


def test_native_declines_what_the_fast_path_declines() -> None:
    builder = RecordBuilder(Layout(schema()), pg_encoder)
    first, second = random_events(2, seed=3)
    repeat = ChangeEvent(Op.UPSERT, "ks", "native", first.partition_key, SRC, first.clustering_key, {}, None)
    collection = ChangeEvent(  # a cell where a collection change belongs: not what a decoder makes
        Op.UPSERT, "ks", "native", {"id": 5}, SRC, {"k": Decimal(1)}, {"tags": Cell({"a"}, 1)}, None
    )
    no_key = ChangeEvent(Op.UPSERT, "ks", "native", {"id": 6}, SRC, {}, {}, None)
    delete = ChangeEvent(Op.DELETE_ROW, "ks", "native", {"id": 7}, SRC, {"k": Decimal(1)})
    equal_numeric = ChangeEvent(Op.UPSERT, "ks", "native", {"id": 8}, SRC, {"k": Decimal("1.0")}, {}, None)
    for batch in ([first, repeat], [collection], [no_key], [delete], [delete, second]):
        assert builder.fast(batch) is None
        assert builder.copy_data(batch) is None
    assert builder.copy_data([collection.__class__(**{**vars_of(collection), "cells": {}})]) is not None
    assert (
        builder.copy_data(
            [equal_numeric, ChangeEvent(Op.UPSERT, "ks", "native", {"id": 8}, SRC, {"k": Decimal("1.00")}, {}, None)]
        )
        is None
    )


def vars_of(event: ChangeEvent) -> dict[str, Any]:
    return {name: getattr(event, name) for name in event.__dataclass_fields__}


def big_table() -> TableSchema:
    return TableSchema(
        "ks",
        "big",
        uuid.uuid4(),
        (
            column("id", "bigint", ColumnKind.PARTITION_KEY, 0),
            column("name", "text"),
            column("tags", "set<text>"),
        ),
    )


def upserts(ids: range, ts: int = 100) -> list[ChangeEvent]:
    return [
        ChangeEvent(Op.UPSERT, "ks", "big", {"id": i}, SRC, {}, {"name": Cell(f"n{i}", ts)}, Liveness(ts)) for i in ids
    ]


async def stored(sink: PostgresSink) -> dict[int, str]:
    async with sink.pool.acquire() as conn:
        rows = await conn.fetch('SELECT id, name FROM "ks"."big" ORDER BY id')
    return {r["id"]: r["name"] for r in rows}


async def test_large_batches_are_written_over_two_connections(postgres_dsn: str) -> None:
    """From PARALLEL_MIN_ROWS plain upserts on, a batch is written in two halves over two
    connections: stored deletions still cover rows of either half, and a batch the fast path
    declines (one with a deletion) is written whole through the general path."""
    count = PARALLEL_MIN_ROWS + 10
    half = count // 2
    deleted = {3, half + 3}  # one partition in each half, deleted after (ts 500) the upserts (ts 100)
    sink = PostgresSink("pg", postgres_dsn)
    await sink.open()
    try:
        await sink.ensure_table(big_table())
        deletions = [
            ChangeEvent(Op.DELETE_PARTITION, "ks", "big", {"id": i}, SRC, deletion=Deletion(500, 1)) for i in deleted
        ]
        await sink.write(Batch(deletions, Checkpoint("big", "n", Position(1, 1))))
        assert sink.pool.get_size() == 1
        await sink.write(Batch(upserts(range(count)), Checkpoint("big", "n", Position(2, 1))))
        assert sink.pool.get_size() == 2  # the first half went over a second connection
        names = await stored(sink)
        assert set(names) == set(range(count)) - deleted
        assert all(names[i] == f"n{i}" for i in names)

        general = upserts(range(count, 2 * count))
        general[-1] = ChangeEvent(
            Op.DELETE_PARTITION, "ks", "big", {"id": 2 * count - 1}, SRC, deletion=Deletion(99, 1)
        )
        assert sink._tables["ks.big"].records.copy_parts(general, 2) is None  # the general path's batch
        await sink.write(Batch(general, Checkpoint("big", "n", Position(3, 1))))
        assert set(await stored(sink)) == set(range(2 * count - 1)) - deleted
        assert await sink.committed_positions("big") == {"n": Position(3, 1)}
    finally:
        await sink.close()


async def test_a_failed_first_half_commits_nothing(postgres_dsn: str) -> None:
    """The second connection's half fails on the server (a zero-length key, which the encoders store as
    NULL and PostgreSQL refuses in a key): the main transaction sees it and rolls back, so neither half
    nor the checkpoint is stored."""
    sink = PostgresSink("pg", postgres_dsn)
    await sink.open()
    try:
        await sink.ensure_table(big_table())
        events = upserts(range(PARALLEL_MIN_ROWS))
        events[0] = ChangeEvent(
            Op.UPSERT, "ks", "big", {"id": EMPTY}, SRC, {}, {"name": Cell("n0", 100)}, Liveness(100)
        )
        with pytest.raises(RowRejectedError):
            await sink.write(Batch(events, Checkpoint("big", "n", Position(1, 1))))
        assert sink.pool.get_size() == 2
        assert await stored(sink) == {}
        assert await sink.committed_positions("big") == {}
    finally:
        await sink.close()


async def test_a_crash_after_the_first_half_commits_is_replayed_whole(postgres_dsn: str) -> None:
    """The main connection dies before the checkpoint, after the other half committed: the
    checkpoint stays where it was, and replaying the batch leaves every row once."""
    sink = PostgresSink("pg", postgres_dsn)
    await sink.open()
    await sink.ensure_table(big_table())
    events = upserts(range(PARALLEL_MIN_ROWS + 1))

    async def die(conn: Any) -> None:
        await conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")

    sink.before_checkpoint = die
    with pytest.raises(SinkUnavailableError):
        await sink.write(Batch(events, Checkpoint("big", "n", Position(1, 1))))
    await sink.close()

    restarted = PostgresSink("pg", postgres_dsn)
    await restarted.open()
    try:
        await restarted.ensure_table(big_table())
        half = len(events) // 2
        assert set(await stored(restarted)) == set(range(half))  # the first half's own commit
        assert await restarted.committed_positions("big") == {}
        await restarted.write(Batch(events, Checkpoint("big", "n", Position(1, 1))))
        names = await stored(restarted)
        assert names == {i: f"n{i}" for i in range(len(events))}
        assert await restarted.committed_positions("big") == {"n": Position(1, 1)}
    finally:
        await restarted.close()
