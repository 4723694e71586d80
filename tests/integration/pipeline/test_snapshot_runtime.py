"""The initial snapshot in the whole runtime: tables that held data before the pipeline, live writes beside it.

Oracle as everywhere (docs/sinks.md): when the snapshot is done and writes have stopped, each sink table read
as its users read it equals Cassandra's ``SELECT *``. The kill test stops the runtime process with SIGKILL
while it snapshots and checks it resumes from its marks rather than from the start.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import clickhouse_connect
import pytest
import yaml

from devservices.cassandra import CassandraNode
from devservices.process import free_port
from devservices.sinkview import clickhouse_rows, compare, differences, keyed, postgres_rows
from pipeline_runtime.app import Runtime
from pipeline_runtime.config.loader import load_pipeline
from pipeline_runtime.cql.schema import TableSchema
from tests.integration.pipeline.test_end_to_end import local_options, new_keyspace, wait_until
from tests.integration.snapshot.support import preload, registry_schema

pytestmark = [pytest.mark.cassandra, pytest.mark.postgres]

#: Created without CDC: the rows loaded before the pipeline are not in cdc_raw, as with data written long before
#: a pipeline starts; ``cdc_on`` turns CDC on once they are loaded.
BULK = "bulk (k int, ck int, v text, n bigint, tags set<text>, PRIMARY KEY (k, ck)) WITH cdc = false"


async def run_until(runtime: Runtime, done: Callable[[], Awaitable[Any]], what: str) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.run(stop))
    try:
        await wait_until(done, 90, what)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def cdc_on_after_preload(
    node: CassandraNode, keyspace: str, tmp: Path, sinks: dict[str, str], *tables: str
) -> None:
    """Make the loaded rows history: the pipeline's checkpoint moves past them, then their tables get CDC.

    Rows written before a pipeline exists are usually long gone from cdc_raw. Here they share a segment
    with what follows, so a first run (mode never, a marker table only) commits a checkpoint past them;
    the runs of the test start from it, and only the snapshot can bring the loaded rows.
    """
    node.session().execute(f"CREATE TABLE {keyspace}.marker (id int PRIMARY KEY) WITH cdc = true")
    path = pipeline_yaml(tmp, keyspace, node, sinks, tables=["marker"], mode="never")
    runtime = Runtime(load_pipeline(path), local_options(node, tmp))

    async def marker_committed() -> Any:
        await asyncio.to_thread(node.session().execute, f"INSERT INTO {keyspace}.marker (id) VALUES (1)")
        committed = runtime.runner.progress.events_committed if runtime.runner else 0
        return True if committed >= 1 else "waiting for the marker row"

    await run_until(runtime, marker_committed, "the checkpoint past the loaded rows")
    for table in tables:
        node.session().execute(f"ALTER TABLE {keyspace}.{table} WITH cdc = true")


def load_bulk(node: CassandraNode, keyspace: str, partitions: int, rows: int = 3) -> int:
    session = node.session(keyspace)
    insert = session.prepare("INSERT INTO bulk (k, ck, v, n, tags) VALUES (?, ?, ?, ?, ?)")
    args = [(k, ck, f"v{k}-{ck}", k * ck, {f"t{ck}"}) for k in range(partitions) for ck in range(rows)]
    from cassandra.concurrent import execute_concurrent_with_args  # noqa: PLC0415

    execute_concurrent_with_args(session, insert, args, concurrency=64, raise_on_first_error=True)
    return len(args)


def pipeline_yaml(tmp: Path, keyspace: str, node: CassandraNode, sinks: dict[str, str], **snapshot: Any) -> Path:
    secrets = tmp / "secrets"
    entries = []
    for name, dsn in sinks.items():
        (secrets / name).mkdir(parents=True, exist_ok=True)
        (secrets / name / "dsn").write_text(dsn)
        entry = {
            "name": name,
            "type": "clickhouse" if dsn.startswith("chdb") else "postgres",
            "connectionSecret": {"name": name, "key": "dsn"},
            "flushIntervalMs": 100,
        }
        if dsn.startswith("chdb"):
            entry["target"] = f"{keyspace}_{name}"
        entries.append(entry)
    tables = snapshot.pop("tables", ["*"])
    config = {
        "apiVersion": "headrace.io/v1alpha1",
        "kind": "CDCPipeline",
        # Named after the keyspace: tests share one chdb engine, whose checkpoints are per pipeline and node.
        "metadata": {"name": f"snap-{keyspace.replace('_', '-')}", "namespace": "test"},
        "spec": {
            "source": {
                "cassandra": {"contactPoint": node.host, "port": node.port},
                "tables": [{"keyspace": keyspace, "table": t} for t in tables],
                "snapshot": snapshot,
            },
            "sinks": entries,
        },
    }
    path = tmp / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


async def workload(node: CassandraNode, keyspace: str, seconds: float, partitions: int) -> int:
    """Updates, partial updates and deletes of rows, ranges and partitions of ``bulk`` and ``t`` for a while."""
    session = node.session(keyspace)
    rng = random.Random(7)
    statements = [
        "UPDATE bulk SET v = 'live {i}' WHERE k = {k} AND ck = 0",
        "UPDATE bulk SET tags = tags + {{'live'}} WHERE k = {k} AND ck = 1",
        "DELETE FROM bulk WHERE k = {k} AND ck = 2",
        "DELETE FROM bulk WHERE k = {k} AND ck >= 1",
        "DELETE FROM bulk WHERE k = {k}",
        "INSERT INTO bulk (k, ck, v) VALUES ({k}, 7, 'new {i}')",
        "UPDATE t SET a = 'live {i}' WHERE k = {small} AND ck = 0",
        "DELETE l FROM t WHERE k = {small} AND ck = 0",
        "UPDATE t SET m['live'] = {i} WHERE k = {small} AND ck = 1",
    ]
    done = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        statement = rng.choice(statements).format(i=done, k=rng.randrange(partitions), small=rng.randrange(12))
        await asyncio.to_thread(session.execute, statement)
        done += 1
        await asyncio.sleep(0.005)
    return done


async def assert_sink_equals(node: CassandraNode, keyspace: str, schema: TableSchema, read: Any, kind: str) -> None:
    result = node.session(keyspace).execute(f"SELECT * FROM {schema.name}")
    expected = keyed(schema, [dict(zip(result.column_names, r, strict=True)) for r in result], sink=False)

    async def equal() -> Any:
        actual = keyed(schema, await read(schema), sink=True)
        comparison = compare(schema.name, kind, expected, actual)
        return True if comparison.equal else "\n".join(differences(comparison, expected, actual)[:8])

    await wait_until(equal, 60, f"{kind} {schema.qualified_name} equals Cassandra")


async def snapshot_done(runtime: Runtime, tables: int) -> Any:
    run = runtime.runner.snapshot if runtime.runner else None
    if run is None:
        return "no snapshot yet"
    states = {name: s.state for name, s in run.status().items()}
    return True if len(states) == tables and set(states.values()) == {"done"} else states


async def test_preloaded_tables_arrive_whole_while_writes_go_on(
    cassandra: CassandraNode, postgres_dsn: str, chdb_dsn: str, tmp_path: Path
) -> None:
    keyspace = new_keyspace(cassandra, BULK)
    preload(cassandra.session(keyspace), cdc=False)  # every column kind, statics, TTLs, old timestamps
    rows = load_bulk(cassandra, keyspace, partitions=400)
    sinks = {"pg": postgres_dsn, "ch": chdb_dsn}
    await cdc_on_after_preload(cassandra, keyspace, tmp_path, sinks, "bulk", "t")
    path = pipeline_yaml(tmp_path, keyspace, cassandra, sinks, fetchSize=100)
    runtime = Runtime(load_pipeline(path), local_options(cassandra, tmp_path))
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.run(stop))
    try:
        writes = await workload(cassandra, keyspace, 4.0, partitions=400)
        assert writes > 50
        await wait_until(lambda: snapshot_done(runtime, 3), 90, "snapshot of bulk, t and marker done")
        client = clickhouse_connect.get_client(dsn=chdb_dsn)
        for table in ("bulk", "t"):
            _, schema = registry_schema(cassandra, keyspace, table)
            await assert_sink_equals(
                cassandra, keyspace, schema, lambda s: postgres_rows(postgres_dsn, keyspace, s.name), "postgres"
            )
            await assert_sink_equals(
                cassandra,
                keyspace,
                schema,
                lambda s: asyncio.to_thread(clickhouse_rows, client, f"{keyspace}_ch", s.name, s),
                "clickhouse",
            )
        status = runtime.node_status().snapshot[f"{keyspace}.bulk"]
        assert status.rows_read >= rows - writes  # rows deleted before the snapshot reached them are not read
        assert status.ranges_done == status.ranges_total == 2  # one token, two ranges around the ring
        assert status.eta_seconds == 0.0
        assert runtime.http is not None
        url = f"http://127.0.0.1:{runtime.http.port}/metrics"
        pipeline = runtime.pipeline.name
        metrics = (await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read())).decode()
        read = re.search(
            rf'headrace_snapshot_rows_total{{node="node-0",pipeline="{pipeline}",table="{keyspace}.bulk"}} (\S+)',
            metrics,
        )
        assert read is not None and float(read.group(1)) == status.rows_read
        assert (
            f'headrace_snapshot_ranges{{node="node-0",pipeline="{pipeline}",state="done",table="{keyspace}.bulk"}} 2.0'
            in metrics
        )
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def test_never_initial_later_tables_requests_and_the_throttle(
    cassandra_v7: CassandraNode, postgres_dsn: str, tmp_path: Path
) -> None:
    node = cassandra_v7
    keyspace = new_keyspace(node, BULK, "later (id int PRIMARY KEY, v text) WITH cdc = false")
    rows = load_bulk(node, keyspace, partitions=500)  # 1500 rows
    node.session(keyspace).execute("INSERT INTO later (id, v) VALUES (1, 'before')")
    await cdc_on_after_preload(node, keyspace, tmp_path, {"pg": postgres_dsn}, "bulk", "later")
    session = node.session(keyspace)
    options = local_options(node, tmp_path)

    async def pg_count(table: str) -> int:
        return len(await postgres_rows(postgres_dsn, keyspace, table))

    # never: only what is written after the start arrives
    never = pipeline_yaml(tmp_path, keyspace, node, {"pg": postgres_dsn}, tables=["bulk"], mode="never")
    runtime = Runtime(load_pipeline(never), options)

    async def live_row_arrived() -> Any:
        await asyncio.to_thread(session.execute, "INSERT INTO bulk (k, ck, v) VALUES (-1, 0, 'live')")
        return True if await pg_count("bulk") >= 1 else "waiting"

    await run_until(runtime, live_row_arrived, "the live row in PostgreSQL")
    assert runtime.runner is not None and runtime.runner.snapshot is None
    assert await pg_count("bulk") == 1

    # initial, throttled to 1000 rows/s: the table arrives whole, never faster than asked (the throttle is a
    # ceiling; unthrottled this table reads at well over 10,000 rows/s, and a loaded machine may read slower)
    initial = pipeline_yaml(tmp_path, keyspace, node, {"pg": postgres_dsn}, tables=["bulk"], rowsPerSecond=1000)
    runtime = Runtime(load_pipeline(initial), options)
    await run_until(runtime, lambda: snapshot_done(runtime, 1), "bulk snapshotted")
    status = runtime.node_status().snapshot[f"{keyspace}.bulk"]
    assert status.rows_read == rows + 1
    assert 0 < status.rows_per_second <= 1050, status
    assert await pg_count("bulk") == rows + 1

    # a table selected later is snapshotted; the one already done is not read again
    both = pipeline_yaml(tmp_path, keyspace, node, {"pg": postgres_dsn}, tables=["bulk", "later"])
    runtime = Runtime(load_pipeline(both), options)
    await run_until(runtime, lambda: snapshot_done(runtime, 2), "later snapshotted")
    statuses = runtime.node_status().snapshot
    assert statuses[f"{keyspace}.bulk"].rows_read == 0
    assert statuses[f"{keyspace}.later"].rows_read == 1
    assert [r["v"] for r in await postgres_rows(postgres_dsn, keyspace, "later")] == ["before"]

    # a request reads every table again and changes nothing that was right
    _, schema = registry_schema(node, keyspace, "bulk")
    before = keyed(schema, await postgres_rows(postgres_dsn, keyspace, "bulk"), sink=True)
    again = pipeline_yaml(tmp_path, keyspace, node, {"pg": postgres_dsn}, tables=["bulk", "later"], request="r1")
    runtime = Runtime(load_pipeline(again), options)
    await run_until(runtime, lambda: snapshot_done(runtime, 2), "requested snapshot done")
    statuses = runtime.node_status().snapshot
    assert statuses[f"{keyspace}.bulk"].rows_read == rows + 1
    assert statuses[f"{keyspace}.later"].rows_read == 1
    assert keyed(schema, await postgres_rows(postgres_dsn, keyspace, "bulk"), sink=True) == before
    await assert_sink_equals(
        node, keyspace, schema, lambda s: postgres_rows(postgres_dsn, keyspace, s.name), "postgres"
    )


def scrape(port: int, keyspace: str) -> float:
    """Snapshot rows the runtime process committed so far (0 before its endpoint answers)."""
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return 0.0
    found = re.search(rf'headrace_snapshot_rows_total{{[^}}]*table="{keyspace}.bulk"}} (\S+)', text)
    return float(found.group(1)) if found else 0.0


def test_kill_9_during_the_snapshot_resumes_from_the_last_page(
    cassandra_v7: CassandraNode, postgres_dsn: str, tmp_path: Path
) -> None:
    node = cassandra_v7
    keyspace = new_keyspace(node, BULK)
    rows = load_bulk(node, keyspace, partitions=1000)  # 3000 rows
    asyncio.run(cdc_on_after_preload(node, keyspace, tmp_path, {"pg": postgres_dsn}, "bulk"))
    config = pipeline_yaml(tmp_path, keyspace, node, {"pg": postgres_dsn}, fetchSize=100, rowsPerSecond=1500)
    base = [
        sys.executable, "-m", "pipeline_runtime", "run", "--config", str(config), "--node", "node-0",
        "--cdc-raw", str(node.cdc_raw_dir), "--secrets-dir", str(tmp_path / "secrets"),
        "--dead-letter-dir", str(tmp_path / "dead"), "--http-host", "127.0.0.1",
    ]  # fmt: skip
    read_before_kills = 0.0
    for kill_at in (rows // 4, rows // 2):
        port = free_port()
        process = subprocess.Popen([*base, "--http-port", str(port)], stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 60
            while (seen := scrape(port, keyspace)) < kill_at:
                assert process.poll() is None, process.stderr.read() if process.stderr else ""
                assert time.monotonic() < deadline, f"only {seen} rows read after 60 s"
                time.sleep(0.05)
            process.send_signal(signal.SIGKILL)
            process.wait(10)
            read_before_kills += seen
        finally:
            if process.poll() is None:
                process.kill()
    port = free_port()
    process = subprocess.Popen([*base, "--http-port", str(port)], stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(180, process.kill)  # a runtime that never finishes ends the loop below
    watchdog.start()
    try:
        log: list[dict[str, Any]] = []
        assert process.stderr is not None
        for line in process.stderr:
            if line.startswith("{"):
                log.append(json.loads(line))
            if log and log[-1].get("msg") == "snapshot done":
                break
        last_run = scrape(port, keyspace)
    finally:
        watchdog.cancel()
        process.send_signal(signal.SIGTERM)
        process.wait(30)
    assert any(entry.get("msg") == "snapshot done" for entry in log), log[-5:]
    started = next(entry for entry in log if entry.get("msg") == "snapshot started")
    assert started["ranges"] == 2 and started["table"] == f"{keyspace}.bulk"
    assert read_before_kills >= rows // 4 + rows // 2
    # resumed from the marks: everything read over three processes is well under twice the table
    assert read_before_kills + last_run < 2 * rows, (read_before_kills, last_run)
    assert last_run <= rows - rows // 2 + 2 * 100  # at most two pages in flight were lost to the kill
    _, schema = registry_schema(node, keyspace, "bulk")
    asyncio.run(
        assert_sink_equals(node, keyspace, schema, lambda s: postgres_rows(postgres_dsn, keyspace, s.name), "postgres")
    )

    # `headrace snapshot` reads the table again on demand, then exits
    again = subprocess.run(
        [sys.executable, "-m", "pipeline_runtime", "snapshot", "--config", str(config), "--node", "node-0",
         "--cdc-raw", str(node.cdc_raw_dir), "--secrets-dir", str(tmp_path / "secrets"),
         "--table", f"{keyspace}.bulk"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    done = [json.loads(x) for x in again.stderr.splitlines() if '"snapshot done"' in x]
    assert done and done[0]["rows"] == rows
    unknown = subprocess.run(
        [sys.executable, "-m", "pipeline_runtime", "snapshot", "--config", str(config), "--node", "node-0",
         "--cdc-raw", str(node.cdc_raw_dir), "--secrets-dir", str(tmp_path / "secrets"),
         "--table", f"{keyspace}.nope"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert unknown.returncode == 2
    assert f"not a selected table with CDC on: {keyspace}.nope" in unknown.stderr
