"""Values at the edges of what Cassandra accepts, through the real PostgreSQL and ClickHouse (chdb) sinks.

Each sink stores every value it can hold exactly; a row holding a value it
cannot hold is dead-lettered with a reason naming the table, column and CQL
type (``ValueEncodingError``), and the rest of the batch commits. Each case
runs through every write path the sink has: the compiled encoder, the Python
fast path and the general path (a batch with a deletion in it).
"""

from __future__ import annotations

import datetime as dt
import json
import random
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import clickhouse_connect
import pytest
from cassandra.util import Date, Duration

from pipeline_runtime.cql.schema import ColumnKind, TableSchema
from pipeline_runtime.cql.values import EMPTY, Timestamp, timestamp_from_millis
from pipeline_runtime.events import (
    Cell,
    ChangeEvent,
    CollectionChange,
    ColumnChange,
    Deletion,
    ElementCell,
    Liveness,
    Op,
    Position,
    SourcePosition,
)
from pipeline_runtime.native import native_module
from pipeline_runtime.sinks.base import Batch, Checkpoint, Sink, TableNaming
from pipeline_runtime.sinks.clickhouse import ClickHouseSink
from pipeline_runtime.sinks.clickhouse import sink as clickhouse_sink
from pipeline_runtime.sinks.deadletter import JsonlDeadLetters
from pipeline_runtime.sinks.postgres import PostgresSink
from pipeline_runtime.sinks.postgres import records as pg_records
from pipeline_runtime.sinks.postgres.typemap import (
    PG_DATE_END,
    PG_DATE_MIN,
    PG_EPOCH_DAYS,
    PG_EPOCH_MICROS,
    PG_TIMESTAMP_END,
    PG_TIMESTAMP_MIN,
)
from pipeline_runtime.sinks.retry import Backoff
from pipeline_runtime.sinks.writer import BatchWriter
from tests.integration.sinks.workload import column

SCHEMA = TableSchema(
    "ks",
    "edges",
    uuid.uuid4(),
    (
        column("id", "int", ColumnKind.PARTITION_KEY, 0),
        column("ts", "timestamp"),
        column("d", "date"),
        column("t", "text"),
        column("de", "decimal"),
        column("i", "int"),
        column("tup", "frozen<tuple<text, int>>"),
        column("du", "duration"),
    ),
)

#: The first and last millisecond and day PostgreSQL's timestamptz and date hold, from 1970.
PG_FIRST_MS = (PG_TIMESTAMP_MIN + PG_EPOCH_MICROS) // 1000
PG_LAST_MS = (PG_TIMESTAMP_END + PG_EPOCH_MICROS) // 1000 - 1
PG_FIRST_DAY = PG_DATE_MIN + PG_EPOCH_DAYS
PG_LAST_DAY = PG_DATE_END - 1 + PG_EPOCH_DAYS


def event(key: int, /, **cells: Any) -> ChangeEvent:
    source = SourcePosition("node-a", Position(3, key))
    values = {name: Cell(v, 100 + key) for name, v in cells.items()}
    return ChangeEvent(Op.UPSERT, "ks", "edges", {"id": key}, source, {}, values, Liveness(100 + key))


def empty_key(offset: int) -> ChangeEvent:
    """A row whose key is a zero-length int (legal in a clustering column; the sinks treat keys alike)."""
    source = SourcePosition("node-a", Position(3, offset))
    return ChangeEvent(Op.UPSERT, "ks", "edges", {"id": EMPTY}, source, {}, {"t": Cell("k", 1)}, Liveness(1))


def deletion(i: int) -> ChangeEvent:
    source = SourcePosition("node-a", Position(3, i))
    return ChangeEvent(Op.DELETE_ROW, "ks", "edges", {"id": i}, source, {}, deletion=Deletion(1, 1))


