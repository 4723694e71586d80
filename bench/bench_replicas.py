"""Replicas: sink writes per source change at RF=3, with ``replicaDedup`` off and on, and takeover time.

A three-node Cassandra 5.0 cluster runs on this machine (127.0.0.1-3, commitlog v8, RF=3), with
three runtimes (one per node, in this process) writing into one durable PostgreSQL. For each
setting a fresh table gets ``CHANGES`` single-row upserts (distinct keys, then a quarter of them
updated) at QUORUM from 32 concurrent requests, while the runtimes run; the run ends when
PostgreSQL holds every row with its last value. Reported:

* ``replicas.writes_per_change.off|on``: events the three runtimes committed to the sink, over the
  changes made (3.0 means every replica's runtime wrote every change; the goal with dedup is <= 1.2);
* ``replicas.drain.off|on``: changes per second from the first write until the sink held them all
  (the ratio between the two is what dedup saves the sink; rates drift with the machine);
* ``replicas.takeover``: with dedup on, one runtime stops while its node serves on; seconds from
  then until the sink holds the ``TAKEOVER_CHANGES`` changes written after it, every one of them
  (``replicaTakeoverSeconds`` is 10 here, the margin 2 s: all nodes share this machine's clock).

``HEADRACE_BENCH_REPLICA_CHANGES`` sets ``CHANGES`` (default 20,000).
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

from devservices.cassandra import CassandraCluster, running_cluster
from devservices.postgres import running_postgres
from pipeline_runtime.app import Runtime, RuntimeOptions
from pipeline_runtime.config.loader import parse_pipeline

CHANGES = int(os.environ.get("HEADRACE_BENCH_REPLICA_CHANGES", "20000"))
TAKEOVER_CHANGES = 2_000
TAKEOVER_SECONDS = 10
RF3 = "{'class': 'SimpleStrategy', 'replication_factor': 3}"


def runtime(cluster: CassandraCluster, index: int, table: str, dsn: str, folder: Path, *, dedup: bool) -> Runtime:
    node = cluster.nodes[index]
    (folder / "secrets" / "pg").mkdir(parents=True, exist_ok=True)
    (folder / "secrets" / "pg" / "dsn").write_text(dsn)
    spec = {
        "source": {
            "cassandra": {"contactPoint": node.host, "port": node.port},
            "tables": [{"keyspace": "bench", "table": table}],
            "snapshot": {"mode": "never"},
            "replicaDedup": dedup,
            "replicaMarginSeconds": 2,
            "replicaTakeoverSeconds": TAKEOVER_SECONDS,
        },
        "sinks": [{"name": "pg", "type": "postgres", "connectionSecret": {"name": "pg", "key": "dsn"}}],
    }
    pipeline = parse_pipeline({"kind": "CDCPipeline", "metadata": {"name": f"bench-{table}"}, "spec": spec})
    options = RuntimeOptions(
        node=f"cassandra-{index}",
        cdc_raw=node.cdc_raw_dir,
        secrets_dir=folder / "secrets",
        http_host="127.0.0.1",
        http_port=0,
        dead_letter_dir=folder / "dead",
    )
    return Runtime(pipeline, options)


def write(cluster: CassandraCluster, table: str, keys: range, version: int) -> None:
    from cassandra import ConsistencyLevel  # noqa: PLC0415
    from cassandra.concurrent import execute_concurrent_with_args  # noqa: PLC0415

    session = cluster.session()
    insert = session.prepare(f"INSERT INTO bench.{table} (k, v) VALUES (?, ?)")
    insert.consistency_level = ConsistencyLevel.QUORUM
    execute_concurrent_with_args(
        session, insert, [(k, version) for k in keys], concurrency=32, raise_on_first_error=True
    )


async def landed(dsn: str, table: str, rows: int, total: int, deadline_s: float = 600) -> None:
    """Until the sink holds ``rows`` rows whose values sum to ``total`` (every change, the last one of each key)."""
    deadline = time.monotonic() + deadline_s
    got: Any = None
    while time.monotonic() < deadline:
        connection = await asyncpg.connect(dsn)
        try:
            got = await connection.fetchrow(f'SELECT count(*) AS n, sum(v) AS s FROM "bench"."{table}"')
        except asyncpg.UndefinedTableError:
            got = None
        finally:
            await connection.close()
        if got is not None and (got["n"], got["s"]) == (rows, total):
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"the sink holds {got}, expected {rows} rows summing to {total}")


async def one_setting(cluster: CassandraCluster, dsn: str, folder: Path, *, dedup: bool) -> list[dict[str, Any]]:
    table = f"t_{'on' if dedup else 'off'}"
    cluster.session().execute(f"CREATE TABLE bench.{table} (k int PRIMARY KEY, v int) WITH cdc = true")
    runtimes = [runtime(cluster, i, table, dsn, folder / f"{table}-{i}", dedup=dedup) for i in range(3)]
    stops = [asyncio.Event() for _ in runtimes]
    tasks = [asyncio.create_task(r.run(s)) for r, s in zip(runtimes, stops, strict=True)]
    setting = "on" if dedup else "off"
    results: list[dict[str, Any]] = []
    try:
        await asyncio.sleep(3)  # the runtimes connect and open the sink
        updated = CHANGES // 4
        started = time.monotonic()
        await asyncio.to_thread(write, cluster, table, range(CHANGES - updated), 1)
        await asyncio.to_thread(write, cluster, table, range(updated), 2)
        await landed(dsn, table, CHANGES - updated, CHANGES)
        drained = time.monotonic() - started
        await asyncio.sleep(3)  # late duplicates land (they change nothing), counts settle
        written = sum(r.runner.progress.events_committed for r in runtimes if r.runner is not None)
        results.append(
            {
                "benchmark": f"replicas.writes_per_change.{setting}",
                "metric": "sink_writes_per_change",
                "value": round(written / CHANGES, 3),
                "unit": "x",
                "note": f"{written:,} events committed by 3 runtimes for {CHANGES:,} changes, RF=3",
            }
        )
        results.append(
            {
                "benchmark": f"replicas.drain.{setting}",
                "metric": "changes_per_second",
                "value": round(CHANGES / drained, 1),
                "unit": "1/s",
                "note": f"first write to the last change in durable PostgreSQL, {drained:.1f} s",
            }
        )
        if dedup:
            stops[2].set()
            await asyncio.wait_for(tasks[2], 30)
            stopped = time.monotonic()
            keys = range(CHANGES, CHANGES + TAKEOVER_CHANGES)
            await asyncio.to_thread(write, cluster, table, keys, 3)
            await landed(dsn, table, CHANGES - updated + TAKEOVER_CHANGES, CHANGES + 3 * TAKEOVER_CHANGES)
            results.append(
                {
                    "benchmark": "replicas.takeover",
                    "metric": "seconds",
                    "value": round(time.monotonic() - stopped, 1),
                    "unit": "s",
                    "note": f"a runtime stops; until all {TAKEOVER_CHANGES:,} later changes are in the sink "
                    f"(replicaTakeoverSeconds {TAKEOVER_SECONDS})",
                }
            )
    finally:
        for stop in stops:
            stop.set()
        await asyncio.gather(*(asyncio.wait_for(t, 30) for t in tasks), return_exceptions=True)
    return results


def run() -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        base = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="headrace-bench-replicas-")))
        cluster = stack.enter_context(running_cluster(base / "cluster", 3, "NONE"))
        cluster.session().execute(f"CREATE KEYSPACE bench WITH replication = {RF3}")
        pg_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="headrace-bench-replicas-pg-")))
        pg_dir.chmod(0o777)
        postgres = stack.enter_context(running_postgres(pg_dir, durable=True))
        dsn = postgres.create_database("replicas")
        for dedup in (False, True):
            rows = asyncio.run(one_setting(cluster, dsn, base, dedup=dedup))
            for row in rows:
                row |= {"server": "postgres", "settings": postgres.server_settings()}
            results += rows
    return results
