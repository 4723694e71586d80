"""Sink throughput: PostgreSQL upserts with the writetime guard, ClickHouse (chdb) inserts.

10-column rows (key + 9 mixed columns), batch sizes 1k and 10k. Each batch
holds fresh keys and then the same keys again with newer cells (other
values), so both the insert path and the guarded update path of the merge
are measured. Rows/s counts events written, end to end through
``Sink.write`` (shaping, staging, merge and checkpoint included).

PostgreSQL is started by devservices with its durable defaults (``fsync``,
``synchronous_commit``, ``full_page_writes`` on), as a production server
runs; a second server with those three off runs beside it, labelled
``unsafe``, and every case runs on both back to back, ``ROUNDS`` times, so
``durable/unsafe`` is a ratio of pairs measured together. Each figure is the
median over the rounds (the range is printed). The servers' own settings are
recorded in the JSON, and ``sinks.disk`` gives the file system's fdatasync
latency, which decides what durability costs.

ClickHouse runs each case twice, interleaved: ``sinks.clickhouse_insert`` with
one writer per row (RF=1, or ``replicaDedup`` on), and
``.settling`` with the settling read after every insert that replicated
keyspaces without dedup get (several runtimes may write one row at once;
docs/sinks.md, Replicas); ``settling/single`` is the ratio of the pairs.

After every case the sink is read back as its users read it (ClickHouse:
the view over FINAL): over all rows, the server counts rows and distinct keys
and sums a column that both writes set differently, and counts the names of
the newer write; and about 1,000 rows (both ends of every batch and a seeded
spread) are compared with what the newer write said, column by column
(``devservices.sinkview``). Anything else fails the benchmark
(``RowsDidNotLand``) with the first differences.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gc
import os
import random
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg

from devservices.clickhouse import chdb_client, engine_path
from devservices.postgres import running_postgres
from devservices.sinkview import compare, differences, keyed
from pipeline_runtime.cql.schema import Column, ColumnKind, TableSchema
from pipeline_runtime.cql.types import parse_type
from pipeline_runtime.events import Cell, ChangeEvent, ColumnChange, Liveness, Op, Position, SourcePosition
from pipeline_runtime.sinks.base import Batch, Checkpoint, Sink, TableNaming
from pipeline_runtime.sinks.clickhouse import ClickHouseSink
from pipeline_runtime.sinks.postgres import PostgresSink

ROWS = 60_000
SIZES = (1_000, 10_000)
FIRST_TS, SECOND_TS = 1_000, 2_000
SAMPLE = 800
#: Rounds of every case, interleaved; the median is reported, the range printed and in the JSON.
ROUNDS = 5


class RowsDidNotLand(AssertionError):
    """The sink does not hold what the benchmark wrote."""


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


def values(i: int, ts: int) -> dict[str, Any]:
    """Row ``i`` as the write at ``ts`` sets it (each write sets other values)."""
    return {
        "id": i,
        "name": f"name-{i}-{ts}",
        "score": (i + ts) % 1000,
        "amount": Decimal(i + ts) / 100,
        "ratio": i / 7 + ts,
        "active": (i + ts // 1000) % 2 == 0,
        "created": dt.datetime(2024, 1, 1) + dt.timedelta(seconds=i, milliseconds=ts),
        "ref": uuid.UUID(int=i * 10_000 + ts),
        "note": "x" * 20,
        "count": i * 3 + ts,
    }


def events(count: int, start: int, ts: int) -> list[ChangeEvent]:
    out = []
    for i in range(start, start + count):
        row = values(i, ts)
        cells: dict[str, ColumnChange] = {name: Cell(value, ts) for name, value in row.items() if name != "id"}
        source = SourcePosition("bench", Position(ts, i))
        out.append(ChangeEvent(Op.UPSERT, "bench", "events", {"id": i}, source, {}, cells, Liveness(ts)))
    return out


async def measure(sink: Sink, size: int) -> float:
    await sink.open()
    await sink.ensure_table(schema())
    batches = []
    for start in range(0, ROWS // 2, size):
        batches.append(events(size, start, FIRST_TS))
        batches.append(events(size, start, SECOND_TS))  # same keys, newer cells: the guarded update path
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


def sample_ids() -> list[int]:
    """Keys whose rows are compared column by column: both ends of every batch, and a seeded spread."""
    keys = ROWS // 2
    edges = {i for size in SIZES for start in range(0, keys, size) for i in (start, start + size - 1)}
    return sorted(edges | set(random.Random(7).sample(range(keys), SAMPLE)))


def expected_totals() -> dict[str, int]:
    keys = ROWS // 2
    return {
        "rows": keys,
        "keys": keys,
        "sum_count": sum(values(i, SECOND_TS)["count"] for i in range(keys)),
        "newer_names": keys,
    }


async def postgres_check(dsn: str) -> tuple[dict[str, int], list[dict[str, Any]]]:
    """Totals over every row (server side) and the sampled rows, read as users read the table."""
    connection = await asyncpg.connect(dsn)
    try:
        totals = await connection.fetchrow(
            'SELECT count(*) AS rows, count(DISTINCT id) AS keys, sum("count") AS sum_count,'
            f" count(*) FILTER (WHERE name LIKE '%-{SECOND_TS}') AS newer_names FROM bench.events"
        )
        rows = await connection.fetch("SELECT * FROM bench.events WHERE id = ANY($1::bigint[])", sample_ids())
    finally:
        await connection.close()
    return {k: int(v) for k, v in dict(totals).items()}, [dict(r) for r in rows]


def clickhouse_check(client: Any, database: str) -> tuple[dict[str, int], list[dict[str, Any]]]:
    """The same through the ClickHouse sink's view (FINAL, deleted rows hidden)."""
    result = client.query(
        f"SELECT count() AS rows, uniqExact(id) AS keys, sum(count) AS sum_count,"
        f" countIf(name LIKE '%-{SECOND_TS}') AS newer_names FROM `{database}`.events"
    )
    totals = dict(zip(result.column_names, (int(v) for v in result.result_rows[0]), strict=True))
    ids = ",".join(map(str, sample_ids()))
    result = client.query(f"SELECT * FROM `{database}`.events WHERE id IN ({ids})")
    rows = [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]
    return totals, rows


