"""Every CQL type round-trips through every sink's mapping, and schema changes are handled."""

from __future__ import annotations

import datetime as dt
import uuid
from collections import namedtuple
from decimal import Decimal
from typing import Any

import pytest
from cassandra.cqltypes import Int32Type
from cassandra.util import Date, Duration, OrderedMapSerializedKey, SortedSet, Time

from pipeline_runtime.cql.schema import ColumnKind, TableSchema
from pipeline_runtime.cql.types import parse_type
from pipeline_runtime.errors import SchemaDriftError
from pipeline_runtime.events import Cell, ChangeEvent, Liveness, Op, Position, SourcePosition
from pipeline_runtime.sinks.base import Batch, Checkpoint, Sink
from pipeline_runtime.sinks.errors import MissingExtensionError
from pipeline_runtime.sinks.timescale import TimescaleSink
from tests.integration.sinks.conftest import Harness
from tests.integration.sinks.workload import actual_rows, canonical, column

# Every table here has the timestamp clustering column k_ts: the TimescaleDB kind partitions by it.
pytestmark = pytest.mark.time_column("k_ts")

Address = namedtuple("Address", ["street", "zip"])

# (CQL type, value as cassandra-driver returns it)
SAMPLES: list[tuple[str, Any]] = [
    ("ascii", "plain ascii"),
    ("text", "ünïcødé ✓ 'quotes' \"double\""),
    ("bigint", -(2**63) + 1),
    ("int", 2**31 - 1),
    ("smallint", -(2**15)),
    ("tinyint", 127),
    ("varint", 2**200 + 12345),
    ("decimal", Decimal("-1234567890123456789012345678901234567890.000000000000000001")),
    ("float", 1.5),
    ("double", 3.141592653589793),
    ("boolean", True),
    ("blob", b"\x00\xff binary \x01"),
    ("date", Date(dt.date(1999, 12, 31))),
    ("time", Time(3723000000789)),
    ("timestamp", dt.datetime(2024, 2, 29, 23, 59, 59, 123000)),
    ("uuid", uuid.UUID("12345678-1234-5678-1234-567812345678")),
    ("timeuuid", uuid.UUID("a1b2c3d4-0f1e-11ee-8c90-0242ac120002")),
    ("inet", "2001:db8::1"),
    ("duration", Duration(1, 2, 3_000_000_007)),
    ("frozen<list<int>>", [3, 1, 2]),
    ("frozen<set<text>>", SortedSet(["b", "a", "c"])),
    ("frozen<map<int, text>>", None),  # filled by _map_value(): the driver's own map type
    ("frozen<map<text, frozen<list<decimal>>>>", {"x": [Decimal("1.10"), Decimal("2E+5")]}),
    ("tuple<int, text, frozen<set<int>>>", (1, "one", {3, 2})),
    ("frozen<address>", Address("Main St", 12345)),
    ("frozen<list<frozen<address>>>", [{"street": "Dict St", "zip": 1}, Address("Tuple St", 2)]),
    ("vector<float, 3>", [1.0, -2.5, 0.25]),
    ("vector<text, 2>", ["a", "b"]),
]


def _map_value() -> Any:
    value = OrderedMapSerializedKey(Int32Type, 4)
    value._insert(10, "ten")
    value._insert(2, "two")
    return value


SAMPLES[21] = (SAMPLES[21][0], _map_value())


def types_schema(name: str = "types", extra: tuple[Any, ...] = ()) -> TableSchema:
    columns = [
        column("id", "text", ColumnKind.PARTITION_KEY, 0),
        column("k_uuid", "timeuuid", ColumnKind.CLUSTERING, 0),
        column("k_ts", "timestamp", ColumnKind.CLUSTERING, 1, rev=True),
    ]
    columns += [column(f"c{i}", cql) for i, (cql, _) in enumerate(SAMPLES)]
    return TableSchema("ks", name, uuid.uuid4(), (*columns, *extra))


def row_event(schema: TableSchema, values: dict[str, Any], offset: int) -> ChangeEvent:
    cells = {name: Cell(value, 1_000 + offset) for name, value in values.items()}
    return ChangeEvent(
        Op.UPSERT,
        "ks",
        schema.name,
        {"id": "row"},
        SourcePosition("n", Position(1, offset)),
        {"k_uuid": uuid.UUID("a1b2c3d4-0f1e-11ee-8c90-0242ac120002"), "k_ts": dt.datetime(2020, 1, 1)},
        cells,
        Liveness(1_000 + offset),
    )


async def test_every_cql_type_round_trips(harness: Harness, opened: Sink) -> None:
    schema = types_schema()
    await opened.ensure_table(schema)
    values = {f"c{i}": value for i, (_, value) in enumerate(SAMPLES)}
    await opened.write(Batch([row_event(schema, values, 1)], Checkpoint("types", "n", Position(1, 1))))

    (row,) = (await harness.rows(schema))[:1]
    got = actual_rows(schema, [row])
    (only,) = got.values()
    for i, (cql, value) in enumerate(SAMPLES):
        expected = canonical(value, schema.by_name[f"c{i}"].type)
        assert only[f"c{i}"] == expected, f"{cql}: {only[f'c{i}']!r} != {expected!r}"
    assert only["k_ts"] == canonical(dt.datetime(2020, 1, 1), parse_type("timestamp"))


async def test_new_column_is_added_and_filled(harness: Harness, opened: Sink) -> None:
    before = types_schema("evolve")
    await opened.ensure_table(before)
    await opened.write(Batch([row_event(before, {"c1": "old"}, 1)]))
    after = types_schema("evolve", extra=(column("added", "map<text, int>"), column("note", "text")))
    await opened.ensure_table(after)
    await opened.write(Batch([row_event(after, {"note": "new"}, 2)]))
    (row,) = await harness.rows(after)
    assert row["c1"] == "old"
    assert row["note"] == "new"
    assert row["added"] is None


@pytest.mark.parametrize("change", ["dropped", "retyped"])
async def test_drop_or_type_change_is_refused(opened: Sink, change: str) -> None:
    base = types_schema("drift", extra=(column("victim", "int"),))
    await opened.ensure_table(base)
    changed = types_schema("drift") if change == "dropped" else types_schema("drift", extra=(column("victim", "text"),))
    with pytest.raises(SchemaDriftError) as caught:
        await opened.ensure_table(changed)
    assert caught.value.column == "victim"
    assert "drift" in caught.value.table


async def test_timescaledb_missing_extension_names_database(postgres_dsn: str) -> None:
    sink = TimescaleSink("tsdb", postgres_dsn, time_column="k_ts")
    with pytest.raises(MissingExtensionError) as caught:
        await sink.open()
    database = postgres_dsn.rsplit("/", 1)[1]
    assert caught.value.database == database
    assert database in str(caught.value)
    assert "timescaledb" in str(caught.value)
