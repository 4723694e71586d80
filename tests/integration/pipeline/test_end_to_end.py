"""The whole runtime against real servers: Cassandra 5.0 -> runtime (from YAML) -> PostgreSQL + ClickHouse.

The oracle (docs/sinks.md, 'Why writes are exactly-once in effect'): after a workload and a quiet period, each
sink table, read as its users read it (the view), equals ``SELECT *`` from
Cassandra after the pipeline's transforms (here: the email column hashed).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import shutil
import tempfile
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import clickhouse_connect
import pytest
import yaml

from devservices.cassandra import CassandraNode
from devservices.clickhouse_http import running_clickhouse_front
from devservices.postgres import PostgresServer, running_postgres
from devservices.pytest_require import require_module
from pipeline_runtime.app import Runtime, RuntimeOptions
from pipeline_runtime.config.loader import load_pipeline
from tests.waiting import wait_until

pytestmark = [pytest.mark.cassandra, pytest.mark.postgres, pytest.mark.clickhouse]

HASH_KEY = b"e2e-secret-key"
REPLICATION = "{'class': 'SimpleStrategy', 'replication_factor': 1}"


def masked(email: str) -> str:
    return hmac.new(HASH_KEY, email.encode(), hashlib.sha256).hexdigest()


@dataclass
class Running:
    runtime: Runtime
    keyspace: str
    secrets: Path
    dead_letters: Path


def write_config(tmp: Path, keyspace: str, node: CassandraNode, postgres_dsn: str, chdb_dsn: str) -> Path:
    secrets = tmp / "secrets"
    for name, key, value in (
        ("pg", "dsn", postgres_dsn),
        ("ch", "dsn", chdb_dsn),
        ("masking", "hmac", HASH_KEY.decode()),
    ):
        (secrets / name).mkdir(parents=True, exist_ok=True)
        (secrets / name / key).write_text(value)
    config = {
        "apiVersion": "headrace.io/v1alpha1",
        "kind": "CDCPipeline",
        # Named after the keyspace: tests share one chdb engine, whose checkpoints are per pipeline and node.
        "metadata": {"name": keyspace.replace("_", "-"), "namespace": "test"},
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
                },
                {
                    "name": "ch",
                    "type": "clickhouse",
                    "connectionSecret": {"name": "ch", "key": "dsn"},
                    "target": f"{keyspace}_ch",
                    "batchSize": 50,
                    "flushIntervalMs": 100,
                },
            ],
            "transforms": {
                "masking": [{"table": f"{keyspace}.customers", "column": "email", "strategy": "hash"}],
                "hashKeySecret": {"name": "masking", "key": "hmac"},
                "validation": "block",
            },
        },
    }
    path = tmp / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def new_keyspace(node: CassandraNode, *tables: str) -> str:
    """A fresh keyspace with ``tables`` (CQL column lists after the table name, ``{ks}`` expanded)."""
    keyspace = f"e2e_{uuid.uuid4().hex[:8]}"
    session = node.session()
    session.execute(f"CREATE KEYSPACE {keyspace} WITH replication = {REPLICATION}")
    for table in tables:
        session.execute(f"CREATE TABLE {keyspace}.{table}")
    return keyspace


def local_options(node: CassandraNode, tmp: Path, **overrides: Any) -> RuntimeOptions:
    """Runtime options for a test: the node's cdc_raw, secrets and dead letters under ``tmp``, any free port."""
    settings: dict[str, Any] = {
        "node": "node-0",
        "cdc_raw": node.cdc_raw_dir,
        "secrets_dir": tmp / "secrets",
        "http_host": "127.0.0.1",
        "http_port": 0,
        "dead_letter_dir": tmp / "dead",
        **overrides,
    }
    return RuntimeOptions(**settings)


