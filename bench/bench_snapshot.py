"""Snapshot throughput: a pre-loaded table read through CQL into PostgreSQL and into ClickHouse.

A table of ``ROWS`` rows (10 columns: key, clustering key, 7 scalars of mixed
types and one non-frozen set) is loaded into a local Cassandra 5.0 node
before anything else runs. Then, throttle off, the runtime's own code
(``SnapshotRun`` over ``SnapshotReader``, the node's primary ranges, pages of
``FETCH_SIZE``) snapshots it into each sink, and reads without a sink:

* ``snapshot.cql_plain``: the baseline, the same rows paged with a plain
  ``SELECT *`` through the driver's default (compiled) result decoding, rows
  as tuples and thrown away: what Cassandra and the driver cost at least;
* ``snapshot.read``: the snapshot's reading alone (``WRITETIME``/``TTL`` of
  every column, rows through the driver's compiled decoding except the
  per-element lists, turned into change events);
* ``snapshot.postgres`` / ``snapshot.clickhouse``: end to end, pages written
  with their progress marks. The time spent waiting for pages and inside the
  sink's write is reported beside the rate (reading overlaps writing: the next
  page is fetched while one is written).

Cassandra, PostgreSQL (durable defaults) and chdb all run on this machine, so
the figures are what one node's runtime reaches with Cassandra beside it.
Ratios to the baseline, measured in the same run, carry over between
machines better than the rates. After each sink run the sink is checked:
every row is there (count and a column sum against Cassandra's).
``HEADRACE_BENCH_SNAPSHOT_ROWS`` sets the table size (default 1,000,000).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
from prometheus_client import CollectorRegistry

from devservices.cassandra import CassandraNode, default_heap_mib, running_cassandra
from devservices.clickhouse import chdb_client, engine_path
from devservices.postgres import running_postgres
from pipeline_runtime.cql.schema import TableSchema
from pipeline_runtime.events import ChangeEvent
from pipeline_runtime.memory import tune_garbage_collector
from pipeline_runtime.observability.metrics import create_metrics
from pipeline_runtime.pipeline.snapshot import SnapshotRun, SnapshotSettings
from pipeline_runtime.sinks.base import Batch, Checkpoint, Sink, TableNaming
from pipeline_runtime.sinks.clickhouse import ClickHouseSink
from pipeline_runtime.sinks.postgres import PostgresSink
from pipeline_runtime.source.schema.driver import DriverSchemaSource
from pipeline_runtime.source.schema.registry import SchemaRegistry
from pipeline_runtime.source.snapshot import SnapshotReader

ROWS = int(os.environ.get("HEADRACE_BENCH_SNAPSHOT_ROWS", "1000000"))
#: Rows per partition: partitions of a few rows, as most tables have.
PER_PARTITION = 8
FETCH_SIZE = 5000
KEYSPACE = "bench"
TABLE = (
    "CREATE TABLE bench.t (k int, ck int, name text, n bigint, x double, flag boolean, at timestamp,"
    " id uuid, note text, tags set<text>, PRIMARY KEY (k, ck))"
)


class _Identity:
    """No masking, no mapping: the events as read."""

    def table(self, schema: TableSchema) -> TableSchema:
        return schema

    def event(self, event: ChangeEvent) -> ChangeEvent:
        return event


def load(node: CassandraNode) -> float:
    """Write ``ROWS`` rows, one unlogged batch per partition; returns the seconds it took."""
    import datetime as dt  # noqa: PLC0415
    import uuid  # noqa: PLC0415

    from cassandra.concurrent import execute_concurrent  # noqa: PLC0415
    from cassandra.query import BatchStatement, BatchType  # noqa: PLC0415

    session = node.session()
    session.execute(
        f"CREATE KEYSPACE {KEYSPACE} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}"
    )
    session.execute(TABLE)
    insert = session.prepare(
        "INSERT INTO bench.t (k, ck, name, n, x, flag, at, id, note, tags) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )

    def row(i: int) -> tuple[Any, ...]:
        return (
            i // PER_PARTITION, i % PER_PARTITION, f"name {i}", i * 7, i / 3, i % 2 == 0,
            dt.datetime(2024, 1, 1) + dt.timedelta(seconds=i), uuid.UUID(int=i + 1), f"note {i % 97}",
            {f"t{i % 5}", f"u{i % 3}"},
        )  # fmt: skip

    def partition(k: int) -> tuple[BatchStatement, tuple[()]]:
        batch = BatchStatement(BatchType.UNLOGGED)
        for i in range(k * PER_PARTITION, min((k + 1) * PER_PARTITION, ROWS)):
            batch.add(insert, row(i))
        return batch, ()

    started = time.monotonic()
    partitions = -(-ROWS // PER_PARTITION)
    chunk = 2_000
    for first in range(0, partitions, chunk):
        statements = [partition(k) for k in range(first, min(first + chunk, partitions))]
        execute_concurrent(session, statements, concurrency=64, raise_on_first_error=True)
    seconds = time.monotonic() - started
    node.stop_driver()
    return seconds


def plain_read(node: CassandraNode, schema: TableSchema) -> float:
    """The baseline: every row through a plain paged SELECT, compiled decoding; returns rows/s."""
    from cassandra.cluster import EXEC_PROFILE_DEFAULT  # noqa: PLC0415
    from cassandra.query import SimpleStatement, tuple_factory  # noqa: PLC0415

    session = node.session()
    profile = session.execution_profile_clone_update(EXEC_PROFILE_DEFAULT, row_factory=tuple_factory)
    statement = SimpleStatement(f"SELECT * FROM {schema.keyspace}.{schema.name}", fetch_size=FETCH_SIZE)
    started = time.monotonic()
    rows = sum(1 for _ in session.execute(statement, execution_profile=profile))
    seconds = time.monotonic() - started
    if rows != ROWS:
        raise AssertionError(f"the baseline read {rows} rows, the table holds {ROWS}")
    return rows / seconds


async def snapshot_into(node: CassandraNode, schema: TableSchema, sink: Sink | None) -> dict[str, float]:
    """Snapshot the table with the runtime's code into ``sink`` (None: read only); seconds spent where."""
    session = node.session()
    timings = {"read": 0.0, "write": 0.0, "rows": 0.0}

    def open_reader(table: TableSchema) -> SnapshotReader:
        reader = SnapshotReader(session, table, "node1", FETCH_SIZE, local_address=node.host)
        page = reader.page

        def timed_page(*args: Any) -> Any:
            started = time.monotonic()
            try:
                return page(*args)
            finally:
                timings["read"] += time.monotonic() - started

        reader.page = timed_page  # type: ignore[method-assign,assignment]
        return reader

    marks: dict[str, Any] = {}

    async def deliver(events: list[ChangeEvent], checkpoint: Checkpoint) -> None:
        started = time.monotonic()
        if sink is not None:
            await sink.write(Batch(events, checkpoint))
        marks[checkpoint.node] = checkpoint.position
        timings["write"] += time.monotonic() - started

    async def read_marks() -> dict[str, dict[str, Any]]:
        return {"bench": dict(marks)}

    if sink is not None:
        await sink.open()
        await sink.ensure_table(schema)
    run = SnapshotRun(
        pipeline="bench",
        node="node1",
        tables=[schema],
        open_reader=open_reader,
        transform=_Identity(),
        deliver=deliver,
        read_marks=read_marks,
        metrics=create_metrics(CollectorRegistry()),
        settings=SnapshotSettings(rows_per_second=0),
    )
    started = time.monotonic()
    try:
        await run.run()
    finally:
        if sink is not None:
            await sink.close()
    timings["wall"] = time.monotonic() - started
    timings["rows"] = run.progress[schema.qualified_name].rows_read
    if timings["rows"] != ROWS:
        raise AssertionError(f"the snapshot read {timings['rows']} rows, the table holds {ROWS}")
    return timings