async def write(sink: Sink, events: list[ChangeEvent], path: str, tmp_path: Path) -> dict[int, str]:
    """Write the batch (with a deletion of an absent row for the general path); dead letters by offset."""
    if path == "general":
        events = [*events, deletion(999)]
    dead = tmp_path / "dead.jsonl"
    writer = BatchWriter(sink, JsonlDeadLetters(dead), Backoff(initial=0.01, attempts=2))
    letters = await writer.write(Batch(events, Checkpoint("edges", "node-a", Position(3, 1000))))
    assert await sink.committed_positions("edges") == {"node-a": Position(3, 1000)}
    records = [json.loads(line) for line in dead.read_text().splitlines()] if letters else []
    return {
        letter.event.source.position.offset: record["reason"] for letter, record in zip(letters, records, strict=True)
    }


PATHS = ["native", "python", "general"]


@pytest.fixture(params=PATHS)
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "native" and native_module() is None:
        pytest.fail("the compiled core is not built (make dev)")
    if request.param != "native":
        monkeypatch.setattr(pg_records, "native_module", lambda: None)
        monkeypatch.setattr(clickhouse_sink, "_native", lambda sql: None)
    return str(request.param)


# -- PostgreSQL -------------------------------------------------------------------------------


@pytest.mark.postgres
async def test_postgres_stores_its_whole_range_and_dead_letters_the_rest(
    postgres_dsn: str, path: str, tmp_path: Path
) -> None:
    namespace = f"edges_{path}_{uuid.uuid4().hex[:6]}"
    sink = PostgresSink("pg", postgres_dsn, TableNaming(target=namespace))
    await sink.open()
    try:
        await sink.ensure_table(SCHEMA)
        rng = random.Random(11)
        stored_ms = [PG_FIRST_MS, PG_LAST_MS, -1, 0, 253_402_300_799_999, 253_402_300_800_000]
        stored_ms += [rng.randrange(PG_FIRST_MS, PG_LAST_MS) for _ in range(20)]
        stored_days = [PG_FIRST_DAY, PG_LAST_DAY, 0, 2_932_896, 2_932_897]
        stored_days += [rng.randrange(PG_FIRST_DAY, PG_LAST_DAY) for _ in range(20)]
        good = [event(n, ts=timestamp_from_millis(ms)) for n, ms in enumerate(stored_ms)]
        good += [event(100 + n, d=Date(days)) for n, days in enumerate(stored_days)]
        good += [
            event(200, de=Decimal("1E+3"), t="plain"),
            event(201, de=Decimal("1.50"), tup=("x", 1)),
            event(202, de=Decimal("-0.000"), i=EMPTY, ts=EMPTY, t=""),
            event(203, de=Decimal("1E-16383")),
            event(204, du=Duration(2**31 - 1, 2**31 - 1, 2**63 - 1)),
            event(205, du=Duration(-(2**31), -(2**31), -(2**63))),
        ]
        bad = {
            300: event(300, ts=Timestamp(PG_LAST_MS + 1)),
            301: event(301, ts=Timestamp(-(2**63))),
            302: event(302, d=Date(PG_LAST_DAY + 1)),
            303: event(303, d=Date(PG_FIRST_DAY - 1)),
            304: event(304, t="nul\x00inside"),
            305: event(305, tup=("nul\x00", 1)),
            306: event(306, de=Decimal("1E-16384")),
            307: event(307, de=Decimal("1E+131072")),
            308: empty_key(308),
        }
        letters = await write(sink, good + list(bad.values()), path, tmp_path)
    finally:
        await sink.close()

    expected_reasons = {
        300: "column ts (timestamp): the timestamp is outside PostgreSQL timestamptz's range",
        301: "column ts (timestamp): the timestamp is outside PostgreSQL timestamptz's range",
        302: "column d (date): the date is outside PostgreSQL date's range",
        303: "column d (date): the date is outside PostgreSQL date's range",
        304: "column t (text): PostgreSQL text cannot hold the character U+0000",
        305: "column tup (frozen<tuple<text, int>>): PostgreSQL jsonb cannot hold the character U+0000",
        306: "column de (decimal): PostgreSQL numeric keeps at most 16383 decimal places",
        307: "column de (decimal): PostgreSQL numeric holds at most 131072 digits before the decimal point",
    }
    assert sorted(letters) == [*sorted(expected_reasons), 308]
    assert "23502" in letters[308]  # NULL in the key: PostgreSQL refuses it, naming the column
    assert 'column "id"' in letters[308]
    for key, reason in expected_reasons.items():
        assert f"table ks.edges, {reason}" in letters[key], letters[key]
        assert "nul" not in letters[key]  # reasons never quote the value

    conn = await asyncpg.connect(postgres_dsn)
    try:
        rows = {
            r["id"]: r
            for r in await conn.fetch(
                "SELECT id, (extract(epoch FROM ts) * 1000)::numeric AS ms, d - date '1970-01-01' AS days, t,"
                f" de::text AS de, i, tup::text AS tup, du::text AS du FROM {namespace}.edges"
            )
        }
    finally:
        await conn.close()
    assert sorted(rows) == sorted(e.partition_key["id"] for e in good)
    assert [int(rows[n]["ms"]) for n in range(len(stored_ms))] == stored_ms
    assert [rows[100 + n]["days"] for n in range(len(stored_days))] == stored_days
    # numeric keeps a decimal's value and every non-negative scale; a negative scale (1E+3) becomes 0.
    assert [rows[n]["de"] for n in (200, 201, 202)] == ["1000", "1.50", "0.000"]
    assert rows[203]["de"] == "0." + "0" * 16382 + "1"
    assert rows[201]["tup"] == '["x", 1]'
    assert rows[204]["du"] == '{"days": 2147483647, "months": 2147483647, "nanoseconds": 9223372036854775807}'
    assert rows[205]["du"] == '{"days": -2147483648, "months": -2147483648, "nanoseconds": -9223372036854775808}'
    # A zero-length int or timestamp is stored as NULL; text's zero-length value is ''.
    assert (rows[202]["i"], rows[202]["ms"], rows[202]["t"]) == (None, None, "")


