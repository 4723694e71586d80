"""Values at the edges of what Cassandra accepts, written with CQL and decoded from cdc_raw by both decoders.

Each test follows the real node's cdc_raw twice, with the compiled decoder and
with the pure-Python reference, asserts the two give the same events, and
checks them against what the table holds (read through ``SELECT`` as raw
numbers where the driver's own types cannot hold the value).
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import asyncpg
import clickhouse_connect
import pytest
from cassandra.util import Duration

from devservices.cassandra import CassandraNode
from pipeline_runtime.cql.values import DATETIME_MAX_MS, DATETIME_MIN_MS, EMPTY, Timestamp, timestamp_micros
from pipeline_runtime.events import Cell, ChangeEvent, CollectionChange, Op, Position
from pipeline_runtime.sinks.base import Batch, Checkpoint, Sink, TableNaming
from pipeline_runtime.sinks.clickhouse import ClickHouseSink
from pipeline_runtime.sinks.deadletter import JsonlDeadLetters
from pipeline_runtime.sinks.postgres import PostgresSink
from pipeline_runtime.sinks.retry import Backoff
from pipeline_runtime.sinks.writer import BatchWriter
from pipeline_runtime.source.commitlog import fast
from pipeline_runtime.source.commitlog.mutation import MutationDecoder
from pipeline_runtime.source.schema.driver import DriverSchemaSource
from pipeline_runtime.source.schema.registry import SchemaRegistry
from pipeline_runtime.source.tailer import CdcRawTailer

pytestmark = pytest.mark.cassandra

_counter = itertools.count()


@pytest.fixture
def keyspace(cassandra: CassandraNode) -> str:
    name = f"vals_{cassandra.compat_mode.lower()}_{next(_counter)}_{uuid.uuid4().hex[:6]}"
    cassandra.session().execute(
        f"CREATE KEYSPACE {name} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}"
    )
    return name


def _follow(node: CassandraNode, keyspace: str, done: Callable[[list[ChangeEvent]], bool]) -> list[ChangeEvent]:
    registry = SchemaRegistry(DriverSchemaSource(node.session()), selector=lambda schema: schema.keyspace == keyspace)
    tailer = CdcRawTailer(node.cdc_raw_dir, "node", registry)
    events: list[ChangeEvent] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        batch = tailer.poll()
        if batch is None:
            if done(events):
                return [e for e in events if e.keyspace == keyspace]
            time.sleep(0.05)
            continue
        events.extend(batch.events)
    raise AssertionError(f"only {len(events)} events for {keyspace} after 20 s")


def collect_both(
    node: CassandraNode, keyspace: str, done: Callable[[list[ChangeEvent]], bool], monkeypatch: pytest.MonkeyPatch
) -> list[ChangeEvent]:
    """The keyspace's events as the compiled decoder reads them, asserted equal to the reference's."""
    assert fast.native_available(), "the compiled decoder is not built (make dev)"

    def enough(events: list[ChangeEvent]) -> bool:
        return done([e for e in events if e.keyspace == keyspace])

    compiled = _follow(node, keyspace, enough)
    with monkeypatch.context() as patch:
        patch.setattr("pipeline_runtime.source.tailer.mutation_decoder", MutationDecoder)
        reference = _follow(node, keyspace, enough)
    assert len(compiled) == len(reference)
    for ours, theirs in zip(compiled, reference, strict=True):
        assert ours == theirs
        assert _signs(ours) == _signs(theirs)  # -0.0 == 0.0: compare the signs as well
    return reference


def _signs(event: ChangeEvent) -> list[object]:
    """Every float in the event's cells with its sign (``==`` cannot tell -0.0 from 0.0)."""
    out: list[object] = []

    def walk(value: object) -> None:
        if isinstance(value, float):
            out.append(math.copysign(1.0, value))
        elif isinstance(value, (list, tuple)) or type(value).__name__ == "SortedSet":
            for item in value:  # type: ignore[attr-defined]
                walk(item)
        elif hasattr(value, "items"):
            for key, item in value.items():
                walk(key)
                walk(item)

    for change in event.cells.values():
        if isinstance(change, Cell):
            walk(change.value)
        else:
            for element in change.elements:
                walk(element.path)
                walk(element.value)
    return out


