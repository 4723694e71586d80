"""The decoder on real segments recorded by scripts/record-fixtures.py (v7, v8, v7 + LZ4).

The workload uses fixed ``USING TIMESTAMP`` values, so writetimes are exact.
"""

from __future__ import annotations

import datetime
import decimal
import uuid

import pytest
from cassandra.util import Date, Duration, OrderedMapSerializedKey, SortedSet, Time

from pipeline_runtime.events import Bound, Cell, ChangeEvent, CollectionChange, Op
from tests.unit.source.fixture_data import RECORDINGS, events_of


@pytest.fixture(scope="module", params=RECORDINGS)
def events(request: pytest.FixtureRequest) -> list[ChangeEvent]:
    return [e for e in events_of(request.param) if e.keyspace == "fx"]


def by_ts(events: list[ChangeEvent], ts: int) -> list[ChangeEvent]:
    return [e for e in events if e.max_timestamp == ts]


def test_every_cql_type_decodes_to_the_drivers_value(events: list[ChangeEvent]) -> None:
    (row,) = by_ts(events, 1000001)
    values = {name: cell.value for name, cell in row.cells.items() if isinstance(cell, Cell)}
    assert values == {
        "a": "asc",
        "b": -9000000000,
        "bl": b"\xca\xfe",
        "bo": True,
        "d": Date(datetime.date(2024, 2, 29)),
        "de": decimal.Decimal("12.345"),
        "db": 2.5,
        "du": Duration(0, 0, 3723000000000),
        "f": 1.5,
        "i": "10.0.0.1",
        "it": -7,
        "si": 300,
        "t": "héllo",
        "tm": Time("13:14:15.123456789"),
        "ts": datetime.datetime(2024, 1, 2, 3, 4, 5, 678000),
        "tu": uuid.UUID("50554d6e-29bb-11e5-b345-feff819cdc9f"),
        "ti": -5,
        "u": uuid.UUID("123e4567-e89b-12d3-a456-426614174000"),
        "vi": 123456789012345678901234567890,
        "ve": [1.0, 2.0, 3.5],
        "vt": ["x", "yz"],
        "fl": [3, 1, 2],
        "fs": SortedSet(["a", "b"]),
        "fm": values["fm"],  # compared below: OrderedMapSerializedKey needs its key type to be built
        "tup": (7, "seven"),
        "fu": ("Main", 12345),
        "nested": values["nested"],
    }
    assert dict(values["fm"]) == {"k": 1}
    assert dict(values["nested"]) == {"q": [1, 2]}
    assert isinstance(values["fm"], OrderedMapSerializedKey)
    assert row.op is Op.UPSERT and row.partition_key == {"k": 1}
    assert row.liveness is not None and row.liveness.timestamp == 1000001
    assert all(c.timestamp == 1000001 for c in row.cells.values() if isinstance(c, Cell))


def test_empty_text_and_zero_int(events: list[ChangeEvent]) -> None:
    (row,) = by_ts(events, 1000002)
    assert {k: c.value for k, c in row.cells.items() if isinstance(c, Cell)} == {"it": 0, "t": ""}


def test_insert_with_static_and_collections(events: list[ChangeEvent]) -> None:
    static, row = by_ts(events, 1000003)
    assert static.static and static.clustering_key == {} and static.cells["s"] == Cell("static1", 1000003)
    assert row.partition_key == {"pk1": 1, "pk2": "p"} and row.clustering_key == {"ck1": 1, "ck2": "a"}
    lst = row.cells["l"]
    assert isinstance(lst, CollectionChange)
    # INSERT of a collection first deletes the old one, one microsecond before the write.
    assert lst.deletion is not None and lst.deletion.timestamp == 1000002
    assert [e.value for e in lst.elements] == [1, 2]
    st = row.cells["st"]
    assert isinstance(st, CollectionChange) and [e.path for e in st.elements] == ["x"]
    udt = row.cells["a"]
    assert isinstance(udt, CollectionChange) and {e.path: e.value for e in udt.elements} == {"street": "S", "zip": 1}


