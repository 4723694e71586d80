"""The merge inside ClickHouse (staged deltas, one INSERT ... SELECT) stores what the Python merge stores.

Two sinks on the chdb engine get the same batches of random upserts over a
few rows with few distinct writetimes, so equal-writetime tie-breaks
(tombstone, expiry, value order) happen often: one merges inside ClickHouse
(the compiled stage encoder), the other in Python (the flat path and, for
batches that repeat a row, the general path). The newest stored state of every
row must be the same, cell for cell, and so must the reader's view.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import pytest

from pipeline_runtime.events import Position, SourcePosition
from pipeline_runtime.native import native_module
from pipeline_runtime.sinks.base import Batch, Checkpoint, TableNaming
from pipeline_runtime.sinks.clickhouse import ClickHouseSink
from pipeline_runtime.sinks.clickhouse import sink as clickhouse_sink
from pipeline_runtime.sinks.clickhouse.flat import read_columns
from pipeline_runtime.sinks.clickhouse.sql import ident
from tests.unit.sinks.test_ch_flat import SCHEMA, random_event

pytestmark = pytest.mark.skipif(
    native_module() is None, reason="headrace_native is not built: `make dev` (pip install ./native) builds it"
)


async def _states(sink: ClickHouseSink) -> list[tuple[Any, ...]]:
    table = sink._tables[SCHEMA.qualified_name].sql
    columns = ", ".join(ident(n) for n in [*read_columns(table.layout), "is_deleted"])
    keys = ", ".join(ident(n) for n in table.layout.key_names)
    result = await sink._call(
        sink.client.query,
        f"SELECT * FROM (SELECT {columns} FROM {table.state} ORDER BY _version DESC LIMIT 1 BY {keys}) ORDER BY {keys}",
    )
    return [tuple(row) for row in result.result_rows]


async def _view(sink: ClickHouseSink) -> list[tuple[Any, ...]]:
    table = sink._tables[SCHEMA.qualified_name].sql
    result = await sink._call(sink.client.query, f"SELECT * FROM {table.view} ORDER BY pk, ck")
    return [tuple(row) for row in result.result_rows]


@pytest.mark.parametrize("seed", range(4))
async def test_staged_merge_equals_python_merge(chdb_dsn: str, seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clickhouse_sink, "STAGED_MIN_ROWS", 1)
    staged = ClickHouseSink("staged", chdb_dsn, TableNaming(target=f"staged_{seed}"))
    python = ClickHouseSink("python", chdb_dsn, TableNaming(target=f"python_{seed}"))
    for sink in (staged, python):
        await sink.open()
        await sink.ensure_table(SCHEMA)
    python._tables[SCHEMA.qualified_name].stage = None  # merge in Python
    assert staged._tables[SCHEMA.qualified_name].stage is not None
    rng = random.Random(seed)
    written_staged = 0
    try:
        for number in range(40):
            keys = rng.sample(range(8), rng.randint(1, 8))
            if number % 10 == 9:
                keys += keys[:1]  # a repeated row: the general path, for both sinks
            # Distinct positions, as a commitlog gives: the insert deduplication token is made of them.
            events = [
                dataclasses.replace(random_event(rng, key), source=SourcePosition("n", Position(number, i)))
                for i, key in enumerate(keys)
            ]
            for sink in (staged, python):
                checkpoint = Checkpoint(f"staged-merge-{seed}", "n", Position(1, number))
                await sink.write(Batch(events, checkpoint))
            written_staged += len(set(keys)) == len(keys)
        assert written_staged >= 30
        assert await _states(staged) == await _states(python)
        view = await _view(staged)
        assert view == await _view(python)
        assert view, "the random workload left no live row to compare"
    finally:
        for sink in (staged, python):
            await sink.close()