def expected_sum() -> int:
    return sum(i * 7 for i in range(ROWS))


async def postgres_landed(dsn: str) -> tuple[int, int]:
    connection = await asyncpg.connect(dsn)
    try:
        row = await connection.fetchrow(f'SELECT count(*), sum(n) FROM "{KEYSPACE}"."t"')
    finally:
        await connection.close()
    assert row is not None
    return int(row[0]), int(row[1] or 0)


def clickhouse_landed(database: str) -> tuple[int, int]:
    client = chdb_client(engine_path())
    count, total = client.query(f"SELECT count(), sum(n) FROM `{database}`.`t`").result_rows[0]
    return int(count), int(total or 0)


def _row(benchmark: str, timings: dict[str, float], baseline: float, **extra: Any) -> dict[str, Any]:
    rate = timings["rows"] / timings["wall"]
    note = f"{rate / baseline:.2f}x the plain read"
    if "write" in timings and benchmark != "snapshot.read":
        read, write, wall = timings["read"], timings["write"], timings["wall"]
        note += f"; reading pages {read:.0f} s, sink writes {write:.0f} s, of {wall:.0f} s"
    return {
        "benchmark": benchmark,
        "metric": "rows_per_second",
        "value": round(rate, 1),
        "unit": "rows/s",
        "note": note,
        "rows": ROWS,
        "fetch_size": FETCH_SIZE,
        "seconds": {k: round(v, 2) for k, v in timings.items()},
        "ratio_to_plain_read": round(rate / baseline, 3),
    } | extra