def rows_of(events: list[ChangeEvent], table: str) -> dict[int, ChangeEvent]:
    return {e.partition_key["k"]: e for e in events if e.table == table and e.op is Op.UPSERT}


def value(event: ChangeEvent, column: str) -> object:
    cell = event.cells[column]
    assert isinstance(cell, Cell)
    return cell.value


# -- timestamps, dates and durations over their whole range ------------------------------------

TIMESTAMPS = [
    -(2**63),
    DATETIME_MIN_MS - 1,
    DATETIME_MIN_MS,
    -1,
    0,
    1_700_000_000_123,
    253_402_300_799_999,  # 9999-12-31T23:59:59.999: the driver makes it .998993
    DATETIME_MAX_MS + 1,
    2**63 - 1,
]
#: Raw uint32 date values (days + 2**31) as signed ints for intAsBlob, with the day they mean.
DATES = [(0, -(2**31)), (-(2**31), 0), (-1, 2**31 - 1), (2**31 - 1, -1)]
DURATIONS = [
    Duration(2**31 - 1, 2**31 - 1, 2**63 - 1),
    Duration(-(2**31), -(2**31), -(2**63)),
    Duration(0, 0, 0),
]


def test_timestamps_dates_and_durations_keep_their_whole_range(
    cassandra: CassandraNode, keyspace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = cassandra.session(keyspace)
    session.execute(
        "CREATE TABLE edges (k int PRIMARY KEY, ts timestamp, d date, du duration,"
        " lts frozen<list<timestamp>>, tup tuple<timestamp, date>) WITH cdc = true"
    )
    for k, ms in enumerate(TIMESTAMPS):
        session.execute(
            "INSERT INTO edges (k, ts, lts, tup) VALUES (%s, blobAsTimestamp(bigintAsBlob(%s)), "
            "[blobAsTimestamp(bigintAsBlob(%s))], (blobAsTimestamp(bigintAsBlob(%s)), blobAsDate(intAsBlob(0))))",
            (k, ms, ms, ms),
        )
    for k, (raw, _) in enumerate(DATES, start=100):
        session.execute("INSERT INTO edges (k, d) VALUES (%s, blobAsDate(intAsBlob(%s)))", (k, raw))
    insert_duration = session.prepare("INSERT INTO edges (k, du) VALUES (?, ?)")
    for k, duration in enumerate(DURATIONS, start=200):
        session.execute(insert_duration, (k, duration))
    total = len(TIMESTAMPS) + len(DATES) + len(DURATIONS)
    rows = rows_of(collect_both(cassandra, keyspace, lambda ev: len(ev) >= total, monkeypatch), "edges")

    stored = {
        r.k: r.ms
        for r in session.execute("SELECT k, blobAsBigint(timestampAsBlob(ts)) AS ms FROM edges")
        if r.ms is not None
    }
    assert stored == dict(enumerate(TIMESTAMPS))
    for k, ms in enumerate(TIMESTAMPS):
        decoded = value(rows[k], "ts")
        inside = DATETIME_MIN_MS <= ms <= DATETIME_MAX_MS
        assert type(decoded) is (dt.datetime if inside else Timestamp), (ms, decoded)
        assert timestamp_micros(decoded) == ms * 1000
        assert value(rows[k], "lts") == [decoded]
        assert value(rows[k], "tup") == (decoded, value(rows[k], "tup")[1])  # type: ignore[index]
    assert value(rows[6], "ts") == dt.datetime(9999, 12, 31, 23, 59, 59, 999000)  # exact, unlike the driver
    for k, (_, days) in enumerate(DATES, start=100):
        assert value(rows[k], "d").days_from_epoch == days  # type: ignore[attr-defined]
    for k, duration in enumerate(DURATIONS, start=200):
        decoded_duration = value(rows[k], "du")
        assert (decoded_duration.months, decoded_duration.days, decoded_duration.nanoseconds) == (  # type: ignore[attr-defined]
            duration.months,
            duration.days,
            duration.nanoseconds,
        )
    # What SELECT returns through the driver agrees wherever the driver can hold the value.
    for r in session.execute("SELECT k, du FROM edges WHERE k IN (200, 201, 202)"):
        assert r.du == value(rows[r.k], "du")


# -- a column dropped and added again -----------------------------------------------------------


def test_cells_written_before_a_drop_stay_dropped_after_the_column_is_added_again(
    cassandra: CassandraNode, keyspace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = cassandra.session(keyspace)
    session.execute("CREATE TABLE readd (k int PRIMARY KEY, v int, s set<int>, keep int) WITH cdc = true")
    session.execute("INSERT INTO readd (k, v, s, keep) VALUES (1, 10, {1, 2}, 100)")
    session.execute("UPDATE readd SET s = s + {3}, v = 11 WHERE k = 2")
    session.execute("ALTER TABLE readd DROP v")
    session.execute("ALTER TABLE readd DROP s")
    time.sleep(0.01)  # drop times are stored in milliseconds: keep later writes in a later one
    session.execute("ALTER TABLE readd ADD v int")
    session.execute("ALTER TABLE readd ADD s set<int>")
    session.execute("INSERT INTO readd (k, v, s) VALUES (3, 30, {30})")
    session.execute("UPDATE readd SET v = 12, s = s + {4} WHERE k = 2")

    def done(events: list[ChangeEvent]) -> bool:
        return len([e for e in events if e.table == "readd"]) >= 4

    events = [e for e in collect_both(cassandra, keyspace, done, monkeypatch) if e.table == "readd"]
    by_key: dict[int, list[ChangeEvent]] = {}
    for event in events:
        by_key.setdefault(event.partition_key["k"], []).append(event)
    # What Cassandra reads back: the old cells are gone, the new ones are there.
    assert {r.k: (r.v, r.s, r.keep) for r in session.execute("SELECT k, v, s, keep FROM readd")} == {
        1: (None, None, 100),
        2: (12, {4}, None),
        3: (30, {30}, None),
    }
    first = by_key[1][0]
    assert set(first.cells) == {"keep"}  # v, s and s's complex deletion were written before the drop
    assert first.liveness is not None
    old_update, new_update = by_key[2]
    assert old_update.cells == {}
    assert value(new_update, "v") == 12
    change = new_update.cells["s"]
    assert isinstance(change, CollectionChange)
    assert [e.path for e in change.elements] == [4]
    (third,) = by_key[3]
    assert value(third, "v") == 30
    third_set = third.cells["s"]
    assert isinstance(third_set, CollectionChange)
    assert third_set.deletion is not None and [e.path for e in third_set.elements] == [30]


# -- sets and map keys with -0.0 and 0.0 ---------------------------------------------------------


def test_negative_and_positive_zero_are_two_elements(
    cassandra: CassandraNode, keyspace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = cassandra.session(keyspace)
    session.execute(
        "CREATE TABLE zeros (k int PRIMARY KEY, fs frozen<set<double>>, fm frozen<map<double, int>>,"
        " nested frozen<list<frozen<set<float>>>>, s set<double>, m map<double, int>) WITH cdc = true"
    )
    session.execute(
        "INSERT INTO zeros (k, fs, fm, nested, s, m) VALUES (1, {-0.0, 0.0, 1.5}, {-0.0: 1, 0.0: 2},"
        " [{-0.0, 0.0}], {-0.0, 0.0}, {-0.0: 3, 0.0: 4})"
    )
    (row,) = rows_of(collect_both(cassandra, keyspace, lambda ev: len(ev) >= 1, monkeypatch), "zeros").values()

    def signed(values: object) -> list[str]:
        return [repr(v) for v in values]  # type: ignore[attr-defined]

    assert signed(value(row, "fs")) == ["-0.0", "0.0", "1.5"]
    assert [(repr(k), v) for k, v in value(row, "fm").items()] == [("-0.0", 1), ("0.0", 2)]  # type: ignore[attr-defined]
    (inner,) = value(row, "nested")  # type: ignore[misc]
    assert signed(inner) == ["-0.0", "0.0"]
    elements = row.cells["s"]
    assert isinstance(elements, CollectionChange)
    assert [repr(e.path) for e in elements.elements] == ["-0.0", "0.0"]
    entries = row.cells["m"]
    assert isinstance(entries, CollectionChange)
    assert [(repr(e.path), e.value) for e in entries.elements] == [("-0.0", 3), ("0.0", 4)]
    # Cassandra holds two elements each time (read as JSON text: the driver's SortedSet would merge them).
    (stored,) = session.execute("SELECT toJson(fs) AS fs, toJson(s) AS s FROM zeros WHERE k = 1")
    assert (stored.fs, stored.s) == ("[-0.0, 0.0, 1.5]", "[-0.0, 0.0]")


# -- zero-length values of fixed-width types ---------------------------------------------------


def test_zero_length_values_are_empty_not_null(
    cassandra: CassandraNode, keyspace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = cassandra.session(keyspace)
    session.execute(
        "CREATE TABLE empties (k int, c int, i int, ts timestamp, u uuid, vi varint, t text, b blob,"
        " tup frozen<tuple<int, int>>, l list<int>, n int, PRIMARY KEY (k, c)) WITH cdc = true"
    )
    session.execute(
        "INSERT INTO empties (k, c, i, ts, u, vi, t, b, tup, l, n) VALUES (1, blobAsInt(0x), blobAsInt(0x),"
        " blobAsTimestamp(0x), blobAsUuid(0x), blobAsVarint(0x), '', 0x, (blobAsInt(0x), null), [blobAsInt(0x)],"
        " null)"
    )
    (row,) = rows_of(collect_both(cassandra, keyspace, lambda ev: len(ev) >= 1, monkeypatch), "empties").values()
    assert row.clustering_key == {"c": EMPTY}
    for name in ("i", "ts", "u", "vi"):
        assert value(row, name) is EMPTY, name
    assert value(row, "t") == ""
    assert value(row, "b") == b""
    assert value(row, "tup") == (EMPTY, None)
    elements = row.cells["l"]
    assert isinstance(elements, CollectionChange)
    assert [e.value for e in elements.elements] == [EMPTY]
    null = row.cells["n"]
    assert isinstance(null, Cell) and null.deleted and null.value is None
    # The driver reads the same row with None for every empty value: the decoder keeps the difference.
    (stored,) = session.execute("SELECT i, t, n FROM empties WHERE k = 1")
    assert (stored.i, stored.t, stored.n) == (None, "", None)


# -- from CQL to both sinks ------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.clickhouse
async def test_edge_values_written_with_cql_reach_the_sinks_or_are_dead_lettered_by_name(
    cassandra: CassandraNode,
    keyspace: str,
    monkeypatch: pytest.MonkeyPatch,
    postgres_dsn: str,
    chdb_dsn: str,
    tmp_path: Path,
) -> None:
    session = cassandra.session(keyspace)
    session.execute(
        "CREATE TABLE sinkable (k int PRIMARY KEY, ts timestamp, t text, de decimal, i int) WITH cdc = true"
    )
    year_20000 = 568_971_820_800_000  # 20000-01-01T00:00:00Z
    rows_in = {
        1: ("ts", 253_402_300_799_999),  # 9999-12-31T23:59:59.999: both sinks, exactly
        2: ("ts", year_20000),  # PostgreSQL only
        3: ("ts", 2**62),  # beyond both
        4: ("t", "nul\x00inside"),  # ClickHouse only
        5: ("de", Decimal("1E+3")),  # both: PostgreSQL as 1000, ClickHouse as 1E+3
        6: ("i", None),  # blobAsInt(0x): NULL in both
    }
    for k, (name, raw) in rows_in.items():
        if name == "ts":
            session.execute("INSERT INTO sinkable (k, ts) VALUES (%s, blobAsTimestamp(bigintAsBlob(%s)))", (k, raw))
        elif name == "i":
            session.execute("INSERT INTO sinkable (k, i) VALUES (%s, blobAsInt(0x))", (k,))
        elif name == "de":  # a CQL literal: the driver would bind a Decimal as the float 1000.0
            session.execute(f"INSERT INTO sinkable (k, de) VALUES (%s, {raw})", (k,))
        else:
            session.execute(f"INSERT INTO sinkable (k, {name}) VALUES (%s, %s)", (k, raw))
    events = collect_both(cassandra, keyspace, lambda ev: len(ev) >= len(rows_in), monkeypatch)
    decoded = rows_of(events, "sinkable")
    assert value(decoded[6], "i") is EMPTY
    assert str(value(decoded[5], "de")) == "1E+3"  # unscaled 1, scale -3, as Cassandra holds it
    registry = SchemaRegistry(DriverSchemaSource(cassandra.session()), selector=lambda schema: True)
    (schema,) = [s for s in registry.schemas.values() if s.keyspace == keyspace and s.name == "sinkable"]

    async def through(sink: Sink, name: str) -> dict[int, str]:
        await sink.open()
        try:
            await sink.ensure_table(schema)
            dead = tmp_path / f"{name}.jsonl"
            writer = BatchWriter(sink, JsonlDeadLetters(dead), Backoff(initial=0.01, attempts=2))
            letters = await writer.write(Batch(events, Checkpoint("live", "node", Position(1, 1))))
        finally:
            await sink.close()
        return {letter.event.partition_key["k"]: letter.reason for letter in letters}

    namespace = f"{keyspace}_sinks"
    pg_letters = await through(PostgresSink("pg", postgres_dsn, TableNaming(target=namespace)), "pg")
    ch_letters = await through(ClickHouseSink("ch", chdb_dsn, TableNaming(target=namespace)), "ch")
    assert sorted(pg_letters) == [3, 4]
    assert "column ts (timestamp): the timestamp is outside PostgreSQL timestamptz's range" in pg_letters[3]
    assert "column t (text): PostgreSQL text cannot hold the character U+0000" in pg_letters[4]
    assert sorted(ch_letters) == [2, 3]
    assert all("column ts (timestamp): the timestamp is outside years 1-9999" in r for r in ch_letters.values())

    conn = await asyncpg.connect(postgres_dsn)
    try:
        stored = {
            r["k"]: (None if r["ms"] is None else int(r["ms"]), r["de"], r["i"])
            for r in await conn.fetch(
                f"SELECT k, (extract(epoch FROM ts) * 1000)::numeric AS ms, de::text AS de, i FROM {namespace}.sinkable"
            )
        }
    finally:
        await conn.close()
    assert stored == {
        1: (253_402_300_799_999, None, None),
        2: (year_20000, None, None),
        5: (None, "1000", None),
        6: (None, None, None),
    }
    client = clickhouse_connect.get_client(dsn=chdb_dsn)
    result = client.query(
        f"SELECT k, toUnixTimestamp64Milli(ts), t, de, i FROM `{namespace}`.`sinkable` ORDER BY k",
        column_formats={"t": "bytes"},
    )
    assert [tuple(r) for r in result.result_rows] == [
        (1, 253_402_300_799_999, None, None, None),
        (4, None, b"nul\x00inside", None, None),
        (5, None, None, "1E+3", None),
        (6, None, None, None, None),
    ]
