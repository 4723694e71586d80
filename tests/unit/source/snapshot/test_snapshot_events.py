"""Token ranges and the row -> event rules of the snapshot, without a server (docs/snapshot.md)."""

from __future__ import annotations

import collections
import itertools
import random
import uuid

import pytest

from pipeline_runtime.cql.schema import Column, ColumnKind, TableSchema
from pipeline_runtime.cql.types import CqlType, Kind
from pipeline_runtime.events import Cell, CollectionChange, Liveness
from pipeline_runtime.native import native_module
from pipeline_runtime.source.snapshot import MAX_TOKEN, MIN_TOKEN, SnapshotConverter, TokenRange, split_ring

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
    assert SnapshotConverter(SCHEMA).multi_cell_fields() == (9, 10)


def row(
    st: int | None, v: int | None, items: list[int] | None, writetimes: list[int] | None, ck: int | None = 1
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
        [None] * len(items or []),
    )


def test_liveness_is_the_oldest_cell_and_key_only_rows_get_the_read_time() -> None:
    converter = SnapshotConverter(SCHEMA)
    events, _ = converter.events([row(5, 7, None, None), row(None, None, None, None, ck=2)], "n", 0, NOW_US)
    static, first, key_only = events
    assert static.static and static.cells["st"] == Cell(5, 10)
    assert first.liveness == Liveness(20, 30, NOW_US // 1_000_000 + 30)  # its only cell expires
    assert key_only.liveness == Liveness(NOW_US) and not key_only.cells
    # expiring cell: TTL 30 s read at NOW_US
    cell = first.cells["v"]
    assert isinstance(cell, Cell) and cell.expires_at == NOW_US // 1_000_000 + 30


def test_a_static_only_partition_gives_only_its_static_row_and_statics_once_per_partition() -> None:
    converter = SnapshotConverter(SCHEMA)
    events, last = converter.events([row(5, None, None, None, ck=None)], "n", 0, NOW_US)
    assert [e.static for e in events] == [True]
    again, _ = converter.events([row(5, 1, None, None, ck=3)], "n", 1, NOW_US, last)
    assert [e.static for e in again] == [False]


def test_a_list_becomes_an_overwrite_just_after_its_newest_element_in_list_order() -> None:
    events, _ = SnapshotConverter(SCHEMA).events([row(None, 1, [3, 1, 2], [100, 300, 200])], "n", 0, NOW_US)
    change = events[0].cells["l"]
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
            Column("s", CqlType(Kind.SET, (text,)), ColumnKind.REGULAR),
            Column("m", CqlType(Kind.MAP, (text, INT)), ColumnKind.REGULAR),
            Column("l", CqlType(Kind.LIST, (INT,)), ColumnKind.REGULAR),
            Column("u", CqlType(Kind.UDT, (INT, text), field_names=("a", "b")), ColumnKind.REGULAR),
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
        for kind in ("st", "sst", "v", "s", "m", "l", "u"):
            if rng.random() < 0.25:
                values.append((None, None, None))
                continue
            if kind in ("st", "v"):
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
    for page in range(20):
        rows = _random_rows(rng, 40)
        native, previous_native = converter.events(rows, "n1", number, NOW_US + page, previous_native)
        python, previous_python = converter.python_events(rows, "n1", number, NOW_US + page, previous_python)
        assert native == python
        assert previous_native == previous_python
        assert [type(e.cells.get("s")) for e in native] == [type(e.cells.get("s")) for e in python]
        number += len(python)
    assert number > 500  # rows, static rows and pages were all there


def test_the_compiled_converter_refuses_collections_whose_lists_disagree() -> None:
    if native_module() is None:
        pytest.skip("headrace_native is not built (cargo): `make dev` builds it")
    converter = SnapshotConverter(_mixed_schema())
    (bad,) = _random_rows(random.Random(3), 1)
    at = 2 + 3 * 3  # the set "s": value, writetimes, ttls
    bad = (*bad[:at], {"a", "b"}, [1], [None], *bad[at + 3 :])
    for convert in (converter.events, converter.python_events):
        with pytest.raises(ValueError, match="s: 2 elements, 1 writetimes, 1 TTLs"):
            convert([bad], "n1", 0, NOW_US)
