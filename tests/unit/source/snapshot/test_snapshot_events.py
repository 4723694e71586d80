"""Token ranges and the row -> event rules of the snapshot, without a server (docs/snapshot.md)."""

from __future__ import annotations

import collections
import itertools
import random
import struct
import uuid
from collections.abc import Sequence
from typing import Any

import pytest

from pipeline_runtime.cql.schema import Column, ColumnKind, TableSchema
from pipeline_runtime.cql.types import CqlType, Kind
from pipeline_runtime.events import Cell, CollectionChange, Liveness
from pipeline_runtime.native import native_module
from pipeline_runtime.source.commitlog.values import driver_type
from pipeline_runtime.source.snapshot import MAX_TOKEN, MIN_TOKEN, SnapshotConverter, TokenRange, split_ring
from pipeline_runtime.source.snapshot.events import RawRows

INT = CqlType(Kind.INT)
SCHEMA = TableSchema(
    "ks",
    "t",
    uuid.uuid4(),
    (
        Column("k", INT, ColumnKind.PARTITION_KEY, 0),
        Column("ck", INT, ColumnKind.CLUSTERING, 0),
        Column("st", INT, ColumnKind.STATIC),
        Column("v", INT, ColumnKind.REGULAR),
        Column("l", CqlType(Kind.LIST, (INT,)), ColumnKind.REGULAR),
    ),
)
NOW_US = 2_000_000_000_000_000


def test_split_ring_covers_the_ring_without_gaps() -> None:
    ranges = split_ring(7)
    assert ranges[0].start == MIN_TOKEN
    assert ranges[-1].end == MAX_TOKEN
    assert all(a.end == b.start for a, b in itertools.pairwise(ranges))
    with pytest.raises(ValueError):
        split_ring(0)
    with pytest.raises(ValueError):
        TokenRange(5, 5)


def test_select_reads_value_writetime_and_ttl_of_every_value_column() -> None:
    select = SnapshotConverter(SCHEMA).select()
    assert 'WRITETIME("l"), TTL("l")' in select
    assert 'token("k") > ? AND token("k") <= ?' in select


def _field(data: bytes | None) -> bytes:
    return struct.pack(">i", -1) if data is None else struct.pack(">i", len(data)) + data