# -- ClickHouse -------------------------------------------------------------------------------


async def test_clickhouse_stores_years_1_to_9999_and_dead_letters_the_rest(
    chdb_dsn: str, path: str, tmp_path: Path
) -> None:
    namespace = f"edges_{path}_{uuid.uuid4().hex[:6]}"
    sink = ClickHouseSink("ch", chdb_dsn, TableNaming(target=namespace))
    await sink.open()
    try:
        await sink.ensure_table(SCHEMA)
        first_ms = -62_135_596_800_000  # 0001-01-01T00:00:00.000
        last_ms = 253_402_300_799_999  # 9999-12-31T23:59:59.999
        stored_ms = [first_ms, last_ms, -2_208_988_800_001, 10_413_792_000_000, -1, 0]
        good = [event(n, ts=timestamp_from_millis(ms)) for n, ms in enumerate(stored_ms)]
        stored_days = [-719_162, 2_932_896, -25_568, 120_000, 0]
        good += [event(100 + n, d=Date(days)) for n, days in enumerate(stored_days)]
        good += [
            event(200, de=Decimal("1E+3"), t="nul\x00inside"),
            event(201, de=Decimal("1.50"), tup=("nul\x00", 1)),
            event(202, i=EMPTY, ts=EMPTY, t=""),
            event(204, du=Duration(2**31 - 1, 2**31 - 1, 2**63 - 1)),
            event(205, du=Duration(-(2**31), -(2**31), -(2**63))),
        ]
        bad = {
            300: event(300, ts=Timestamp(last_ms + 1)),
            301: event(301, ts=Timestamp(-(2**63))),
            302: event(302, d=Date(2_932_897)),
            303: event(303, d=Date(-(2**31))),
            304: empty_key(304),
        }
        letters = await write(sink, good + list(bad.values()), path, tmp_path)
        # A later update of two of those rows makes the sink read their stored timestamps back and merge.
        again = [
            ChangeEvent(
                Op.UPSERT,
                "ks",
                "edges",
                {"id": n},
                SourcePosition("node-a", Position(4, n)),
                {},
                {"t": Cell("again", 500)},
            )
            for n in (0, 1)
        ]
        await sink.write(Batch(again))
    finally:
        await sink.close()

    assert sorted(letters) == sorted(bad)
    for key in (300, 301):
        assert "table ks.edges, column ts (timestamp): the timestamp is outside years 1-9999" in letters[key]
    for key in (302, 303):
        assert "table ks.edges, column d (date): the date is outside years 1-9999" in letters[key]
    assert "table ks.edges, column id (int): a zero-length value cannot be stored in a key column" in letters[304]

    client = clickhouse_connect.get_client(dsn=chdb_dsn)
    result = client.query(
        "SELECT id, toUnixTimestamp64Milli(ts) AS ms, toInt32(d) AS days, t, de, i, tup, du"
        f" FROM `{namespace}`.`edges` ORDER BY id",
        column_formats={"t": "bytes"},
    )
    rows = {r[0]: r for r in result.result_rows}
    assert sorted(rows) == sorted(e.partition_key["id"] for e in good)
    assert [rows[n][1] for n in range(len(stored_ms))] == stored_ms
    assert [rows[n][3] for n in (0, 1)] == [b"again", b"again"]
    assert [rows[100 + n][2] for n in range(len(stored_days))] == stored_days
    # ClickHouse keeps text with U+0000 and a decimal's exact text (scale and all).
    assert (rows[200][3], rows[200][4]) == (b"nul\x00inside", "1E+3")
    assert (rows[201][4], rows[201][6]) == ("1.50", '["nul\\u0000",1]')
    assert (rows[202][5], rows[202][1], rows[202][3]) == (None, None, b"")
    assert rows[204][7] == '{"months":2147483647,"days":2147483647,"nanoseconds":9223372036854775807}'
    assert rows[205][7] == '{"months":-2147483648,"days":-2147483648,"nanoseconds":-9223372036854775808}'