@pytest.fixture
async def running(cassandra: CassandraNode, postgres_dsn: str, chdb_dsn: str, tmp_path: Path) -> AsyncIterator[Running]:
    keyspace = new_keyspace(
        cassandra,
        "orders (customer text, order_id int, item text, qty int, tags set<text>, note text, "
        "customer_name text static, PRIMARY KEY (customer, order_id)) WITH cdc = true",
        "customers (id int PRIMARY KEY, email text, score bigint) WITH cdc = true",
        "ignored (id int PRIMARY KEY, v text)",  # no CDC: never replicated
    )
    pipeline = load_pipeline(write_config(tmp_path, keyspace, cassandra, postgres_dsn, chdb_dsn))
    runtime = Runtime(pipeline, local_options(cassandra, tmp_path))
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.run(stop))
    try:
        yield Running(runtime, keyspace, tmp_path / "secrets", tmp_path / "dead")
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


def cassandra_rows(node: CassandraNode, query: str) -> list[dict[str, Any]]:
    return [dict(r._asdict()) for r in node.session().execute(query)]


async def pg_rows(dsn: str, query: str) -> list[dict[str, Any]]:
    connection = await asyncpg.connect(dsn)
    try:
        return [dict(r) for r in await connection.fetch(query)]
    except asyncpg.UndefinedTableError:
        return []
    finally:
        await connection.close()


def ch_rows(dsn: str, query: str) -> list[dict[str, Any]]:
    client = clickhouse_connect.get_client(dsn=dsn)
    try:
        result = client.query(query)
    except Exception as exc:
        if "UNKNOWN_TABLE" in str(exc) or "UNKNOWN_DATABASE" in str(exc):
            return []
        raise
    return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]


def difference(got: list[tuple[Any, ...]], expected: list[tuple[Any, ...]]) -> str:
    extra, missing = sorted(set(got) - set(expected)), sorted(set(expected) - set(got))
    return f"{len(got)} rows; unexpected {extra[:5]}; missing {missing[:5]}"


def as_set(value: Any) -> tuple[str, ...]:
    """A set column as sorted elements: PostgreSQL maps sets to jsonb arrays (docs/sinks.md)."""
    if isinstance(value, str):
        value = json.loads(value)
    return tuple(sorted(value or ()))


