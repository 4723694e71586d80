"""The compiled core's merge (``ChMerger`` on Native blocks) stores what the Python merge stores.

Two sinks on the chdb engine get the same batches of random upserts over a
few rows with few distinct writetimes and few distinct values, so
equal-writetime tie-breaks (tombstone, expiry, value order of every stored
type) happen often: one merges in the compiled core, the other in Python (the
flat path and, for batches that repeat a row, the general path). The newest
stored state of every row must be the same, cell for cell, and so must the
reader's view.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import random
import uuid
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import pytest

from devservices.pytest_require import unavailable
from pipeline_runtime.cql.schema import Column, ColumnKind, TableSchema
from pipeline_runtime.cql.types import parse_type
from pipeline_runtime.events import Cell, ChangeEvent, ColumnChange, Liveness, Op, Position, SourcePosition
from pipeline_runtime.native import native_module
from pipeline_runtime.sinks.base import Batch, Checkpoint, TableNaming
from pipeline_runtime.sinks.clickhouse import ClickHouseSink
from pipeline_runtime.sinks.clickhouse.flat import read_columns
from pipeline_runtime.sinks.clickhouse.sql import ident
from tests.unit.sinks.test_ch_flat import SCHEMA, random_event


@pytest.fixture(autouse=True)
def _compiled_core() -> None:
    if native_module() is None:
        unavailable("headrace_native is not built: `make dev` (pip install ./native) builds it")


BASE = dt.datetime(2024, 1, 1)
#: Every type a flat table stores, each with few values (some only in sign or scale) for frequent ties.
WIDE_VALUES: dict[str, tuple[str, Callable[[random.Random], Any]]] = {
    "i": ("int", lambda r: r.choice([-2, 1, 300])),
    "b": ("bigint", lambda r: r.choice([-(2**40), 7, 2**62])),
    "s": ("smallint", lambda r: r.choice([-5, 5])),
    "y": ("tinyint", lambda r: r.choice([-1, 1])),
    "f": ("double", lambda r: r.choice([-0.0, 0.0, 1.5, -2.25])),
    "g": ("float", lambda r: r.choice([0.5, -0.5])),
    "z": ("boolean", lambda r: r.choice([True, False])),
    "u": ("uuid", lambda r: uuid.UUID(int=r.choice([1, 2**64, 2**127 + 5]))),
    "day": ("date", lambda r: dt.date(2024, 1, 1) + dt.timedelta(days=r.choice([-800, 0, 3]))),
    "at": ("timestamp", lambda r: BASE + dt.timedelta(milliseconds=r.choice([-1, 0, 5]))),
    "raw": ("blob", lambda r: r.choice([b"", b"\x00", b"\xff\x01"])),
    "txt": ("text", lambda r: r.choice(["", "a", "ä", "ab"])),
    "num": ("decimal", lambda r: Decimal(r.choice(["1.0", "1.00", "-3"]))),
    "vi": ("vector<int, 2>", lambda r: [r.choice([-1, 2]), r.choice([0, 1])]),
    "vd": ("vector<double, 2>", lambda r: [r.choice([0.0, 1.0]), 2.0]),
}
WIDE = TableSchema(
    "ks",
    "wide",
    uuid.uuid4(),
    (
        Column("pk", parse_type("text"), ColumnKind.PARTITION_KEY, 0),
        Column("ck", parse_type("uuid"), ColumnKind.CLUSTERING, 0),
        *(Column(name, parse_type(cql), ColumnKind.REGULAR) for name, (cql, _) in WIDE_VALUES.items()),
    ),
)


def wide_event(rng: random.Random, key: int) -> ChangeEvent:
    cells: dict[str, ColumnChange] = {}
    for name, (_, make) in WIDE_VALUES.items():
        if rng.random() < 0.5:
            ts = rng.randrange(3)
            roll = rng.random()
            if roll < 0.2:
                cells[name] = Cell(None, ts, None, 100, deleted=True)
            elif roll < 0.35:
                cells[name] = Cell(make(rng), ts, 60, rng.choice([100, 200]))
            else:
                cells[name] = Cell(make(rng), ts)
    liveness = Liveness(rng.randrange(3)) if rng.random() < 0.5 else None
    partition = {"pk": ["k", "ä", ""][key % 3]}
    clustering = {"ck": uuid.UUID(int=key // 3)}
    return ChangeEvent(Op.UPSERT, "ks", "wide", partition, SRC, clustering, cells, liveness)


SRC = SourcePosition("n", Position(1, 1))


async def _states(sink: ClickHouseSink, schema: TableSchema) -> list[tuple[Any, ...]]:
    table = sink._tables[schema.qualified_name].sql
    columns = ", ".join(ident(n) for n in [*read_columns(table.layout), "is_deleted"])
    keys = ", ".join(ident(n) for n in table.layout.key_names)
    result = await sink._call(
        sink.client.query,
        f"SELECT * FROM (SELECT {columns} FROM {table.state} ORDER BY _version DESC LIMIT 1 BY {keys}) ORDER BY {keys}",
    )
    return [tuple(row) for row in result.result_rows]


async def _view(sink: ClickHouseSink, schema: TableSchema) -> list[tuple[Any, ...]]:
    table = sink._tables[schema.qualified_name].sql
    result = await sink._call(sink.client.query, f"SELECT * FROM {table.view} ORDER BY pk, ck")
    return [tuple(row) for row in result.result_rows]


@pytest.fixture
async def twins(chdb_dsn: str, request: pytest.FixtureRequest) -> AsyncIterator[tuple[ClickHouseSink, ClickHouseSink]]:
    """A sink that merges in the compiled core and one that merges in Python, both opened."""
    name = request.node.name.replace("[", "_").replace("]", "").replace("-", "_")
    native = ClickHouseSink("native", chdb_dsn, TableNaming(target=f"native_{name}"))
    python = ClickHouseSink("python", chdb_dsn, TableNaming(target=f"python_{name}"))
    for sink in (native, python):
        await sink.open()
    try:
        yield native, python
    finally:
        for sink in (native, python):
            await sink.close()


def _count_native(sink: ClickHouseSink, monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Records what each ``_write_native`` call returned (False: the core declined the batch)."""
    results: list[bool] = []
    original = sink._write_native

    async def counted(*args: Any) -> bool:
        done = await original(*args)
        results.append(done)
        return done

    monkeypatch.setattr(sink, "_write_native", counted)
    return results


