"""Three nodes, RF=3, three runtimes (one per node) into the same sinks: one truth in every sink.

Every change reaches three commitlogs and so three runtimes, which merge the same rows at nearly the
same moment. The workload runs from several clients at ONE, QUORUM and ALL, with partial updates of
hot rows, every delete kind and TTLs; one node is stopped mid-run and started again, so the writes it
missed reach it later by hinted handoff (with their original writetimes). The oracle: when writes have
stopped, each sink table equals Cassandra's ``SELECT *`` read at ALL. A table loaded before the
pipeline existed is snapshotted once: each runtime reads the ranges its node is primary replica for.

The node restart runs with ``replicaDedup`` off on the v7 cluster (every runtime writes every change)
and on on the v8 cluster (each change written by its primary replica's runtime, the stopped node's
ranges taken over while it is away). With dedup on, a runtime that stops while its node stays up has
its ranges taken over by the others (``test_a_silent_runtimes_...``), on both clusters; repeated
restarts with dedup on run in ``test_dedup_restarts.py`` (``make stress``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import clickhouse_connect
import pytest
import yaml
from cassandra import ConsistencyLevel
from cassandra.query import SimpleStatement

from devservices.cassandra import CassandraCluster, CassandraNode
from devservices.sinkview import clickhouse_rows, compare, differences, keyed, postgres_rows
from pipeline_runtime.app import Runtime
from pipeline_runtime.config.loader import load_pipeline
from pipeline_runtime.cql.schema import TableSchema
from tests.integration.pipeline.test_end_to_end import local_options, wait_until
from tests.integration.pipeline.test_snapshot_runtime import pipeline_yaml, snapshot_done
from tests.integration.snapshot.support import registry_schema

pytestmark = [pytest.mark.cassandra, pytest.mark.postgres, pytest.mark.clickhouse]

RF3 = "{'class': 'SimpleStrategy', 'replication_factor': 3}"
HOT_PARTITIONS = 12
COLD_ROWS = 600
LEVELS = (ConsistencyLevel.ONE, ConsistencyLevel.QUORUM, ConsistencyLevel.ALL)

STATEMENTS = (
    "INSERT INTO hot (k, ck, a, b, tags) VALUES ({k}, {ck}, 'ins {i}', {i}, {{'t{i}'}})",
    "INSERT INTO hot (k, ck, a) VALUES ({k}, {ck}, 'ttl {i}') USING TTL 3600",
    "INSERT INTO hot (k, ck, b) VALUES ({k}, {ck}, {i}) USING TTL 1",  # gone before the comparison
    "UPDATE hot SET a = 'upd {i}' WHERE k = {k} AND ck = {ck}",
    "UPDATE hot SET b = {i} WHERE k = {k} AND ck = {ck}",
    "UPDATE hot SET tags = tags + {{'x{i}'}}, m['c{client}'] = {i} WHERE k = {k} AND ck = {ck}",
    "UPDATE hot SET tags = tags - {{'x{j}'}} WHERE k = {k} AND ck = {ck}",
    "UPDATE hot SET st = 'static {i}' WHERE k = {k}",
    "DELETE a FROM hot WHERE k = {k} AND ck = {ck}",
    "DELETE m['c{client}'] FROM hot WHERE k = {k} AND ck = {ck}",
    "DELETE FROM hot WHERE k = {k} AND ck = {ck}",
    "DELETE FROM hot WHERE k = {k} AND ck >= {ck}",
    "DELETE FROM hot WHERE k = {k}",
)


class Workload:
    """Clients writing hot rows at random consistency levels until stopped; a node may be down meanwhile."""

    def __init__(self, cluster: CassandraCluster, keyspace: str, clients: int = 4) -> None:
        self.cluster = cluster
        self.keyspace = keyspace
        self.clients = clients
        self.stop = threading.Event()
        self.down: set[str] = set()
        # Coordinators are nodes that stay up: a coordinator stores the hints for a stopped one.
        self.coordinators = cluster.nodes[:2]
        self.written = 0
        self.failed = 0
        self._lock = threading.Lock()

    def run_client(self, client: int) -> None:
        rng = random.Random(client)
        session = self.coordinators[client % len(self.coordinators)].session(self.keyspace)
        i = 0
        while not self.stop.is_set():
            i += 1
            text = rng.choice(STATEMENTS).format(
                i=i * 10 + client, j=rng.randrange(i * 10 + 1), client=client,
                k=rng.randrange(HOT_PARTITIONS), ck=rng.randrange(4),
            )  # fmt: skip
            levels = LEVELS[:2] if self.down else LEVELS
            statement = SimpleStatement(text, consistency_level=rng.choice(levels))
            try:
                session.execute(statement, timeout=10)
                with self._lock:
                    self.written += 1
            except Exception:  # a timeout while a node stops: Cassandra may or may not hold it; the oracle decides
                with self._lock:
                    self.failed += 1
            time.sleep(0.002)


def rf3_keyspace(cluster: CassandraCluster) -> tuple[str, Any]:
    """A fresh keyspace replicated to all three nodes, and a session on the cluster."""
    keyspace = f"rf3_{uuid.uuid4().hex[:8]}"
    session = cluster.session()
    session.execute(f"CREATE KEYSPACE {keyspace} WITH replication = {RF3}")
    return keyspace, session


def start_runtime(
    cluster: CassandraCluster, index: int, keyspace: str, sinks: dict[str, str], tmp: Path, *, dedup: bool
) -> Runtime:
    node = cluster.nodes[index]
    folder = tmp / f"node{index + 1}"
    path = pipeline_yaml(folder, keyspace, node, sinks, fetchSize=100)
    config = yaml.safe_load(path.read_text())
    config["spec"]["source"] |= {"replicaDedup": dedup, "replicaMarginSeconds": 2, "replicaTakeoverSeconds": 10}
    path.write_text(yaml.safe_dump(config))
    options = dataclasses.replace(local_options(node, folder), node=f"cassandra-{index}")
    return Runtime(load_pipeline(path), options)


def written_per_change(runtimes: list[Runtime]) -> float:
    """Sink writes per source change: events every runtime committed over the most any one decoded."""
    written = sum(r.runner.progress.events_committed for r in runtimes if r.runner is not None)
    decoded = max(r.source.decode_stats.events if r.source is not None else 0 for r in runtimes)
    return written / max(decoded, 1)


def rows_at_all(node: CassandraNode, keyspace: str, table: str) -> list[dict[str, Any]]:
    statement = SimpleStatement(f"SELECT * FROM {keyspace}.{table}", consistency_level=ConsistencyLevel.ALL)
    result = node.session().execute(statement, timeout=30)
    return [dict(zip(result.column_names, row, strict=True)) for row in result]


async def assert_sinks_equal_cassandra(
    cluster: CassandraCluster, keyspace: str, schema: TableSchema, postgres_dsn: str, client: Any
) -> None:
    reads = {
        "postgres": lambda: postgres_rows(postgres_dsn, keyspace, schema.name),
        "clickhouse": lambda: asyncio.to_thread(clickhouse_rows, client, f"{keyspace}_ch", schema.name, schema),
    }
    for kind, read in reads.items():

        async def equal(read: Any = read, kind: str = kind) -> Any:
            cassandra = await asyncio.to_thread(rows_at_all, cluster.nodes[0], keyspace, schema.name)
            expected = keyed(schema, cassandra, sink=False)
            actual = keyed(schema, await read(), sink=True)
            comparison = compare(schema.name, kind, expected, actual)
            return True if comparison.equal else "\n".join(differences(comparison, expected, actual)[:8])

        await wait_until(equal, 120, f"{kind} {schema.qualified_name} equals Cassandra at ALL")


async def test_three_runtimes_through_a_node_restart_leave_one_truth_in_every_sink(
    cluster: CassandraCluster, postgres_dsn: str, chdb_dsn: str, tmp_path: Path
) -> None:
    keyspace, session = rf3_keyspace(cluster)
    session.execute(
        f"CREATE TABLE {keyspace}.hot (k int, ck int, st text static, a text, b bigint, tags set<text>,"
        " m map<text, int>, PRIMARY KEY (k, ck)) WITH cdc = true"
    )
    # Loaded before the pipeline, without CDC: only the snapshot can bring these rows.
    session.execute(f"CREATE TABLE {keyspace}.cold (id int PRIMARY KEY, v text) WITH cdc = false")
    insert = session.prepare(f"INSERT INTO {keyspace}.cold (id, v) VALUES (?, ?)")
    insert.consistency_level = ConsistencyLevel.ALL
    for n in range(COLD_ROWS):
        session.execute(insert, (n, f"cold {n}"))
    session.execute(f"ALTER TABLE {keyspace}.cold WITH cdc = true")

    sinks = {"pg": postgres_dsn, "ch": chdb_dsn}
    dedup = cluster.nodes[0].compat_mode == "NONE"
    runtimes = [start_runtime(cluster, i, keyspace, sinks, tmp_path, dedup=dedup) for i in range(3)]
    stop = asyncio.Event()
    tasks = [asyncio.create_task(r.run(stop)) for r in runtimes]
    workload = Workload(cluster, keyspace)
    clients = [asyncio.create_task(asyncio.to_thread(workload.run_client, c)) for c in range(workload.clients)]
    stopped = cluster.nodes[2]
    try:
        await asyncio.sleep(5)
        workload.down.add(stopped.host)
        await asyncio.to_thread(stopped.stop)  # writes go on at ONE and QUORUM; coordinators keep hints
        written_while_down = workload.written
        await asyncio.sleep(6)
        written_while_down = workload.written - written_while_down
        await asyncio.to_thread(stopped.restart)
        await asyncio.to_thread(cluster.wait_until_all_up)
        workload.down.clear()
        await asyncio.sleep(5)
        workload.stop.set()
        await asyncio.gather(*clients)
        assert written_while_down > 20, "the workload wrote while a replica was down"
        assert workload.written > 200, (workload.written, workload.failed)

        for runtime in runtimes:
            await wait_until(lambda runtime=runtime: snapshot_done(runtime, 2), 120, "every runtime's snapshot done")
        # Each row loaded before the pipeline was read by its primary replica's runtime, once; a runtime whose
        # node stopped mid-range reads on from its last committed mark (its last partition again, at most a page).
        read = [r.node_status().snapshot[f"{keyspace}.cold"].rows_read for r in runtimes]
        assert COLD_ROWS <= sum(read) < COLD_ROWS + 100, read
        assert all(n > 0 for n in read), read

        client = clickhouse_connect.get_client(dsn=chdb_dsn)
        for table in ("hot", "cold"):
            _, schema = registry_schema(cluster.nodes[0], keyspace, table)
            await assert_sinks_equal_cassandra(cluster, keyspace, schema, postgres_dsn, client)
        # ClickHouse settles every insert in a replicated keyspace, dedup or not: an owner cannot tell when
        # another runtime writes its ranges (held changes from before its node's return, a takeover ending).
        settles = [s.concurrent_writers() for r in runtimes if r.runner for s in r.runner.sinks if s.name == "ch"]
        assert settles == [True] * 3, settles
        # Every replica's runtime replicated: each saw the workload in its own node's commitlog.
        assert all(r.runner is not None and r.runner.progress.events_committed > 0 for r in runtimes)
        amplification = written_per_change(runtimes)
        dispositions = [dict(r.runner.replicas.counts) for r in runtimes if r.runner and r.runner.replicas]
        if dedup:
            # Each change once, but the stopped node's ranges while it was away: both other runtimes take them over.
            assert amplification < 2.0, (amplification, dispositions)
        else:
            # Every replica's runtime writes every change its node got: two full copies, and the stopped node's
            # runtime all but what its node missed while down and had not yet received by hints.
            assert amplification > 2.0, amplification
        print(f"replicaDedup {'on' if dedup else 'off'}: {amplification:.2f} sink writes per change", dispositions)
    finally:
        workload.stop.set()
        await asyncio.gather(*clients, return_exceptions=True)
        stop.set()
        await asyncio.gather(*(asyncio.wait_for(t, 30) for t in tasks), return_exceptions=True)


async def test_a_silent_runtimes_ranges_are_taken_over_and_nothing_is_lost(
    cluster: CassandraCluster, postgres_dsn: str, chdb_dsn: str, tmp_path: Path
) -> None:
    """replicaDedup on; one runtime stops while its node serves on: the others write its ranges after takeover."""
    keyspace, session = rf3_keyspace(cluster)
    session.execute(f"CREATE TABLE {keyspace}.kv (k int PRIMARY KEY, v text) WITH cdc = true")
    insert = session.prepare(f"INSERT INTO {keyspace}.kv (k, v) VALUES (?, ?)")
    insert.consistency_level = ConsistencyLevel.QUORUM
    sinks = {"pg": postgres_dsn, "ch": chdb_dsn}
    runtimes = [start_runtime(cluster, i, keyspace, sinks, tmp_path, dedup=True) for i in range(3)]
    stops = [asyncio.Event() for _ in runtimes]
    tasks = [asyncio.create_task(r.run(stop)) for r, stop in zip(runtimes, stops, strict=True)]
    _, schema = registry_schema(cluster.nodes[0], keyspace, "kv")

    async def pg_count() -> int:
        return len(await postgres_rows(postgres_dsn, keyspace, "kv"))

    async def all_rows(n: int) -> Any:
        got = await pg_count()
        return True if got == n else got

    try:
        for k in range(300):
            await asyncio.to_thread(session.execute, insert, (k, f"before {k}"))
        await wait_until(lambda: all_rows(300), 60, "the first 300 rows")
        silent = runtimes[2]
        assert silent.runner is not None and silent.runner.replicas is not None
        host = silent.runner.replicas.local
        stops[2].set()
        await asyncio.wait_for(tasks[2], 30)
        stopped_at = time.monotonic()
        for k in range(300, 600):
            await asyncio.to_thread(session.execute, insert, (k, f"after {k}"))
        await wait_until(lambda: all_rows(600), 90, "every row, the silent runtime's ranges too")
        takeover = time.monotonic() - stopped_at
        others = [r.runner.replicas for r in runtimes[:2] if r.runner is not None and r.runner.replicas is not None]
        assert len(others) == 2

        async def both_taking_over() -> Any:
            # Either survivor holds all of the silent node's rows, so the first whose timer runs out writes
            # them; the other's timer started up to a tick later, and it takes over on its own.
            states = [router.status()[host] for router in others]
            return True if states == ["taking over"] * 2 else states

        await wait_until(both_taking_over, 5, "both other runtimes taking over the silent node's ranges")
        status = runtimes[0].node_status()  # what the runtime reports onto the CDCPipeline's status.nodes
        assert status.replicas[host] == "taking over"
        assert status.replicas[others[0].local or ""] == "writing"
        assert sum(router.counts["taken_over"] for router in others) >= 50  # its share of the 300 new rows
        await assert_sinks_equal_cassandra(
            cluster, keyspace, schema, postgres_dsn, clickhouse_connect.get_client(dsn=chdb_dsn)
        )
        print(f"takeover of a silent runtime's ranges: {takeover:.1f} s (replicaTakeoverSeconds 10)")
    finally:
        for stop in stops:
            stop.set()
        await asyncio.gather(*(asyncio.wait_for(t, 30) for t in tasks), return_exceptions=True)
