"""The ClickHouse fast path (flat rows) merges exactly like the general path (RowDelta + _row).

Random stored states and deltas with few distinct writetimes, so equal-time
tie-breaks (tombstone, expiry, value text) are exercised, over value types
that need conversion on the way back (timestamps, numeric vectors).
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from decimal import Decimal
from typing import Any

import pytest

from pipeline_runtime.cql.schema import Column, ColumnKind, TableSchema
from pipeline_runtime.cql.types import parse_type
from pipeline_runtime.events import Cell, ChangeEvent, ColumnChange, Liveness, Op, Position, SourcePosition
from pipeline_runtime.sinks.changes import Layout, RowDelta, Shaper, coalesce
from pipeline_runtime.sinks.clickhouse.flat import FlatRows, nonempty_columns, read_columns
from pipeline_runtime.sinks.clickhouse.sink import _plan, _row, _state
from pipeline_runtime.sinks.clickhouse.sql import TableSql
from pipeline_runtime.sinks.clickhouse.typemap import ch_encoder

SCHEMA = TableSchema(
    "ks",
    "t",
    uuid.uuid4(),
    (
        Column("pk", parse_type("int"), ColumnKind.PARTITION_KEY, 0),
        Column("ck", parse_type("timestamp"), ColumnKind.CLUSTERING, 0),
        Column("a", parse_type("text"), ColumnKind.REGULAR),
        Column("d", parse_type("decimal"), ColumnKind.REGULAR),
        Column("t", parse_type("timestamp"), ColumnKind.REGULAR),
        Column("v", parse_type("vector<float, 2>"), ColumnKind.REGULAR),
    ),
)
SRC = SourcePosition("n", Position(1, 1))
BASE = dt.datetime(2024, 1, 1)


def random_event(rng: random.Random, key: int) -> ChangeEvent:
    values: dict[str, Any] = {
        "a": lambda: rng.choice(["x", "y", "zz"]),
        "d": lambda: Decimal(rng.choice(["1.0", "1.00", "2"])),
        "t": lambda: BASE + dt.timedelta(seconds=rng.randrange(3)),
        "v": lambda: [float(rng.randrange(3)), 1.0],
    }
    cells: dict[str, ColumnChange] = {}
    for name, make in values.items():
        if rng.random() < 0.6:
            ts = rng.randrange(3)
            roll = rng.random()
            if roll < 0.25:
                cells[name] = Cell(None, ts, None, 100, deleted=True)
            elif roll < 0.45:
                cells[name] = Cell(make(), ts, 60, rng.choice([100, 200]))
            else:
                cells[name] = Cell(make(), ts)
    liveness = None
    if rng.random() < 0.5:
        ttl = rng.choice([None, 60])
        liveness = Liveness(rng.randrange(3), ttl, rng.choice([100, 200]) if ttl else None)
    clustering = {"ck": BASE + dt.timedelta(hours=key % 2)}
    return ChangeEvent(Op.UPSERT, "ks", "t", {"pk": key // 2}, SRC, clustering, cells, liveness)


def stored_from(state: RowDelta, sql: TableSql) -> list[Any]:
    """What the read-back returns for a stored state: its row, read back naive-UTC like clickhouse-connect."""
    row = _row(state, _plan(sql.layout.regulars), False, state.version)
    names = [n for n, _ in sql.state_columns]
    by_name = dict(zip(names, row, strict=True))
    return [
        v.replace(tzinfo=None) if isinstance(v, dt.datetime) else v
        for v in (by_name[n] for n in [*read_columns(sql.layout), "_version"])
    ]


@pytest.mark.parametrize("seed", range(20))
def test_flat_merge_equals_general_merge(seed: int) -> None:
    rng = random.Random(seed)
    layout = Layout(SCHEMA)
    sql = TableSql(layout, "db", "t")
    shaper = Shaper(SCHEMA, ch_encoder)
    flat = FlatRows(layout)
    assert flat.eligible

    earlier = [random_event(rng, rng.randrange(8)) for _ in range(12)]
    stored_states, _ = coalesce(shaper.shape(e) for e in earlier)
    stored_rows = [stored_from(s, sql) for s in stored_states]
    batch = {
        e.partition_key["pk"] * 2 + e.clustering_key["ck"].hour: e for e in (random_event(rng, k) for k in range(8))
    }
    events = list(batch.values())

    deltas = flat.shape(events)
    assert deltas is not None
    columns = [list(c) for c in zip(*stored_rows, strict=True)]
    stored, versions = flat.stored(columns) if stored_rows else ({}, {})
    fast = flat.merge(deltas, stored, versions)

    names = [*read_columns(layout), "_version"]
    current = {}
    stored_versions = {}
    for row in stored_rows:
        state = _state(dict(zip(names, row, strict=True)), SCHEMA.primary_key, layout.regulars, False)
        current[state.key] = state
        stored_versions[state.key] = row[-1]
    general = []
    for event in events:
        delta = shaper.shape(event)
        assert isinstance(delta, RowDelta)
        found = current.get(delta.key)
        if found is None:
            state, changed = delta, True
        else:
            state = found
            changed = state.merge(delta)
        if changed:
            version = max(state.version, stored_versions.get(delta.key, -1) + 1)
            general.append(_row(state, _plan(layout.regulars), False, version))
    assert fast == general


def test_flat_path_declines_what_it_does_not_handle() -> None:
    flat = FlatRows(Layout(SCHEMA))
    rng = random.Random(1)
    twice = [random_event(rng, 1), random_event(rng, 1)]
    assert flat.shape(twice) is None
    delete = ChangeEvent(Op.DELETE_ROW, "ks", "t", {"pk": 1}, SRC, {"ck": BASE})
    assert flat.shape([delete]) is None
    collections = TableSchema(
        "ks",
        "c",
        uuid.uuid4(),
        (
            Column("pk", parse_type("int"), ColumnKind.PARTITION_KEY, 0),
            Column("s", parse_type("set<int>"), ColumnKind.REGULAR),
        ),
    )
    assert not FlatRows(Layout(collections)).eligible


def test_columns_null_in_every_row_are_left_out() -> None:
    columns, data = nonempty_columns(
        [[1, None, "x"], [2, None, None]], [("k", "Int64"), ("e", "Nullable(Int64)"), ("s", "Nullable(String)")]
    )
    assert columns == [("k", "Int64"), ("s", "Nullable(String)")]
    assert data == [[1, 2], ["x", None]]
