"""The row-state merge is a lattice join: any order, any duplication, same state."""

from __future__ import annotations

import random
import uuid
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline_runtime.cql.canonical import to_json
from pipeline_runtime.cql.schema import Column, ColumnKind, TableSchema
from pipeline_runtime.cql.types import parse_type
from pipeline_runtime.events import (
    Bound,
    Cell,
    ChangeEvent,
    CollectionChange,
    Deletion,
    ElementCell,
    Op,
    Position,
    SourcePosition,
)
from pipeline_runtime.sinks.changes import RowDelta, Shaper, SimpleCell, Tombstone, coalesce, covers

SCHEMA = TableSchema(
    "ks",
    "t",
    uuid.uuid4(),
    (
        Column("pk", parse_type("int"), ColumnKind.PARTITION_KEY, 0),
        Column("ck", parse_type("int"), ColumnKind.CLUSTERING, 0),
        Column("ck2", parse_type("text"), ColumnKind.CLUSTERING, 1, reversed=True),
        Column("v", parse_type("text"), ColumnKind.REGULAR),
        Column("tags", parse_type("set<int>"), ColumnKind.REGULAR),
    ),
)
SRC = SourcePosition("n", Position(1, 1))

cells = st.builds(
    lambda value, ts, dead: Cell(None if dead else value, ts, deleted=dead),
    st.text(max_size=3),
    st.integers(0, 20),
    st.booleans(),
)
elements = st.builds(
    lambda path, ts, dead: ElementCell(path, None, ts, deleted=dead),
    st.integers(0, 3),
    st.integers(0, 20),
    st.booleans(),
)
events = st.builds(
    lambda v, tags, deletion, row_del: ChangeEvent(
        Op.DELETE_ROW if row_del is not None else Op.UPSERT,
        "ks",
        "t",
        {"pk": 1},
        SRC,
        {"ck": 1, "ck2": "a"},
        {} if row_del is not None else {"v": v, "tags": CollectionChange(deletion, tuple(tags))},
        deletion=Deletion(row_del, 0) if row_del is not None else None,
    ),
    cells,
    st.lists(elements, max_size=3),
    st.one_of(st.none(), st.builds(lambda ts: Deletion(ts, 0), st.integers(0, 20))),
    st.one_of(st.none(), st.integers(0, 20)),
)


def merged(items: list[ChangeEvent]) -> RowDelta:
    shaper = Shaper(SCHEMA, lambda *_args, **_key: lambda value: value)
    (row,), _ = coalesce(shaper.shape(e) for e in items)
    return row


@settings(max_examples=200, deadline=None)
@given(st.lists(events, min_size=1, max_size=8), st.randoms())
def test_merge_is_order_and_duplicate_independent(items: list[ChangeEvent], rng: random.Random) -> None:
    reference = merged(items)
    shuffled = items + items[: rng.randrange(len(items) + 1)]
    rng.shuffle(shuffled)
    again = merged(shuffled)
    assert again.cells == reference.cells
    assert again.elements == reference.elements
    assert again.deleted_at == reference.deleted_at
    assert again.version == reference.version


@settings(max_examples=200, deadline=None)
@given(st.lists(events, min_size=2, max_size=8))
def test_version_never_decreases(items: list[ChangeEvent]) -> None:
    shaper = Shaper(SCHEMA, lambda *_args, **_key: lambda value: value)
    state = RowDelta((1, 1, "a"))
    for event in items:
        before = state.version
        delta = shaper.shape(event)
        assert isinstance(delta, RowDelta)
        state.merge(delta)
        assert state.version >= before


def test_tombstone_beats_equal_write_and_newer_write_beats_tombstone() -> None:
    live, dead = SimpleCell("x", 10), SimpleCell(None, 10)
    assert dead.beats(live)
    assert not live.beats(dead)
    assert SimpleCell("y", 11).beats(dead)


def test_range_cover_follows_clustering_order_with_desc_column() -> None:
    clustering = SCHEMA.clustering
    t = Tombstone((1,), Bound((1, "b"), True), Bound((1,), True), 5, SRC)
    # ck2 is DESC: within ck=1 the order is c, b, a; starting at b (inclusive) covers b and a.
    assert covers(t, (1, "b"), clustering)
    assert covers(t, (1, "a"), clustering)
    assert not covers(t, (1, "c"), clustering)
    assert not covers(t, (2, "a"), clustering)
    exclusive = Tombstone((1,), Bound((0,), False), None, 5, SRC)
    assert not covers(exclusive, (0, "z"), clustering)
    assert covers(exclusive, (7, "z"), clustering)


def test_canonical_json_is_type_directed_and_exact() -> None:
    assert to_json({3, 1, 2}, parse_type("set<int>")) == [1, 2, 3]
    assert to_json({"b": 1, "a": 2}, parse_type("map<text, int>")) == {"a": 2, "b": 1}
    assert to_json({2: "x", 1: "y"}, parse_type("map<int, text>")) == [[1, "y"], [2, "x"]]
    assert to_json(Decimal("1.10"), parse_type("decimal")) == Decimal("1.10")
    assert to_json(float("nan"), parse_type("double")) == "NaN"
