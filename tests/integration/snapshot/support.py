"""Pre-loading a table of every column kind, reading its snapshot, writing events, comparing with Cassandra."""

from __future__ import annotations

import datetime
import decimal
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from devservices.cassandra import CassandraNode
from devservices.sinkview import compare, differences, keyed
from pipeline_runtime.cql.schema import TableSchema
from pipeline_runtime.events import ChangeEvent, Position
from pipeline_runtime.sinks.base import Batch, Checkpoint
from pipeline_runtime.source.schema.driver import DriverSchemaSource
from pipeline_runtime.source.schema.registry import SchemaRegistry
from pipeline_runtime.source.snapshot import SnapshotReader, snapshot_node, split_ring
from pipeline_runtime.source.tailer import CdcRawTailer
from tests.integration.sinks.conftest import Harness

NODE = "node1"
PIPELINE = "snapshot-test"

TABLE = (
    "CREATE TABLE t (k int, ck int, st text static, a text, b bigint, de decimal, ts timestamp, u uuid,"
    " bo boolean, l list<text>, s set<int>, m map<text, int>, fl frozen<list<int>>, fm frozen<map<text, int>>,"
    " ud addr, fu frozen<addr>, PRIMARY KEY (k, ck)) WITH cdc = true"
)
#: Microseconds: a writetime well in the past (2001), for rows written ``USING TIMESTAMP``.
PAST = 1_000_000_000_000_000


def preload(session: Any, *, cdc: bool = True) -> None:
    """Every kind of row: full inserts, old timestamps, TTLs, partial updates, key-only rows, static-only partitions.

    ``cdc=False``: the table is created without CDC, so none of these writes is in cdc_raw (as with data
    written long before a pipeline starts); turn CDC on afterwards.
    """
    session.execute("CREATE TYPE addr (street text, zip int)")
    session.execute(TABLE if cdc else TABLE.replace("WITH cdc = true", "WITH cdc = false"))
    insert = session.prepare(
        "INSERT INTO t (k, ck, st, a, b, de, ts, u, bo, l, s, m, fl, fm, ud, fu)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )
    old = session.prepare(f"INSERT INTO t (k, ck, a, b, l, s, m) VALUES (?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP {PAST}")
    expiring = session.prepare("INSERT INTO t (k, ck, a, s, ud) VALUES (?, ?, ?, ?, ?) USING TTL 3600")
    for k in range(12):
        for ck in range(3):
            n = k * 10 + ck
            if ck == 0:
                session.execute(
                    insert,
                    (
                        k, ck, f"static {k}", f"a{n}", n * 1000, decimal.Decimal(f"{n}.5"),
                        datetime.datetime(2020, 1, 1) + datetime.timedelta(seconds=n), uuid.UUID(int=n + 1),
                        n % 2 == 0, [f"x{n}", f"y{n}", f"x{n}"], {n, n + 1}, {"p": n, "q": -n}, [n, n],
                        {"f": n}, (f"s{n}", n), ("frozen", None),
                    ),
                )  # fmt: skip
            elif ck == 1:
                session.execute(old, (k, ck, f"old{n}", n, ["o1", "o2"], {1, 2, 3}, {"o": 1}))
            else:
                session.execute(expiring, (k, ck, f"ttl{n}", {n}, (None, n)))
    # partial updates on top: newer elements beside older ones, a field of a non-frozen UDT, a TTL'd element
    session.execute("UPDATE t SET l = l + ['appended'], s = s + {99}, m['r'] = 7, ud.zip = 123 WHERE k = 1 AND ck = 0")
    session.execute("UPDATE t USING TTL 5000 SET m['expiring'] = 1, s = s + {555} WHERE k = 2 AND ck = 0")
    session.execute(f"UPDATE t USING TIMESTAMP {PAST + 5} SET b = 5 WHERE k = 3 AND ck = 1")
    session.execute("INSERT INTO t (k, ck) VALUES (100, 0)")  # a row with only a primary key
    session.execute("INSERT INTO t (k, ck) VALUES (100, 1) USING TTL 7200")
    session.execute("UPDATE t SET st = 'alone' WHERE k = 200")  # a partition with static cells and no rows
    session.execute("UPDATE t SET a = 'updated only' WHERE k = 201 AND ck = 5")  # a row without liveness


def registry_schema(node: CassandraNode, keyspace: str, table: str = "t") -> tuple[SchemaRegistry, TableSchema]:
    registry = SchemaRegistry(DriverSchemaSource(node.session()), selector=lambda s: s.keyspace == keyspace)
    registry.refresh()
    schema = next(s for s in registry.schemas.values() if s.keyspace == keyspace and s.name == table)
    return registry, schema


def snapshot(node: CassandraNode, schema: TableSchema, ranges: int = 5, fetch_size: int = 7) -> list[ChangeEvent]:
    reader = SnapshotReader(node.session(), schema, NODE, fetch_size=fetch_size)
    try:
        return [e for page in reader.read(split_ring(ranges)) for e in page.events]
    finally:
        reader.close()


def follow_cdc(node: CassandraNode, registry: SchemaRegistry, keyspace: str, marker: str) -> list[ChangeEvent]:
    """This keyspace's CDC events from the start of cdc_raw up to the upsert into table ``marker`` (30 s at most)."""
    tailer = CdcRawTailer(node.cdc_raw_dir, "node", registry)
    events: list[ChangeEvent] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        batch = tailer.poll()
        if batch is None:
            if any(e.table == marker for e in events):
                return [e for e in events if e.table != marker]
            time.sleep(0.05)
            continue
        events.extend(e for e in batch.events if e.keyspace == keyspace)
    raise AssertionError(f"no CDC event of {keyspace}.{marker} after 30 s ({len(events)} events)")


async def write(
    harness: Harness,
    schema: TableSchema,
    batches: Sequence[Sequence[ChangeEvent]],
    check: Callable[[], Awaitable[None]] | None = None,
) -> dict[str, Position]:
    """Each batch through one sink's ``write`` with a snapshot checkpoint; the positions the sink then holds.

    ``check`` runs while the sink is open: the TimescaleDB harness reads through the open sink's connection.
    """
    pipeline = f"{PIPELINE}-{harness.namespace}"  # chdb keeps one checkpoint table per process
    sink = harness.make()
    await sink.open()
    try:
        await sink.ensure_table(schema)
        for events in batches:
            snap = [e.source.position for e in events if e.source.node == snapshot_node(NODE)]
            node = snapshot_node(NODE) if snap else "node"
            position = max(snap or [e.source.position for e in events] or [Position(0, 0)])
            await sink.write(Batch(list(events), Checkpoint(pipeline, node, position)))
        if check is not None:
            await check()
        return dict(await sink.committed_positions(pipeline))
    finally:
        await sink.close()


async def assert_equal(harness: Harness, node: CassandraNode, keyspace: str, schema: TableSchema) -> None:
    result = node.session(keyspace).execute("SELECT * FROM t")
    expected = keyed(schema, [dict(zip(result.column_names, r, strict=True)) for r in result], sink=False)
    actual = keyed(schema, await harness.rows(schema), sink=True)
    comparison = compare("t", harness.kind, expected, actual)
    assert comparison.equal, "\n".join(differences(comparison, expected, actual))
