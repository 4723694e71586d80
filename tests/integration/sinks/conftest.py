"""Fixtures for the sink suites: one harness per sink kind, against real servers.

- PostgreSQL: the session server from tests/conftest.py, a fresh database per test.
- ClickHouse: the chdb engine in-process. One process can hold only one chdb
  path (a second path fails with "EmbeddedServer already initialized"), so the
  path is per session and each test writes into its own database.
- TimescaleDB: no server package exists here; tests that need the extension skip.
"""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import clickhouse_connect
import pytest

from pipeline_runtime.cql.schema import TableSchema
from pipeline_runtime.cql.types import Kind
from pipeline_runtime.sinks.base import Sink, TableNaming
from pipeline_runtime.sinks.clickhouse import ClickHouseSink
from pipeline_runtime.sinks.clickhouse import sink as clickhouse_sink
from pipeline_runtime.sinks.postgres import PostgresSink

_numbers = itertools.count(1)


@pytest.fixture(scope="session")
def chdb_dsn() -> Iterator[str]:
    pytest.importorskip("chdb", reason="chdb (the in-process ClickHouse engine) is not installed")
    with tempfile.TemporaryDirectory(prefix="headrace-chdb-") as folder:
        yield f"chdb://{folder}"


@dataclass
class Harness:
    """Makes sinks of one kind and reads back what a user of that sink would see."""

    kind: str
    dsn: str
    namespace: str

    def make(self, name: str = "sink") -> Sink:
        naming = TableNaming(target=self.namespace)
        if self.kind == "postgres":
            return PostgresSink(name, self.dsn, naming)
        return ClickHouseSink(name, self.dsn, naming)

    async def rows(self, schema: TableSchema) -> list[dict[str, Any]]:
        table = schema.name
        if self.kind == "postgres":
            conn = await asyncpg.connect(self.dsn)
            try:
                return [dict(r) for r in await conn.fetch(f'SELECT * FROM "{self.namespace}"."{table}"')]
            finally:
                await conn.close()
        client = _ch_client(self.dsn)
        blobs = {c.name: "bytes" for c in schema.columns if c.type.kind is Kind.BLOB}
        result = client.query(f"SELECT * FROM `{self.namespace}`.`{table}`", column_formats=blobs)
        return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]

    async def stored_text(self) -> str:
        """Every value in every table of the namespace and of the headrace bookkeeping, as text."""
        if self.kind == "postgres":
            conn = await asyncpg.connect(self.dsn)
            try:
                tables = await conn.fetch(
                    "SELECT table_schema, table_name FROM information_schema.tables "
                    "WHERE table_schema IN ($1, 'headrace')",
                    self.namespace,
                )
                parts = []
                for t in tables:
                    rows = await conn.fetch(f'SELECT x::text AS t FROM "{t[0]}"."{t[1]}" x')
                    parts.extend(r["t"] for r in rows)
                return "\n".join(parts)
            finally:
                await conn.close()
        client = _ch_client(self.dsn)
        names = client.query(
            "SELECT name FROM system.tables WHERE database = %(db)s AND engine != 'View'",
            parameters={"db": self.namespace},
        ).result_rows
        parts = []
        for (name,) in names:
            result = client.query(f"SELECT * FROM `{self.namespace}`.`{name}`")
            parts.extend(repr(row) for row in result.result_rows)
        return "\n".join(parts)


_clients: dict[str, Any] = {}


def _ch_client(dsn: str) -> Any:
    if dsn not in _clients:
        _clients[dsn] = clickhouse_connect.get_client(dsn=dsn)
    return _clients[dsn]


@pytest.fixture(params=["postgres", "clickhouse", "clickhouse-python", "timescaledb"])
def harness(request: pytest.FixtureRequest) -> Harness:
    """A sink kind; ``clickhouse`` merges plain upserts in the compiled core when it is built,
    ``clickhouse-python`` always in Python."""
    kind = request.param
    namespace = f"ns{next(_numbers)}"
    if kind == "clickhouse-python":
        request.getfixturevalue("monkeypatch").setattr(clickhouse_sink, "_native", lambda sql: None)
        kind = "clickhouse"
    if kind == "timescaledb":
        pytest.skip(
            "timescaledb is not installed here (no TimescaleDB package in these registries); "
            "its plain-PostgreSQL behaviour is the postgres case, its start-up check has its own test"
        )
    if kind == "postgres":
        return Harness(kind, request.getfixturevalue("postgres_dsn"), namespace)
    return Harness(kind, request.getfixturevalue("chdb_dsn"), namespace)


@pytest.fixture
async def opened(harness: Harness) -> AsyncIterator[Sink]:
    sink = harness.make()
    await sink.open()
    try:
        yield sink
    finally:
        await sink.close()