def run() -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    # The snapshot runs in this process: with the garbage collector tuned as `headrace run` tunes it.
    tune_garbage_collector()
    with contextlib.ExitStack() as stack:
        cassandra_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="headrace-bench-cassandra-")))
        # Cassandra sizes its heap as it would on this machine (the tests run it small).
        node = stack.enter_context(
            running_cassandra(cassandra_dir, "NONE", commitlog_segment_mib=32, heap_mib=default_heap_mib())
        )
        load_seconds = load(node)
        results.append(
            {
                "benchmark": "snapshot.load",
                "metric": "rows_per_second",
                "value": round(ROWS / load_seconds, 1),
                "unit": "rows/s",
                "note": f"{ROWS:,} rows, one unlogged batch per partition, concurrency 64; for reference",
            }
        )
        registry = SchemaRegistry(DriverSchemaSource(node.session()), selector=lambda s: s.keyspace == KEYSPACE)
        registry.refresh()
        schema = next(s for s in registry.schemas.values() if (s.keyspace, s.name) == (KEYSPACE, "t"))
        baseline = plain_read(node, schema)
        results.append(
            {
                "benchmark": "snapshot.cql_plain",
                "metric": "rows_per_second",
                "value": round(baseline, 1),
                "unit": "rows/s",
                "note": "baseline: SELECT *, compiled decoding, rows thrown away",
                "rows": ROWS,
            }
        )
        read = asyncio.run(snapshot_into(node, schema, None))
        results.append(_row("snapshot.read", read, baseline))

        pg_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="headrace-bench-snap-pg-")))
        pg_dir.chmod(0o777)
        postgres = stack.enter_context(running_postgres(pg_dir, durable=True))
        dsn = postgres.create_database("snapshot")
        timings = asyncio.run(snapshot_into(node, schema, PostgresSink("pg", dsn, TableNaming())))
        count, total = asyncio.run(postgres_landed(dsn))
        _check("postgres", count, total)
        results.append(
            _row(
                "snapshot.postgres",
                timings,
                baseline,
                server="postgres",
                settings=postgres.server_settings(),
            )
        )

        # chdb holds one data folder per process (the sinks benchmark's too): a database of its own.
        sink = ClickHouseSink("ch", f"chdb://{engine_path()}", TableNaming(target="bench_snapshot"))
        timings = asyncio.run(snapshot_into(node, schema, sink))
        _check("clickhouse", *clickhouse_landed("bench_snapshot"))
        results.append(_row("snapshot.clickhouse", timings, baseline, server="chdb"))
    return results


def _check(sink: str, count: int, total: int) -> None:
    if (count, total) != (ROWS, expected_sum()):
        raise AssertionError(f"{sink}: {count} rows, sum(n) {total}; Cassandra holds {ROWS} rows, sum {expected_sum()}")
