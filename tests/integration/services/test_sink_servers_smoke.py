"""The local PostgreSQL and ClickHouse engine are real and round-trip rows."""

from __future__ import annotations

import datetime as dt
import uuid

import asyncpg
import pytest

from devservices.clickhouse import chdb_client


@pytest.mark.postgres
async def test_postgres_round_trips_rows(postgres_dsn: str) -> None:
    connection = await asyncpg.connect(postgres_dsn)
    try:
        version = await connection.fetchval("SHOW server_version_num")
        assert int(version) >= 150000
        await connection.execute("CREATE TABLE t (id uuid PRIMARY KEY, at timestamptz, body text)")
        rows = [(uuid.uuid4(), dt.datetime(2026, 1, i + 1, tzinfo=dt.UTC), f"row {i}") for i in range(5)]
        await connection.copy_records_to_table("t", records=rows)
        got = await connection.fetch("SELECT id, at, body FROM t ORDER BY at")
        assert [tuple(r) for r in got] == rows
    finally:
        await connection.close()


@pytest.mark.clickhouse
def test_chdb_replacing_merge_tree_keeps_newest_version() -> None:
    client = chdb_client()
    database = f"smoke_{uuid.uuid4().hex[:8]}"
    client.command(f"CREATE DATABASE {database}")
    client.command(
        f"CREATE TABLE {database}.t (id Int32, body String, version UInt64, is_deleted UInt8) "
        "ENGINE = ReplacingMergeTree(version, is_deleted) ORDER BY id"
    )
    columns = ["id", "body", "version", "is_deleted"]
    client.insert(f"{database}.t", [[1, "old", 1, 0], [2, "gone", 1, 0]], column_names=columns)
    client.insert(f"{database}.t", [[1, "new", 2, 0], [2, "gone", 2, 1]], column_names=columns)
    rows = client.query(f"SELECT id, body FROM {database}.t FINAL ORDER BY id").result_rows
    assert rows == [(1, "new")]
    assert int(client.query("SELECT version()").result_rows[0][0].split(".")[0]) >= 25
