"""replicaDedup on through repeated node restarts: after each restart every sink equals Cassandra.

Three runtimes with dedup on, the workload of ``test_three_replicas`` running, and the nodes stopped and
started in turn. After each cycle the writes pause and each sink must equal ``SELECT *`` at ALL. A trace
of every router decision (written, held, covered, taken over, with the owner's watermark at the time)
is kept; on a difference the decisions about the differing partitions are printed, which names the
runtime that dropped a change and why.

Marked ``stress`` (``make stress``, ``HEADRACE_STRESS_CYCLES`` cycles, 10 by default): it hunts the lost
deletion of docs/replicas.md ("Known issue"), so it stays out of the default suite until that is fixed.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import clickhouse_connect
import pytest

from devservices.cassandra import CassandraCluster
from pipeline_runtime.events import ChangeEvent
from pipeline_runtime.pipeline.replicas import ReplicaRouter
from tests.integration.replicas.test_three_replicas import (
    Workload,
    assert_sinks_equal_cassandra,
    rf3_keyspace,
    start_runtime,
)
from tests.integration.snapshot.support import registry_schema

pytestmark = [pytest.mark.cassandra, pytest.mark.postgres, pytest.mark.clickhouse, pytest.mark.stress]

CYCLES = int(os.environ.get("HEADRACE_STRESS_CYCLES", "10"))


async def pg_fetch(dsn: str, query: str) -> list[Any]:
    import asyncpg  # noqa: PLC0415

    conn = await asyncpg.connect(dsn)
    try:
        return [dict(r) for r in await conn.fetch(query)]
    finally:
        await conn.close()


class Trace:
    """Every decision of every router, by partition: who did what with which change, and the marks then."""

    def __init__(self) -> None:
        self.by_partition: dict[tuple[str, str], list[str]] = defaultdict(list)
        self.started = time.time()

    def note(self, router: ReplicaRouter, event: ChangeEvent, what: str, detail: str = "") -> None:
        key = (event.table, repr(event.partition_key))
        stamp = time.time() - self.started
        cells = " ".join(
            f"{n}={getattr(c, 'value', '<coll>')!r}@{getattr(c, 'timestamp', '')}" for n, c in event.cells.items()
        )
        detail = f"{detail} {cells}"
        self.by_partition[key].append(
            f"{stamp:8.2f} {str(router.local)[:8]} {what:<10} {event.op} ck={event.clustering_key} "
            f"ts={event.max_timestamp} at={event.source.position} {detail}"
        )

    def lines(self, table: str, partition: str) -> list[str]:
        return self.by_partition.get((table, partition), [])


@pytest.fixture
def trace(monkeypatch: pytest.MonkeyPatch) -> Iterator[Trace]:
    """Record what every ReplicaRouter decides (wrapping its methods; the decisions themselves are unchanged)."""
    trace = Trace()
    route, resolve, refresh = ReplicaRouter.route, ReplicaRouter.resolve, ReplicaRouter.refresh

    def traced_route(self: ReplicaRouter, events: Any, durable_at: float, resume_at: Any) -> list[ChangeEvent]:
        before = len(self.held)
        out = route(self, events, durable_at, resume_at)
        written = {id(e) for e in out}
        for item in list(self.held)[before:]:
            trace.note(
                self, item.event, "held", f"owner={item.owner[:8]} durable_at={item.durable_at - trace.started:.2f}"
            )
        for event in events:
            if id(event) in written:
                trace.note(self, event, "written")
        return out

    def traced_resolve(self: ReplicaRouter) -> list[ChangeEvent]:
        held = list(self.held)
        out = resolve(self)
        kept, taken = {id(i) for i in self.held}, {id(e) for e in out}
        for item in held:
            if id(item) in kept:
                continue
            mark = self.marks.get(item.owner)
            shown = (
                f"through={mark.through - trace.started:.2f} since={mark.since - trace.started:.2f}" if mark else "-"
            )
            what = "taken" if id(item.event) in taken else "covered"
            trace.note(
                self,
                item.event,
                what,
                f"owner={item.owner[:8]} durable_at={item.durable_at - trace.started:.2f} {shown}",
            )
        return out

    def traced_refresh(self: ReplicaRouter, marks: Any) -> None:
        since = self.since
        refresh(self, marks)
        if self.since != since:
            print(f"{time.time() - trace.started:8.2f} {str(self.local)[:8]} own node down: since reset")

    monkeypatch.setattr(ReplicaRouter, "route", traced_route)
    monkeypatch.setattr(ReplicaRouter, "resolve", traced_resolve)
    monkeypatch.setattr(ReplicaRouter, "refresh", traced_refresh)
    yield trace


async def test_dedup_keeps_every_change_through_repeated_node_restarts(
    cluster: CassandraCluster, postgres_dsn: str, chdb_dsn: str, tmp_path: Path, trace: Trace
) -> None:
    keyspace, session = rf3_keyspace(cluster)
    session.execute(
        f"CREATE TABLE {keyspace}.hot (k int, ck int, st text static, a text, b bigint, tags set<text>,"
        " m map<text, int>, PRIMARY KEY (k, ck)) WITH cdc = true"
    )
    sinks = {"pg": postgres_dsn, "ch": chdb_dsn}
    runtimes = [start_runtime(cluster, i, keyspace, sinks, tmp_path, dedup=True) for i in range(3)]
    stop = asyncio.Event()
    tasks = [asyncio.create_task(r.run(stop)) for r in runtimes]
    _, schema = registry_schema(cluster.nodes[0], keyspace, "hot")
    client = clickhouse_connect.get_client(dsn=chdb_dsn)
    try:
        for cycle in range(CYCLES):
            stopped = cluster.nodes[2 - cycle % 2]  # the workload's coordinators are nodes 1 and 2
            workload = Workload(cluster, keyspace)
            workload.coordinators = [n for n in cluster.nodes if n is not stopped][:2]
            clients = [asyncio.create_task(asyncio.to_thread(workload.run_client, c)) for c in range(workload.clients)]
            await asyncio.sleep(3)
            print(f"{time.time() - trace.started:8.2f} cycle {cycle}: stopping {stopped.host}")
            workload.down.add(stopped.host)
            await asyncio.to_thread(stopped.stop)
            await asyncio.sleep(4)
            await asyncio.to_thread(stopped.restart)
            await asyncio.to_thread(cluster.wait_until_all_up)
            print(f"{time.time() - trace.started:8.2f} cycle {cycle}: {stopped.host} up")
            workload.down.clear()
            await asyncio.sleep(3)
            workload.stop.set()
            await asyncio.gather(*clients)
            try:
                await assert_sinks_equal_cassandra(cluster, keyspace, schema, postgres_dsn, client)
            except AssertionError as failure:
                for k in sorted(set(re.findall(r"key \[(-?\d+)", str(failure)))):
                    print(f"--- decisions about partition {k}")
                    print("\n".join(trace.lines("hot", repr({"k": int(k)}))))
                    for storage in ("hot__rows", "hot__tombstones"):
                        stored = await pg_fetch(
                            postgres_dsn, f'SELECT * FROM "{keyspace}"."{storage}" WHERE k = {int(k)}'
                        )
                        print(f"--- PostgreSQL {storage} of partition {k}")
                        print("\n".join(map(str, stored)))
                raise AssertionError(f"cycle {cycle} (stopped {stopped.host}): {failure}") from failure
    finally:
        stop.set()
        await asyncio.gather(*(asyncio.wait_for(t, 30) for t in tasks), return_exceptions=True)
