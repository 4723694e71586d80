"""Token ranges and the row -> event rules of the snapshot, without a server (docs/snapshot.md)."""

from __future__ import annotations

import itertools
import uuid

import pytest

from pipeline_runtime.cql.schema import Column, ColumnKind, TableSchema
from pipeline_runtime.cql.types import CqlType, Kind
from pipeline_runtime.events import Cell, CollectionChange, Liveness
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
