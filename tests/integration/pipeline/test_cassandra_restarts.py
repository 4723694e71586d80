"""The whole runtime while its Cassandra restarts gracefully three times: nothing lost, cdc_raw does not grow.

Each graceful stop of Cassandra 5.0 usually leaves its spare commitlog segment
in cdc_raw (docs/commitlog.md, "cdc_raw's files over time"). The runtime keeps
running through the restarts, replicates every row to PostgreSQL, and its
cleanup reclaims those segments, so ``headrace_cdc_raw_bytes`` stays flat.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import yaml

from devservices.cassandra import CassandraNode
from pipeline_runtime.app import Runtime, RuntimeOptions
from pipeline_runtime.config.loader import load_pipeline
from pipeline_runtime.source.commitlog.descriptor import SEGMENT_NAME
from tests.waiting import wait_until

pytestmark = [pytest.mark.cassandra, pytest.mark.postgres]


def segment_ids(cdc_raw: Path) -> list[int]:
    return sorted(int(m.group(2)) for m in map(SEGMENT_NAME.match, (p.name for p in cdc_raw.iterdir())) if m)


def left_behind(node: CassandraNode, started_ms: int) -> set[int]:
    """Segments of earlier runs without an idx and no longer in the commitlog directory: what a stop left."""
    return {
        i
        for i in segment_ids(node.cdc_raw_dir)
        if i < started_ms
        and not any(node.cdc_raw_dir.glob(f"CommitLog-*-{i}_cdc.idx"))
        and not any(node.commitlog_dir.glob(f"CommitLog-*-{i}.log"))
    }


async def test_runtime_through_three_graceful_cassandra_restarts(tmp_path: Path, postgres_dsn: str) -> None:
    node = CassandraNode(workdir=tmp_path / "cassandra", compat_mode="CASSANDRA_4")
    node.start()
    try:
        keyspace = "restarts"
        session = node.session()
        session.execute(
            f"CREATE KEYSPACE {keyspace} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}"
        )
        session.execute(f"CREATE TABLE {keyspace}.events (id int PRIMARY KEY, body text) WITH cdc = true")
        (tmp_path / "secrets" / "pg").mkdir(parents=True)
        (tmp_path / "secrets" / "pg" / "dsn").write_text(postgres_dsn)
        config = tmp_path / "pipeline.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "headrace.io/v1alpha1",
                    "kind": "CDCPipeline",
                    "metadata": {"name": "restarts", "namespace": "test"},
                    "spec": {
                        "source": {
                            "cassandra": {"contactPoint": node.host, "port": node.port},
                            "tables": [{"keyspace": keyspace, "table": "*"}],
                        },
                        "sinks": [
                            {
                                "name": "pg",
                                "type": "postgres",
                                "connectionSecret": {"name": "pg", "key": "dsn"},
                                "batchSize": 50,
                                "flushIntervalMs": 100,
                            }
                        ],
                    },
                }
            )
        )
        options = RuntimeOptions(
            node="node-0",
            cdc_raw=node.cdc_raw_dir,
            secrets_dir=tmp_path / "secrets",
            http_host="127.0.0.1",
            http_port=0,
            dead_letter_dir=tmp_path / "dead",
        )
        runtime = Runtime(load_pipeline(config), options)
        stop = asyncio.Event()
        task = asyncio.create_task(runtime.run(stop))
        written: set[int] = set()

        async def pg_ids() -> set[int]:
            connection = await asyncpg.connect(postgres_dsn)
            try:
                return {r["id"] for r in await connection.fetch(f"SELECT id FROM {keyspace}.events")}
            except asyncpg.UndefinedTableError:
                return set()
            finally:
                await connection.close()

        async def write_and_replicate(generation: int) -> None:
            insert = session.prepare(f"INSERT INTO {keyspace}.events (id, body) VALUES (?, ?)")
            ids = range(generation * 1000, generation * 1000 + 150)
            for i in ids:
                await asyncio.to_thread(session.execute, insert, (i, f"body {i}"))
            written.update(ids)

            async def replicated() -> Any:
                got = await pg_ids()
                return True if got == written else (len(got), len(written))

            await wait_until(replicated, 90, f"generation {generation} in PostgreSQL")

        def gauge() -> float:
            runtime.node_status()  # what the observer does every interval: refresh the gauges
            value = runtime.metrics.registry.get_sample_value(
                "headrace_cdc_raw_bytes", {"pipeline": "restarts", "node": "node-0"}
            )
            assert value is not None
            return value

        try:
            await write_and_replicate(0)
            backlog = [gauge()]
            leaked: set[int] = set()
            generation = 0
            # Three restarts, more (up to six) until one left its spare segment behind, so the reclaim is exercised.
            while generation < 3 or (not leaked and generation < 6):
                generation += 1
                assert node.process is not None and node.process.process is not None
                await asyncio.to_thread(node.stop)
                assert node.process.process.returncode != -signal.SIGKILL  # drained: a graceful stop
                started_ms = int(time.time() * 1000)
                await asyncio.to_thread(node.start)
                session = node.session()
                leaked.update(left_behind(node, started_ms))
                await write_and_replicate(generation)

                async def only_this_run(started_ms: int = started_ms, session: Any = session) -> Any:
                    # The runner deletes after each commit: segments of earlier runs, COMPLETED and
                    # committed or left empty by the stop, go; only the running Cassandra's stay.
                    older = [i for i in segment_ids(node.cdc_raw_dir) if i < started_ms]
                    if older:
                        # Cleanup runs after a commit: give the runner one more (the rule, not the data, is tested).
                        await asyncio.to_thread(session.execute, f"INSERT INTO {keyspace}.events (id) VALUES (-1)")
                        written.add(-1)
                        return older
                    return True

                await wait_until(
                    only_this_run, 90, f"no segment of an earlier run in cdc_raw after restart {generation}"
                )
                backlog.append(gauge())
            assert leaked, "no graceful stop left a segment behind: the reclaim was not exercised"
            assert not set(segment_ids(node.cdc_raw_dir)) & leaked
            assert runtime.runner is not None and runtime.runner.lifecycle.state.value == "running"
            await wait_until(lambda: _equal(pg_ids, written), 90, "every row in PostgreSQL")
            assert {r.id for r in session.execute(f"SELECT id FROM {keyspace}.events")} == written
            deleted = runtime.metrics.registry.get_sample_value(
                "headrace_segments_deleted_total", {"pipeline": "restarts", "node": "node-0"}
            )
            assert deleted is not None and deleted >= 3
            reclaimed = runtime.metrics.registry.get_sample_value(
                "headrace_segments_reclaimed_total", {"pipeline": "restarts", "node": "node-0"}
            )
            assert reclaimed is not None and reclaimed >= len(leaked)
            # Three restarts that leaked a full 1 MiB segment each would add 3 MiB.
            assert backlog[-1] <= backlog[0] + 64 * 1024, backlog
        finally:
            stop.set()
            await asyncio.wait_for(task, 60)
    finally:
        node.stop()


async def _equal(read: Callable[[], Any], expected: set[int]) -> Any:
    got = await read()
    return True if got == expected else (len(got), len(expected))
