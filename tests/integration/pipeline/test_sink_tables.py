"""``sinks[].tables`` and ``tableMapping``: each sink receives only the tables it selects, under the names it
maps them to, from a real Cassandra (both formats)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import asyncpg
import clickhouse_connect
import pytest
import yaml

from devservices.cassandra import CassandraNode
from pipeline_runtime.app import Runtime
from pipeline_runtime.config.loader import load_pipeline
from pipeline_runtime.pipeline.runner import BatchPolicy
from tests.integration.pipeline.test_end_to_end import local_options, new_keyspace, wait_until
from tests.integration.pipeline.test_snapshot_runtime import pipeline_yaml

pytestmark = [pytest.mark.cassandra, pytest.mark.postgres, pytest.mark.clickhouse]


async def test_each_sink_receives_the_tables_it_selects_under_its_names(
    cassandra: CassandraNode, postgres_dsn: str, chdb_dsn: str, tmp_path: Path
) -> None:
    keyspace = new_keyspace(
        cassandra,
        "metrics (host text, at timestamp, v double, PRIMARY KEY (host, at)) WITH cdc = true",
        "users (id int PRIMARY KEY, name text) WITH cdc = true",
    )
    path = pipeline_yaml(tmp_path, keyspace, cassandra, {"pg": postgres_dsn, "ch": chdb_dsn}, mode="never")
    config = yaml.safe_load(path.read_text())
    config["spec"]["sinks"][0]["tables"] = [{"keyspace": keyspace, "table": "met*"}]  # pg: the time series only
    config["spec"]["sinks"][0]["tableMapping"] = {f"{keyspace}.metrics": "host_series"}
    config["spec"]["sinks"][0]["batchSize"] = 4  # the smallest batchSize and flushIntervalMs apply to all sinks
    config["spec"]["sinks"][0]["flushIntervalMs"] = 1000
    config["spec"]["sinks"][1]["flushIntervalMs"] = 250
    path.write_text(yaml.safe_dump(config))
    session = cassandra.session(keyspace)
    runtime = Runtime(load_pipeline(path), local_options(cassandra, tmp_path))
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.run(stop))
    client = clickhouse_connect.get_client(dsn=chdb_dsn)

    async def pg_tables() -> set[str]:
        conn = await asyncpg.connect(postgres_dsn)
        try:
            rows = await conn.fetch(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = $1", keyspace
            )
        finally:
            await conn.close()
        return {r["table_name"] for r in rows}

    try:
        for n in range(5):
            session.execute(f"INSERT INTO metrics (host, at, v) VALUES ('h', {1_700_000_000_000 + n}, {n}.5)")
            session.execute(f"INSERT INTO users (id, name) VALUES ({n}, 'u{n}')")

        async def arrived() -> Any:
            try:
                counts = [
                    client.command(f"SELECT count() FROM `{keyspace}_ch`.`{table}`") for table in ("metrics", "users")
                ]
                conn = await asyncpg.connect(postgres_dsn)
                try:
                    counts.append(await conn.fetchval(f'SELECT count(*) FROM "{keyspace}"."host_series"'))
                finally:
                    await conn.close()
            except Exception as exc:  # tables appear with the first batch
                return repr(exc)
            return True if counts == [5, 5, 5] else counts

        await wait_until(arrived, 60, "metrics in both sinks, users in ClickHouse")
        assert runtime.runner is not None and runtime.runner.batching == BatchPolicy(max_events=4, max_wait=0.25)
        assert runtime.runner is not None and not runtime.runner.progress.last_error
        # PostgreSQL never got the users table, nor a row of it; metrics landed under its mapped name only.
        tables = await pg_tables()
        assert "host_series" in tables and not any(n.startswith(("users", "metrics")) for n in tables), tables
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