def normalise_orders(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return sorted(
        (
            r["customer"],
            r["order_id"],
            r["item"],
            r["qty"],
            as_set(r["tags"]),
            r["note"] or None,
            r["customer_name"] or None,
        )
        for r in rows
    )


async def test_workload_converges_in_both_sinks_with_masking(
    running: Running, cassandra: CassandraNode, postgres_dsn: str, chdb_dsn: str
) -> None:
    ks = running.keyspace
    s = cassandra.session(ks)
    insert = s.prepare("INSERT INTO orders (customer, order_id, item, qty, tags, note) VALUES (?, ?, ?, ?, ?, ?)")
    for c in range(5):
        s.execute(f"INSERT INTO orders (customer, customer_name) VALUES ('c{c}', 'Customer {c}')")
        for o in range(20):
            s.execute(insert, (f"c{c}", o, f"item-{o}", o, {"new", f"t{o % 3}"}, "first"))
    s.execute("UPDATE orders SET qty = 99, note = null WHERE customer = 'c0' AND order_id = 1")  # partial update
    s.execute("UPDATE orders SET tags = tags + {'rush'} WHERE customer = 'c0' AND order_id = 2")  # collection add
    s.execute("UPDATE orders SET tags = tags - {'new'} WHERE customer = 'c0' AND order_id = 3")  # collection remove
    s.execute("DELETE FROM orders WHERE customer = 'c1' AND order_id = 5")  # row delete
    s.execute("DELETE FROM orders WHERE customer = 'c2' AND order_id >= 10 AND order_id < 15")  # range delete
    s.execute("DELETE FROM orders WHERE customer = 'c3'")  # partition delete
    s.execute("DELETE item FROM orders WHERE customer = 'c4' AND order_id = 0")  # cell delete
    s.execute("UPDATE orders SET customer_name = 'Renamed' WHERE customer = 'c4'")  # static update
    s.execute("INSERT INTO orders (customer, order_id, item, qty) VALUES ('c3', 100, 'after', 1)")  # after the delete
    emails = {i: f"person{i}@example.com" for i in range(10)}
    for i, email in emails.items():
        s.execute("INSERT INTO customers (id, email, score) VALUES (%s, %s, %s)", (i, email, i * 10))
    s.execute("INSERT INTO ignored (id, v) VALUES (1, 'never')")

    expected_orders = normalise_orders(cassandra_rows(cassandra, f"SELECT * FROM {ks}.orders"))
    expected_customers = sorted(
        (r["id"], masked(r["email"]), r["score"]) for r in cassandra_rows(cassandra, f"SELECT * FROM {ks}.customers")
    )
    assert len(expected_orders) == 5 * 20 - 1 - 5 - 20 + 1  # the workload did what it says

    async def pg_converged() -> Any:
        got = normalise_orders(await pg_rows(postgres_dsn, f"SELECT * FROM {ks}.orders"))
        return True if got == expected_orders else difference(got, expected_orders)

    async def ch_converged() -> Any:
        got = normalise_orders(ch_rows(chdb_dsn, f"SELECT * FROM {ks}_ch.orders"))
        return True if got == expected_orders else difference(got, expected_orders)

    await wait_until(pg_converged, what="PostgreSQL orders equal Cassandra")
    await wait_until(ch_converged, what="ClickHouse orders equal Cassandra")

    pg_customers = sorted(
        (r["id"], r["email"], r["score"]) for r in await pg_rows(postgres_dsn, f"SELECT * FROM {ks}.customers")
    )
    ch_customers = sorted(
        (r["id"], r["email"], r["score"]) for r in ch_rows(chdb_dsn, f"SELECT * FROM {ks}_ch.customers")
    )
    assert pg_customers == expected_customers
    assert ch_customers == expected_customers

    # No raw email anywhere in either sink, whatever the table.
    dump = str(await pg_rows(postgres_dsn, f"SELECT * FROM {ks}.customers__rows"))
    dump += str(ch_rows(chdb_dsn, f"SELECT * FROM {ks}_ch.customers__state"))
    assert not [e for e in emails.values() if e in dump]
    # The non-CDC table was never replicated.
    assert await pg_rows(postgres_dsn, f"SELECT * FROM {ks}.ignored") == []

    # Health, readiness and metrics answer on the runtime's own endpoint.
    runtime = running.runtime
    assert runtime.http is not None
    base = f"http://127.0.0.1:{runtime.http.port}"
    ready = await asyncio.to_thread(lambda: urllib.request.urlopen(f"{base}/readyz", timeout=5).read())
    assert ready == b"ready\n"
    metrics = (await asyncio.to_thread(lambda: urllib.request.urlopen(f"{base}/metrics", timeout=5).read())).decode()
    assert (
        f'headrace_events_written_total{{node="node-0",op="upsert",pipeline="{runtime.pipeline.name}",sink="pg",table="{ks}.orders"}}'
        in metrics
    )
    status = runtime.node_status()
    assert status.position is not None
    assert status.sinks["pg"].healthy and status.sinks["ch"].healthy
    assert status.sinks["pg"].rows_written >= len(expected_orders)
    # RF=1: no other runtime writes these rows, so ClickHouse skips the settling read.
    assert runtime.runner is not None
    assert [getattr(sink, "concurrent_writers", lambda: None)() for sink in runtime.runner.sinks] == [None, False]
    # Caught up, lag reads 0 (Cassandra's own later writes into the same segments may show for a moment).
    await wait_until(lambda: asyncio.sleep(0, runtime.node_status().lag_seconds == 0), 10, "lag 0")


async def test_restart_resumes_from_the_committed_position_without_loss(
    cassandra: CassandraNode, postgres_dsn: str, chdb_dsn: str, tmp_path: Path
) -> None:
    keyspace = new_keyspace(cassandra, "events (id int PRIMARY KEY, body text) WITH cdc = true")
    session = cassandra.session()
    pipeline = load_pipeline(write_config(tmp_path, keyspace, cassandra, postgres_dsn, chdb_dsn))
    options = local_options(cassandra, tmp_path)
    insert = session.prepare(f"INSERT INTO {keyspace}.events (id, body) VALUES (?, ?)")

    async def count() -> int:
        rows = await pg_rows(postgres_dsn, f"SELECT count(*) AS n FROM {keyspace}.events")
        return int(rows[0]["n"]) if rows else 0

    for generation in range(2):
        runtime = Runtime(pipeline, options)
        stop = asyncio.Event()
        task = asyncio.create_task(runtime.run(stop))
        for i in range(generation * 100, generation * 100 + 100):
            session.execute(insert, (i, f"body {i}"))
        target = (generation + 1) * 100

        async def done(target: int = target, runtime: Runtime = runtime) -> Any:
            # Each sink commits on its own: wait for the slowest one to hold the batch too.
            n = await count()
            lanes = runtime.runner.lanes.values() if runtime.runner else ()
            written = min((lane.events_committed for lane in lanes), default=0)
            return True if n == target and written >= 100 else (n, written)

        await wait_until(done, what=f"{target} rows in PostgreSQL and the batch committed to every sink")
        committed = runtime.runner.progress.committed if runtime.runner else None
        stop.set()
        await asyncio.wait_for(task, 30)
        assert committed is not None
        if generation == 1:
            # The second runtime started where the first one's checkpoint was, not at the beginning.
            assert runtime.runner is not None
            assert runtime.runner.progress.events_committed <= 100 + 50

    rows = await pg_rows(postgres_dsn, f"SELECT id, body FROM {keyspace}.events ORDER BY id")
    assert [(r["id"], r["body"]) for r in rows] == [(i, f"body {i}") for i in range(200)]


async def outage(
    runtime: Runtime,
    sink: str,
    write: Callable[[int], Any],
    has: Callable[[int], Any],
    stop_sink: Callable[[], Any],
    start_sink: Callable[[], Any],
) -> None:
    """50 rows reach the sink; it goes away while 50 more are written: the runtime stalls, names the sink
    and keeps the backlog; it comes back: all 100 arrive and the runtime is ready again."""
    for i in range(50):
        write(i)
    await wait_until(lambda: has(50), what=f"the first 50 rows in sink {sink}")

    stop_sink()
    for i in range(50, 100):
        write(i)

    async def stalled() -> Any:
        reasons = runtime.readiness()
        return True if any(f"sink {sink}" in r for r in reasons) else reasons

    await wait_until(stalled, what="/readyz to name the unreachable sink")
    assert runtime.runner is not None
    assert f"sink {sink}" in (runtime.runner.progress.last_error or "")
    assert runtime.node_status().cdc_raw_bytes > 0  # the backlog is kept, not deleted

    start_sink()
    await wait_until(lambda: has(100), what=f"all 100 rows in sink {sink} after the outage")
    await wait_until(
        lambda: asyncio.sleep(0, result=runtime.readiness() == [] or runtime.readiness()), what="ready again"
    )


@dataclass
class OwnPostgres:
    """A runtime writing into a PostgreSQL server of its own (which the test stops) and the shared chdb."""

    keyspace: str
    server: PostgresServer
    dsn: str
    runtime: Runtime
    session: Any
    statement: Any

    def insert(self, i: int) -> None:
        self.session.execute(self.statement, (i, f"body {i}"))

    async def has(self, n: int) -> Any:
        """True once PostgreSQL holds ``n`` rows, else how many it holds."""
        found = await pg_rows(self.dsn, f"SELECT count(*) AS n FROM {self.keyspace}.events")
        got = int(found[0]["n"]) if found else 0
        return True if got == n else got


@contextlib.asynccontextmanager
async def runtime_with_own_postgres(
    node: CassandraNode, chdb_dsn: str, tmp_path: Path, database: str
) -> AsyncIterator[OwnPostgres]:
    """A table ``events``, a PostgreSQL server of its own and a runtime replicating into it and chdb."""
    keyspace = new_keyspace(node, "events (id int PRIMARY KEY, body text) WITH cdc = true")
    session = node.session()
    statement = session.prepare(f"INSERT INTO {keyspace}.events (id, body) VALUES (?, ?)")
    pg_dir = Path(tempfile.mkdtemp(prefix="headrace-pg-"))
    try:
        with running_postgres(pg_dir, durable=False) as server:
            dsn = server.create_database(database)
            pipeline = load_pipeline(write_config(tmp_path, keyspace, node, dsn, chdb_dsn))
            runtime = Runtime(pipeline, local_options(node, tmp_path, retry_max_delay=0.5))
            stop = asyncio.Event()
            task = asyncio.create_task(runtime.run(stop))
            try:
                yield OwnPostgres(keyspace, server, dsn, runtime, session, statement)
            finally:
                stop.set()
                await asyncio.wait_for(task, 30)
    finally:
        shutil.rmtree(pg_dir, ignore_errors=True)


async def test_a_sink_outage_stalls_keeps_the_backlog_and_loses_nothing(
    cassandra_v7: CassandraNode, chdb_dsn: str, tmp_path: Path
) -> None:
    """PostgreSQL goes away mid-stream: the runtime stalls, says why, keeps segments, and catches up."""
    async with runtime_with_own_postgres(cassandra_v7, chdb_dsn, tmp_path, "outage") as pg:
        await outage(pg.runtime, "pg", pg.insert, pg.has, pg.server.stop, pg.server.restart)


async def test_a_sink_that_is_down_holds_nothing_back_and_catches_up_from_its_own_checkpoint(
    cassandra_v7: CassandraNode, chdb_dsn: str, tmp_path: Path
) -> None:
    """PostgreSQL goes away: ClickHouse keeps receiving every change meanwhile, PostgreSQL's lane falls
    behind (more changes than its buffer) and, once the server is back, re-reads cdc_raw from its own
    checkpoint until it holds everything; status shows each sink's own position, lag and state."""
    async with runtime_with_own_postgres(cassandra_v7, chdb_dsn, tmp_path, "independent") as pg:
        runtime, keyspace = pg.runtime, pg.keyspace

        async def ch_has(n: int) -> Any:
            # On the event loop's thread, as the other chdb reads here: chdb is one engine per process.
            found = ch_rows(chdb_dsn, f"SELECT id FROM {keyspace}_ch.events FINAL")
            return True if len(found) == n else len(found)

        for i in range(50):
            pg.insert(i)
        await wait_until(lambda: pg.has(50), what="50 rows in PostgreSQL")
        await wait_until(lambda: ch_has(50), what="50 rows in ClickHouse")

        pg.server.stop()
        # Seven of PostgreSQL's batches, each synced apart (the node syncs every 50 ms) so that they
        # reach the lanes as pieces of their own: more than PostgreSQL's lane buffers (one piece of
        # any size is always let in, so a single large read could sit in its buffer instead).
        for first in range(50, 400, 50):
            for i in range(first, first + 50):
                pg.insert(i)
            await asyncio.sleep(0.3)
        # ClickHouse gets every change while PostgreSQL is down.
        await wait_until(lambda: ch_has(400), what="all 400 rows in ClickHouse while PostgreSQL is down")

        def pg_behind() -> Any:
            status = runtime.node_status()
            return True if status.sinks["pg"].behind else status.sinks

        await wait_until(lambda: asyncio.sleep(0, pg_behind()), what="PostgreSQL's lane to fall behind")
        status = runtime.node_status()
        ch, behind = status.sinks["ch"], status.sinks["pg"]
        assert ch.healthy and not behind.healthy and not ch.behind
        assert ch.position is not None and behind.position is not None
        assert ch.position.offset > behind.position.offset
        assert status.position == behind.position  # the runtime's position is its slowest sink's
        assert (behind.lag_seconds or 0) > 0
        assert status.unread_bytes  # the backlog PostgreSQL lacks is kept on disk

        pg.server.restart()
        await wait_until(lambda: pg.has(400), what="all 400 rows in PostgreSQL after it came back")
        await wait_until(lambda: asyncio.sleep(0, not runtime.node_status().sinks["pg"].behind), what="rejoined")
        rows = await pg_rows(pg.dsn, f"SELECT id, body FROM {keyspace}.events ORDER BY id")
        assert [(r["id"], r["body"]) for r in rows] == [(i, f"body {i}") for i in range(400)]

        def level() -> Any:
            status = runtime.node_status()
            positions = status.sinks["pg"].position, status.sinks["ch"].position, status.position
            return True if positions[0] == positions[1] == positions[2] else positions

        await wait_until(lambda: asyncio.sleep(0, level()), what="both sinks and the runtime at one position")


async def test_a_clickhouse_server_restart_over_http_stalls_and_loses_nothing(
    cassandra_v7: CassandraNode, postgres_dsn: str, tmp_path: Path
) -> None:
    """ClickHouse over HTTP goes away mid-stream and comes back empty of sessions (its temporary
    staging tables gone): the runtime stalls, says why, keeps the backlog, and catches up."""
    require_module("chdb", "the ClickHouse front serves the chdb engine (`make dev`)")
    keyspace = new_keyspace(cassandra_v7, "events (id int PRIMARY KEY, body text) WITH cdc = true")
    session = cassandra_v7.session()
    insert = session.prepare(f"INSERT INTO {keyspace}.events (id, body) VALUES (?, ?)")
    with running_clickhouse_front(tmp_path / "clickhouse") as front:
        pipeline = load_pipeline(write_config(tmp_path, keyspace, cassandra_v7, postgres_dsn, front.dsn))
        runtime = Runtime(pipeline, local_options(cassandra_v7, tmp_path, retry_max_delay=0.5))
        stop = asyncio.Event()
        task = asyncio.create_task(runtime.run(stop))

        async def has(n: int) -> Any:
            found = await asyncio.to_thread(ch_rows, front.dsn, f"SELECT id FROM {keyspace}_ch.events FINAL")
            return True if len(found) == n else len(found)

        try:
            await outage(
                runtime, "ch", lambda i: session.execute(insert, (i, f"body {i}")), has, front.stop, front.start
            )
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)


