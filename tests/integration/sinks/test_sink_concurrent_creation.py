"""Several runtimes (every replica's, every pipeline's) create the same tables at the same moment.

RF=3 starts three runtimes of one pipeline together, over the same sink: opening (checkpoint
tables), creating a table's storage and view, and adding a column must succeed in each of them,
whoever wins a race; a lost creation race is never fatal.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid

import pytest

from pipeline_runtime.cql.schema import ColumnKind, TableSchema
from pipeline_runtime.events import Cell, ChangeEvent, Liveness, Op, Position, SourcePosition
from pipeline_runtime.sinks.base import Batch, Checkpoint
from tests.integration.sinks.conftest import Harness
from tests.integration.sinks.workload import column

pytestmark = [pytest.mark.postgres, pytest.mark.clickhouse]

RUNTIMES = 3


def table(name: str, *extra: str) -> TableSchema:
    columns = [column("id", "int", ColumnKind.PARTITION_KEY, 0), column("ck", "int", ColumnKind.CLUSTERING, 0)]
    columns += [column("v", "text"), column("s", "text", ColumnKind.STATIC)]
    columns += [column(n, "bigint") for n in extra]
    return TableSchema("ks", name, uuid.uuid4(), tuple(columns))


# TimescaleDB runs the PostgreSQL sink's DDL under the same lock; its test server (PGlite) serves
# one session at a time, so three concurrent runtimes cannot be shown there.
@pytest.mark.parametrize("harness", ["postgres", "clickhouse", "clickhouse-python"], indirect=True)
async def test_runtimes_open_and_create_the_same_tables_at_once(harness: Harness) -> None:
    sinks = [harness.make(f"sink-{n}") for n in range(RUNTIMES)]
    pipeline = f"race-{uuid.uuid4().hex[:8]}"  # the engine's checkpoint table is shared by every test
    await asyncio.gather(*(s.open() for s in sinks))
    try:
        for round_ in range(4):
            schema = table(f"t{round_}")
            await asyncio.gather(*(s.ensure_table(schema) for s in sinks))
            # Then a new column, seen by every runtime at the same moment.
            grown = dataclasses.replace(schema, columns=table(f"t{round_}", "added").columns)
            await asyncio.gather(*(s.ensure_table(grown) for s in sinks))
            for n, sink in enumerate(sinks):
                event = ChangeEvent(
                    Op.UPSERT,
                    "ks",
                    schema.name,
                    {"id": n},
                    SourcePosition(f"node-{n}", Position(1, 10 + n)),
                    {"ck": 0},
                    {"v": Cell(f"from {n}", 100), "added": Cell(n, 100)},
                    Liveness(100),
                )
                await sink.write(Batch([event], Checkpoint(pipeline, f"node-{n}", Position(1, 10 + n))))
            rows = await harness.rows(grown)
            assert sorted((r["id"], r["v"], r["added"]) for r in rows) == [(n, f"from {n}", n) for n in range(RUNTIMES)]
        committed = [await s.committed_positions(pipeline) for s in sinks]
        assert committed[0] == {f"node-{n}": Position(1, 10 + n) for n in range(RUNTIMES)}
    finally:
        await asyncio.gather(*(s.close() for s in sinks))