def test_partial_update_and_null(events: list[ChangeEvent]) -> None:
    (update,) = by_ts(events, 1000004)
    assert update.cells == {"v": Cell("v2", 1000004)} and update.liveness is None
    (null,) = by_ts(events, 1000005)
    cell = null.cells["v"]
    assert isinstance(cell, Cell) and cell.deleted and cell.value is None and cell.timestamp == 1000005


def test_ttls(events: list[ChangeEvent]) -> None:
    (insert,) = by_ts(events, 1000006)
    assert insert.liveness is not None and insert.liveness.ttl == 3600
    cell = insert.cells["v"]
    assert isinstance(cell, Cell) and cell.ttl == 3600 and cell.expires_at == insert.liveness.expires_at
    (update,) = by_ts(events, 1000007)
    n = update.cells["n"]
    assert isinstance(n, Cell) and n.ttl == 60 and n.value == 5 and n.expires_at is not None


def test_deletes(events: list[ChangeEvent]) -> None:
    (row,) = by_ts(events, 1000008)
    assert row.op is Op.DELETE_ROW and row.clustering_key == {"ck1": 2, "ck2": "b"}
    (closed,) = by_ts(events, 1000009)
    assert closed.op is Op.DELETE_RANGE
    assert (closed.range_start, closed.range_end) == (Bound((1,), False), Bound((5,), True))
    (open_end,) = by_ts(events, 1000010)
    assert (open_end.range_start, open_end.range_end) == (Bound((7,), True), None)
    (prefix,) = by_ts(events, 1000011)
    assert (prefix.range_start, prefix.range_end) == (Bound((3,), True), Bound((3,), True))
    (partition,) = by_ts(events, 1000012)
    assert partition.op is Op.DELETE_PARTITION and partition.partition_key == {"pk1": 2, "pk2": "q"}
    assert partition.deletion is not None and partition.deletion.timestamp == 1000012


def test_collection_operations(events: list[ChangeEvent]) -> None:
    (append,) = by_ts(events, 1000014)
    changes = {k: v for k, v in append.cells.items() if isinstance(v, CollectionChange)}
    assert {k: [(e.path if k != "l" else None, e.value) for e in v.elements] for k, v in changes.items()} == {
        "l": [(None, 3)],
        "st": [("y", None)],
        "m": [("k2", 2)],
        "a": [("street", "T")],
    }
    assert all(v.deletion is None for v in changes.values())
    (prepend,) = by_ts(events, 1000015)
    removed = prepend.cells["st"]
    assert isinstance(removed, CollectionChange) and removed.elements[0].deleted and removed.elements[0].path == "x"
    (map_delete,) = by_ts(events, 1000016)
    m = map_delete.cells["m"]
    assert isinstance(m, CollectionChange) and m.elements[0].deleted and m.elements[0].path == "k1"
    (overwrite,) = by_ts(events, 1000017)
    lst = overwrite.cells["l"]
    assert isinstance(lst, CollectionChange) and lst.deletion is not None and lst.deletion.timestamp == 1000016
    assert [e.value for e in lst.elements] == [5, 6]


def test_batch_spanning_cdc_and_non_cdc_tables(events: list[ChangeEvent]) -> None:
    batch = by_ts(events, 1000019)
    assert sorted(e.table for e in batch) == ["ops", "plain"]


def test_lwt_write_and_counter_skip(events: list[ChangeEvent]) -> None:
    (lwt,) = [e for e in events if e.partition_key == {"pk1": 4, "pk2": "lwt"}]
    assert lwt.cells["v"] == Cell("lwt", lwt.max_timestamp)
    assert not [e for e in events if e.table == "cnt"]


def test_positions_grow_and_name_the_segment(events: list[ChangeEvent]) -> None:
    positions = [e.source.position for e in events]
    assert positions == sorted(positions)
    assert {e.source.node for e in events} == {"node-1"}
