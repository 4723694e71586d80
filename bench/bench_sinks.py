"""Sink throughput: PostgreSQL upserts with the writetime guard, ClickHouse (chdb) inserts.

10-column rows (key + 9 mixed columns), batch sizes 1k and 10k. Each batch
holds fresh keys and then the same keys again with newer cells, so both the
insert path and the guarded update path of the merge are measured. Rows/s
counts events written, end to end through ``Sink.write`` (shaping, staging,
merge and checkpoint included). Starts its own PostgreSQL via devservices.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

from devservices.postgres import running_postgres
from pipeline_runtime.cql.schema import Column, ColumnKind, TableSchema
from pipeline_runtime.cql.types import parse_type
from pipeline_runtime.events import Cell, ChangeEvent, ColumnChange, Liveness, Op, Position, SourcePosition
from pipeline_runtime.sinks.base import Batch, Checkpoint, Sink, TableNaming
from pipeline_runtime.sinks.clickhouse import ClickHouseSink
from pipeline_runtime.sinks.postgres import PostgresSink

ROWS = 60_000
SIZES = (1_000, 10_000)


def schema() -> TableSchema:
    def col(name: str, cql: str, kind: ColumnKind = ColumnKind.REGULAR, position: int = -1) -> Column:
        return Column(name, parse_type(cql), kind, position)

    return TableSchema(
        "bench",
        "events",
        uuid.uuid4(),
        (
            col("id", "bigint", ColumnKind.PARTITION_KEY, 0),
            col("name", "text"),
            col("score", "int"),
            col("amount", "decimal"),
            col("ratio", "double"),
            col("active", "boolean"),
            col("created", "timestamp"),
            col("ref", "uuid"),
            col("note", "text"),
            col("count", "bigint"),
        ),
    )


def events(count: int, start: int, ts: int) -> list[ChangeEvent]:
    created = dt.datetime(2024, 1, 1)
    out = []
    for i in range(start, start + count):
        cells: dict[str, ColumnChange] = {
            "name": Cell(f"name-{i}", ts),
            "score": Cell(i % 1000, ts),
            "amount": Cell(Decimal(i) / 100, ts),
            "ratio": Cell(i / 7, ts),
            "active": Cell(i % 2 == 0, ts),
            "created": Cell(created, ts),
            "ref": Cell(uuid.UUID(int=i), ts),
            "note": Cell("x" * 20, ts),
            "count": Cell(i * 3, ts),
        }
        source = SourcePosition("bench", Position(ts, i))
        out.append(ChangeEvent(Op.UPSERT, "bench", "events", {"id": i}, source, {}, cells, Liveness(ts)))
    return out


async def measure(sink: Sink, size: int) -> float:
    await sink.open()
    await sink.ensure_table(schema())
    batches = []
    for start in range(0, ROWS // 2, size):
        batches.append(events(size, start, 1_000))
        batches.append(events(size, start, 2_000))  # same keys, newer cells: the guarded update path
    # The runtime holds one batch at a time, not all of them: keep the pre-built input out of
    # the garbage collector's full passes, which would otherwise scan it once per few batches.
    gc.collect()
    gc.freeze()
    began = time.perf_counter()
    written = 0
    for batch in batches:
        last = batch[-1].source.position
        await sink.write(Batch(batch, Checkpoint("bench", "bench", last)))
        written += len(batch)
    elapsed = time.perf_counter() - began
    gc.unfreeze()
    await sink.close()
    return written / elapsed


def run() -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="headrace-bench-pg-") as folder:
        Path(folder).chmod(0o777)
        with running_postgres(Path(folder)) as server:
            for size in SIZES:
                dsn = server.create_database(f"bench_{size}")
                rate = asyncio.run(measure(PostgresSink("pg", dsn, TableNaming()), size))
                results.append(_row("sinks.postgres_upsert", size, rate))
    with tempfile.TemporaryDirectory(prefix="headrace-bench-chdb-") as folder:
        for size in SIZES:
            sink = ClickHouseSink("ch", f"chdb://{folder}", TableNaming(target=f"bench_{size}"))
            rate = asyncio.run(measure(sink, size))
            results.append(_row("sinks.clickhouse_insert", size, rate))
    return results


def _row(benchmark: str, size: int, rate: float) -> dict[str, Any]:
    return {
        "benchmark": f"{benchmark}[{size}]",
        "metric": "rows_per_second",
        "value": round(rate, 1),
        "unit": "rows/s",
        "batch_size": size,
        "rows": ROWS,
        "columns": 10,
    }