def check_landed(sink: str, totals: dict[str, int], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Fail unless every key is there once with the newer write, and the sampled rows equal it column by column."""
    want = expected_totals()
    if totals != want:
        raise RowsDidNotLand(f"{sink}: totals over all rows {totals}, expected {want}")
    table = schema()
    ids = sample_ids()
    expected = keyed(table, (values(i, SECOND_TS) for i in ids), sink=False)
    actual = keyed(table, rows, sink=True)
    result = compare("bench.events", sink, expected, actual)
    if not result.equal:
        raise RowsDidNotLand("\n".join(differences(result, expected, actual, source="written")))
    return {"rows_in_sink": totals["rows"], "rows_compared_column_by_column": len(ids)}


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _summary(benchmark: str, size: int, rates: list[float], extra: dict[str, Any]) -> dict[str, Any]:
    note = f"{min(rates):,.0f}-{max(rates):,.0f} over {len(rates)}"
    return _row(benchmark, size, _median(rates)) | {"rates": [round(r, 1) for r in rates], "note": note} | extra


def fdatasync_latency(folder: Path, seconds: float = 1.0) -> float:
    """Microseconds per 8 kB write + fdatasync in ``folder`` (what a durable commit waits for at least)."""
    path = folder / "fdatasync-probe"
    block = b"x" * 8192
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        count = 0
        began = time.perf_counter()
        while time.perf_counter() - began < seconds:
            os.pwrite(fd, block, 0)
            os.fdatasync(fd)
            count += 1
        return (time.perf_counter() - began) / count * 1e6
    finally:
        os.close(fd)
        path.unlink()


def run() -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    rates: dict[tuple[str, int], list[float]] = {(m, size): [] for m in ("durable", "unsafe") for size in SIZES}
    checks: dict[str, dict[str, Any]] = {}
    settings: dict[str, dict[str, str]] = {}
    with contextlib.ExitStack() as stack:
        servers = {}
        for mode in ("durable", "unsafe"):
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=f"headrace-bench-pg-{mode}-")))
            workdir.chmod(0o777)
            servers[mode] = stack.enter_context(running_postgres(workdir, durable=mode == "durable"))
            settings[mode] = servers[mode].server_settings()
            if mode == "durable":
                latency = fdatasync_latency(workdir)
                note = "8 kB write + fdatasync on the PostgreSQL data folder's file system"
                results.append(
                    {"benchmark": "sinks.disk", "metric": "fdatasync", "value": round(latency, 1), "unit": "µs"}
                    | {"note": note}
                )
        for round_number in range(ROUNDS):  # interleaved: a slow phase of the machine hits every case alike
            for size in SIZES:
                for mode, server in servers.items():
                    database = f"bench_{size}_{round_number}"
                    dsn = server.create_database(database)
                    rates[(mode, size)].append(asyncio.run(measure(PostgresSink("pg", dsn, TableNaming()), size)))
                    checks[mode] = check_landed(f"postgres[{mode},{size}]", *asyncio.run(postgres_check(dsn)))
                    server.psql(f'DROP DATABASE "{database}"')
    for size in SIZES:
        for mode in ("durable", "unsafe"):
            name = "sinks.postgres_upsert" if mode == "durable" else "sinks.postgres_upsert.unsafe_fsync_off"
            extra = checks[mode] | {"server": "postgres", "settings": settings[mode]}
            results.append(_summary(name, size, rates[(mode, size)], extra))
        results.append(
            _ratio_row(
                "sinks.postgres_upsert", "durable/unsafe", rates[("durable", size)], rates[("unsafe", size)], size
            )
        )
    ch_rates: dict[tuple[str, int], list[float]] = {(v, size): [] for v in ("single", "settling") for size in SIZES}
    # chdb holds one data folder per process, shared with the other benchmarks (each in databases of its own).
    folder = engine_path()
    client = chdb_client(Path(folder))
    version = client.query("SELECT version()").result_rows[0][0]
    # One writer per row (RF=1, or replicaDedup on), and the settling read after each insert that
    # replicated keyspaces without dedup need (docs/sinks.md, Replicas), interleaved.
    variants: dict[str, Any] = {"single": lambda: False, "settling": lambda: True}
    for round_number in range(ROUNDS):
        for size in SIZES:
            for variant, settle in variants.items():
                database = f"bench_{variant}_{size}_{round_number}"
                sink = ClickHouseSink("ch", f"chdb://{folder}", TableNaming(target=database), settle=settle)
                ch_rates[(variant, size)].append(asyncio.run(measure(sink, size)))
                checks["clickhouse"] = check_landed(f"clickhouse[{size}]", *clickhouse_check(client, database))
                client.command(f"DROP DATABASE `{database}` SYNC")
    engine = {"engine": f"chdb (ClickHouse {version}, in-process)"}
    for size in SIZES:
        extra = checks["clickhouse"] | {"server": "chdb", "settings": engine}
        results.append(_summary("sinks.clickhouse_insert", size, ch_rates[("single", size)], extra))
        results.append(_summary("sinks.clickhouse_insert.settling", size, ch_rates[("settling", size)], extra))
        results.append(
            _ratio_row(
                "sinks.clickhouse_insert",
                "settling/single",
                ch_rates[("settling", size)],
                ch_rates[("single", size)],
                size,
            )
        )
    return results


def _ratio_row(benchmark: str, metric: str, top: list[float], bottom: list[float], size: int) -> dict[str, Any]:
    """The median ratio of rates measured in pairs, back to back (one pair per round)."""
    ratios = [t / b for t, b in zip(top, bottom, strict=True)]
    return {
        "benchmark": f"{benchmark}[{size}]",
        "metric": metric,
        "value": round(_median(ratios), 2),
        "unit": "x",
        "note": f"{min(ratios):.2f}-{max(ratios):.2f}, pairs run back to back",
        "ratios": [round(r, 3) for r in ratios],
        "batch_size": size,
    }


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