async def test_a_column_added_in_cassandra_reaches_both_sinks(
    cassandra_v7: CassandraNode, postgres_dsn: str, chdb_dsn: str, tmp_path: Path
) -> None:
    keyspace = new_keyspace(cassandra_v7, "items (id int PRIMARY KEY, name text) WITH cdc = true")
    session = cassandra_v7.session()
    pipeline = load_pipeline(write_config(tmp_path, keyspace, cassandra_v7, postgres_dsn, chdb_dsn))
    runtime = Runtime(pipeline, local_options(cassandra_v7, tmp_path))
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.run(stop))
    try:
        session.execute(f"INSERT INTO {keyspace}.items (id, name) VALUES (1, 'one')")

        async def first_row() -> Any:
            rows = await pg_rows(postgres_dsn, f"SELECT * FROM {keyspace}.items")
            return True if len(rows) == 1 else rows

        await wait_until(first_row, what="the first row")
        session.execute(f"ALTER TABLE {keyspace}.items ADD price decimal")
        session.execute(f"INSERT INTO {keyspace}.items (id, name, price) VALUES (2, 'two', 2.50)")

        async def evolved() -> Any:
            pg = {r["id"]: r.get("price") for r in await pg_rows(postgres_dsn, f"SELECT * FROM {keyspace}.items")}
            ch = {r["id"]: r.get("price") for r in ch_rows(chdb_dsn, f"SELECT * FROM {keyspace}_ch.items")}
            wanted = {1: None, 2: Decimal("2.50")}
            return (
                True
                if pg == wanted and {k: v if v is None else Decimal(str(v)) for k, v in ch.items()} == wanted
                else (pg, ch)
            )

        await wait_until(evolved, what="the new column with its value in both sinks")
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