async def _run_random(
    twins: tuple[ClickHouseSink, ClickHouseSink],
    schema: TableSchema,
    make: Callable[[random.Random, int], ChangeEvent],
    seed: int,
    rows: int,
    monkeypatch: pytest.MonkeyPatch,
) -> list[bool]:
    native, python = twins
    for sink in twins:
        await sink.ensure_table(schema)
    python._tables[schema.qualified_name].native = None  # merge in Python
    assert native._tables[schema.qualified_name].native is not None
    merged = _count_native(native, monkeypatch)
    rng = random.Random(seed)
    for number in range(40):
        keys = rng.sample(range(rows), rng.randint(1, rows))
        if number % 10 == 9:
            keys += keys[:1]  # a repeated row: the general path, for both sinks
        # Distinct positions, as a commitlog gives: the insert deduplication token is made of them.
        events = [
            dataclasses.replace(make(rng, key), source=SourcePosition("n", Position(number, i)))
            for i, key in enumerate(keys)
        ]
        for sink in twins:
            await sink.write(Batch(events, Checkpoint(f"native-merge-{seed}", "n", Position(1, number))))
    assert await _states(native, schema) == await _states(python, schema)
    view = await _view(native, schema)
    assert view == await _view(python, schema)
    assert view, "the random workload left no live row to compare"
    return merged


WORKLOADS = {"narrow": (SCHEMA, random_event, 8), "every-type": (WIDE, wide_event, 9)}


@pytest.mark.parametrize(
    ("workload", "seed"), [("narrow", s) for s in range(4)] + [("every-type", s) for s in range(3)]
)
async def test_native_merge_equals_python_merge(
    twins: tuple[ClickHouseSink, ClickHouseSink], workload: str, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    schema, make, rows = WORKLOADS[workload]
    merged = await _run_random(twins, schema, make, seed, rows, monkeypatch)
    assert merged.count(True) >= 30, merged


async def test_a_tie_only_python_orders_is_merged_in_python(
    twins: tuple[ClickHouseSink, ClickHouseSink], monkeypatch: pytest.MonkeyPatch
) -> None:
    native, python = twins
    for sink in twins:
        await sink.ensure_table(WIDE)
    python._tables[WIDE.qualified_name].native = None
    merged = _count_native(native, monkeypatch)
    key = {"pk": "k"}, {"ck": uuid.UUID(int=1)}

    def event(value: float, ts: int, offset: int) -> ChangeEvent:
        cells: dict[str, ColumnChange] = {"f": Cell(value, ts), "txt": Cell(f"at {offset}", ts)}
        source = SourcePosition("n", Position(1, offset))
        return ChangeEvent(Op.UPSERT, "ks", "wide", key[0], source, key[1], cells, Liveness(ts))

    # NaN first, then 2.0 at the same writetime: Python's order (NaN neither above nor below)
    # keeps NaN, ClickHouse's would not; the core declines that batch and Python merges it.
    for number, batch in enumerate([[event(math.nan, 5, 1)], [event(2.0, 5, 2)], [event(3.0, 6, 3)]]):
        for sink in twins:
            await sink.write(Batch(batch, Checkpoint("nan", "n", Position(1, number))))
    assert merged == [True, False, True]
    states = [await _states(sink, WIDE) for sink in twins]
    f = [n for n, _ in native._tables[WIDE.qualified_name].sql.state_columns].index("f")
    assert [state[0][f] for state in states] == [3.0, 3.0]
    assert [state[0][f + 1] for state in states] == [6, 6]
    assert states[0] == states[1]