def test_decoded_timestamps_are_exact_where_the_driver_rounds() -> None:
    assert timestamp_from_millis(253_402_300_799_999) == dt.datetime(9999, 12, 31, 23, 59, 59, 999000)


@pytest.mark.postgres
async def test_postgres_refuses_a_collection_element_with_nul_by_name(postgres_dsn: str, tmp_path: Path) -> None:
    """Elements are stored as JSON text inside the column's state and turned into jsonb by the view: one
    with U+0000 would make the view unreadable, so its row is dead-lettered instead."""
    schema = TableSchema(
        "ks",
        "tagged",
        uuid.uuid4(),
        (
            column("id", "int", ColumnKind.PARTITION_KEY, 0),
            column("tags", "set<text>"),
            column("props", "map<int, text>"),
        ),
    )
    namespace = f"tagged_{uuid.uuid4().hex[:6]}"
    sink = PostgresSink("pg", postgres_dsn, TableNaming(target=namespace))
    await sink.open()
    try:
        await sink.ensure_table(schema)

        def tagged(key: int, tag: str, prop: str) -> ChangeEvent:
            source = SourcePosition("node-a", Position(4, key))
            cells: dict[str, ColumnChange] = {
                "tags": CollectionChange(None, (ElementCell(tag, None, 10),)),
                "props": CollectionChange(None, (ElementCell(1, prop, 10),)),
            }
            return ChangeEvent(Op.UPSERT, "ks", "tagged", {"id": key}, source, {}, cells, Liveness(10))

        dead = tmp_path / "dead.jsonl"
        writer = BatchWriter(sink, JsonlDeadLetters(dead), Backoff(initial=0.01, attempts=2))
        events = [tagged(1, "a", "x"), tagged(2, "b\x00", "y"), tagged(3, "c", "z\x00"), tagged(4, "d", "w")]
        letters = await writer.write(Batch(events, Checkpoint("tagged", "node-a", Position(4, 9))))
    finally:
        await sink.close()
    assert [letter.event.partition_key["id"] for letter in letters] == [2, 3]
    reasons = [json.loads(line)["reason"] for line in dead.read_text().splitlines()]
    assert reasons == [
        "table ks.tagged, column tags (set<text>): PostgreSQL jsonb cannot hold the character U+0000",
        "table ks.tagged, column props (map<int, text>): PostgreSQL jsonb cannot hold the character U+0000",
    ]
    conn = await asyncpg.connect(postgres_dsn)
    try:
        rows = await conn.fetch(
            f"SELECT id, tags::text AS tags, props::text AS props FROM {namespace}.tagged ORDER BY id"
        )
    finally:
        await conn.close()
    assert [tuple(r) for r in rows] == [(1, '["a"]', '[[1, "x"]]'), (4, '["d"]', '[[1, "w"]]')]