def _fields(items: Sequence[bytes | None], per_element: int = 1) -> bytes:
    return struct.pack(">i", len(items) // per_element) + b"".join(_field(i) for i in items)


def _encode(schema: TableSchema, rows: Sequence[Sequence[Any]]) -> RawRows:
    """``rows`` (tuples as the tests write them) as Cassandra sends the snapshot SELECT's rows."""
    keys = [c for c in schema.columns if c.kind in (ColumnKind.PARTITION_KEY, ColumnKind.CLUSTERING)]
    values = [c for c in schema.columns if c.kind in (ColumnKind.STATIC, ColumnKind.REGULAR)]

    def simple(cql: CqlType, value: Any) -> bytes | None:
        if cql.kind is Kind.TIMESTAMP and isinstance(value, int):
            return struct.pack(">q", value)  # milliseconds, as Cassandra sends them
        return None if value is None else driver_type(cql, schema.keyspace).serialize(value, 4)

    def integers(items: Sequence[int | None] | None, size: str) -> bytes | None:
        if items is None:
            return None
        return _fields([None if i is None else struct.pack(size, i) for i in items])

    def collection(cql: CqlType, value: Any) -> bytes | None:
        if value is None:
            return None
        args = cql.args
        if cql.kind is Kind.SET:
            return _fields([simple(args[0], e) for e in sorted(value)])
        if cql.kind is Kind.MAP:
            pairs = [b for k in sorted(value) for b in (simple(args[0], k), simple(args[1], value[k]))]
            return _fields(pairs, per_element=2)
        if cql.kind is Kind.LIST:
            return _fields([simple(args[0], e) for e in value])
        return b"".join(_field(simple(t, getattr(value, n))) for n, t in zip(cql.field_names, args, strict=True))

    out = [struct.pack(">i", len(rows))]
    for row in rows:
        fields: list[bytes | None] = [simple(c.type, row[i]) for i, c in enumerate(keys)]
        for i, column in enumerate(values):
            value, writetime, ttl = row[len(keys) + 3 * i : len(keys) + 3 * i + 3]
            if column.type.multi_cell:
                fields += [collection(column.type, value), integers(writetime, ">q"), integers(ttl, ">i")]
            else:
                fields += [
                    simple(column.type, value),
                    None if writetime is None else struct.pack(">q", writetime),
                    None if ttl is None else struct.pack(">i", ttl),
                ]
        fields.append(struct.pack(">q", row[-1]))
        out += [_field(f) for f in fields]
    return RawRows(b"".join(out), len(keys) + 3 * len(values) + 1)


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "python"])
def test_a_page_is_read_from_the_bytes_cassandra_sends(compiled: bool) -> None:
    if compiled and native_module() is None:
        pytest.skip("headrace_native is not built (cargo): `make dev` builds it")
    converter = SnapshotConverter(SCHEMA)
    if not compiled:
        converter._native = None
    rows = [row(5, 7, [3, 1], [100, 200], token=-9), row(None, None, None, None, ck=2)]
    assert converter.parse(_encode(SCHEMA, rows)) == rows
    page = converter.events(_encode(SCHEMA, rows), "n", 0, NOW_US)
    assert (page.rows, page.final_token, page.token_before_final) == (2, 42, -9)
    assert [e.cells.get("v") for e in page.events] == [None, Cell(7, 20, 30, NOW_US // 1_000_000 + 30), None]
    tokens = [1, 1, 5, 9, 9]
    raw = _encode(SCHEMA, [row(1, 1, None, None, ck=i, token=t) for i, t in enumerate(tokens)])
    page = converter.events(raw, "n", 0, 0)
    assert (page.rows, page.final_token, page.token_before_final) == (5, 9, 5)
    bad = _encode(SCHEMA, rows)
    with pytest.raises(ValueError, match="columns"):
        converter.events(RawRows(bad.data, bad.columns - 1), "n", 0, NOW_US)
    with pytest.raises((ValueError, struct.error)):
        converter.events(RawRows(bad.data[:-3], bad.columns), "n", 0, NOW_US)


def row(
    st: int | None,
    v: int | None,
    items: list[int] | None,
    writetimes: list[int] | None,
    ck: int | None = 1,
    token: int = 42,
) -> tuple[object, ...]:
    return (
        1,
        ck,
        st,
        10 if st is not None else None,
        None,
        v,
        20 if v is not None else None,
        30,
        items,
        writetimes,
        [None] * len(items or []) if items is not None else None,
        token,
    )


def test_liveness_is_the_oldest_cell_and_key_only_rows_get_the_read_time() -> None:
    converter = SnapshotConverter(SCHEMA)
    page = converter.events(_encode(SCHEMA, [row(5, 7, None, None), row(None, None, None, None, ck=2)]), "n", 0, NOW_US)
    static, first, key_only = page.events
    assert static.static and static.cells["st"] == Cell(5, 10)
    assert first.liveness == Liveness(20, 30, NOW_US // 1_000_000 + 30)  # its only cell expires
    assert key_only.liveness == Liveness(NOW_US) and not key_only.cells
    # expiring cell: TTL 30 s read at NOW_US
    cell = first.cells["v"]
    assert isinstance(cell, Cell) and cell.expires_at == NOW_US // 1_000_000 + 30


def test_a_static_only_partition_gives_only_its_static_row_and_statics_once_per_partition() -> None:
    converter = SnapshotConverter(SCHEMA)
    page = converter.events(_encode(SCHEMA, [row(5, None, None, None, ck=None)]), "n", 0, NOW_US)
    assert [e.static for e in page.events] == [True]
    again = converter.events(_encode(SCHEMA, [row(5, 1, None, None, ck=3)]), "n", 1, NOW_US, page.last_partition)
    assert [e.static for e in again.events] == [False]


def test_a_list_becomes_an_overwrite_just_after_its_newest_element_in_list_order() -> None:
    page = SnapshotConverter(SCHEMA).events(_encode(SCHEMA, [row(None, 1, [3, 1, 2], [100, 300, 200])]), "n", 0, NOW_US)
    change = page.events[0].cells["l"]
    assert isinstance(change, CollectionChange) and change.deletion is not None
    assert change.deletion.timestamp == 300
    assert [e.value for e in change.elements] == [3, 1, 2]
    assert {e.timestamp for e in change.elements} == {301}
    paths = [e.path for e in change.elements]
    assert paths == sorted(paths, key=lambda p: (p.time, p.bytes))
    assert all(p.version == 1 and p.time == 301 * 10 + 0x01B21DD213814000 for p in paths)


def _mixed_schema() -> TableSchema:
    text = CqlType(Kind.TEXT)
    return TableSchema(
        "ks",
        "mixed",
        uuid.uuid4(),
        (
            Column("k", INT, ColumnKind.PARTITION_KEY, 0),
            Column("ck", INT, ColumnKind.CLUSTERING, 0),
            Column("st", text, ColumnKind.STATIC),
            Column("sst", CqlType(Kind.SET, (INT,)), ColumnKind.STATIC),
            Column("v", text, ColumnKind.REGULAR),
            Column("at", CqlType(Kind.TIMESTAMP), ColumnKind.REGULAR),
            Column("s", CqlType(Kind.SET, (text,)), ColumnKind.REGULAR),
            Column("m", CqlType(Kind.MAP, (text, INT)), ColumnKind.REGULAR),
            Column("l", CqlType(Kind.LIST, (INT,)), ColumnKind.REGULAR),
            Column("u", CqlType(Kind.UDT, (INT, text), udt_name="u", field_names=("a", "b")), ColumnKind.REGULAR),
        ),
    )


def _random_rows(rng: random.Random, count: int) -> list[tuple[object, ...]]:
    udt = collections.namedtuple("udt", ["a", "b"])  # what the driver returns for a UDT
    rows = []
    for i in range(count):
        k, ck = i // 3, (None if rng.random() < 0.1 else i % 3)

        def stamps(n: int) -> tuple[list[int], list[int | None]]:
            return [rng.randint(1, 10**15) for _ in range(n)], [rng.choice([None, 60, 3600]) for _ in range(n)]

        fields: list[object] = [k, ck]
        values: list[tuple[object, object, object]] = []
        for kind in ("st", "sst", "v", "at", "s", "m", "l", "u"):
            if rng.random() < 0.25:
                values.append((None, None, None))
                continue
            if kind == "at":  # milliseconds, in and beyond datetime's years 1-9999
                edges = [-62_135_596_800_000, 253_402_300_799_999, -62_135_596_800_001, 253_402_300_800_000, 0, -1]
                millis = rng.choice([*edges, rng.randint(-(2**63), 2**63 - 1), rng.randint(-(10**13), 10**13)])
                values.append((millis, rng.randint(1, 10**15), None))
            elif kind in ("st", "v"):
                values.append((f"{kind}{i}", rng.randint(1, 10**15), rng.choice([None, 30])))
            elif kind in ("sst", "s"):
                items = sorted({rng.randint(0, 9) for _ in range(rng.randint(1, 4))})
                values.append(((set(items) if kind == "sst" else {f"e{x}" for x in items}), *stamps(len(items))))
            elif kind == "m":
                items = sorted({f"k{rng.randint(0, 9)}" for _ in range(rng.randint(1, 4))})
                values.append(({key: rng.randint(0, 99) for key in items}, *stamps(len(items))))
            elif kind == "l":
                items = [rng.randint(0, 99) for _ in range(rng.randint(1, 4))]
                values.append((items, *stamps(len(items))))
            else:
                writetimes, ttls = stamps(2)
                values.append((udt(rng.randint(0, 9), None), [writetimes[0], None], [ttls[0], None]))
        for triple in values:
            fields += triple
        fields.append(rng.randint(-(2**63), 2**63 - 1))  # the token
        rows.append(tuple(fields))
    return rows


def test_the_compiled_converter_gives_the_references_events() -> None:
    if native_module() is None:
        pytest.skip("headrace_native is not built (cargo): `make dev` builds it")
    converter = SnapshotConverter(_mixed_schema())
    assert converter._native is not None
    rng = random.Random(12)
    previous_native = previous_python = None
    number = 0
    timestamps: set[str] = set()
    for page in range(20):
        raw = _encode(converter.schema, sorted(_random_rows(rng, 40), key=lambda r: r[-1]))
        native = converter.events(raw, "n1", number, NOW_US + page, previous_native)
        python, previous_python = converter.python_events(
            converter.parse(raw), "n1", number, NOW_US + page, previous_python
        )
        assert native.events == python
        assert native.last_partition == previous_python
        assert [type(e.cells.get("s")) for e in native.events] == [type(e.cells.get("s")) for e in python]
        tokens = sorted({r[-1] for r in converter.parse(raw)})
        assert (native.final_token, native.token_before_final) == (tokens[-1], tokens[-2])
        previous_native = native.last_partition
        number += len(python)
        timestamps.update(type(e.cells["at"].value).__name__ for e in native.events if "at" in e.cells)  # type: ignore[union-attr]
    assert number > 500  # rows, static rows and pages were all there
    assert timestamps == {"datetime", "Timestamp"}  # in and beyond datetime's range


def test_the_compiled_converter_refuses_collections_whose_lists_disagree() -> None:
    if native_module() is None:
        pytest.skip("headrace_native is not built (cargo): `make dev` builds it")
    converter = SnapshotConverter(_mixed_schema())
    (bad,) = _random_rows(random.Random(3), 1)
    at = 2 + 3 * 4  # the set "s": value, writetimes, ttls
    raw = _encode(converter.schema, [(*bad[:at], {"a", "b"}, [1], [None], *bad[at + 3 :])])
    with pytest.raises(ValueError, match="s: 2 elements, 1 writetimes, 1 TTLs"):
        converter.events(raw, "n1", 0, NOW_US)
    with pytest.raises(ValueError, match="s: 2 elements, 1 writetimes, 1 TTLs"):
        converter.python_events(converter.parse(raw), "n1", 0, NOW_US)
