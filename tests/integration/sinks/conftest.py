"""Fixtures for the sink suites: one harness per sink kind, against real servers.

- PostgreSQL: the session server from tests/conftest.py, a fresh database per test.
- ClickHouse: the chdb engine in-process. One process can hold only one chdb
  path (a second path fails with "EmbeddedServer already initialized"), so the
  path is per session and each test writes into its own database.
- TimescaleDB: no server package exists in these registries; PGlite built with
  the timescaledb extension (npm) runs behind a wire-protocol shim
  (``devservices/timescaledb.py``), one session at a time, so the harness reads
  through the open sink's connection. Row tables become hypertables on the
  test's ``time_column`` marker (default ``ck``, an int clustering column).
"""

from __future__ import annotations

import contextlib
import itertools
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import clickhouse_connect
import pytest

from devservices.pytest_require import require_tool
from devservices.timescaledb import TimescaleServer, running_timescaledb
from pipeline_runtime.cql.schema import TableSchema
from pipeline_runtime.cql.types import Kind
from pipeline_runtime.sinks.base import Sink, TableNaming
from pipeline_runtime.sinks.clickhouse import ClickHouseSink
from pipeline_runtime.sinks.clickhouse import sink as clickhouse_sink
from pipeline_runtime.sinks.postgres import PostgresSink
from pipeline_runtime.sinks.timescale import TimescaleSink

_numbers = itertools.count(1)


#: Chunk width of the integer time column ``ck`` (values 0..3): two chunks, so deletions span both.
CK_CHUNK = "2"


@dataclass
class Harness:
    """Makes sinks of one kind and reads back what a user of that sink would see."""

    kind: str
    dsn: str
    namespace: str
    #: The TimescaleDB kind's hypertable time column.
    time_column: str = "ck"
    made: list[Sink] = field(default_factory=list)

    def make(self, name: str = "sink") -> Sink:
        naming = TableNaming(target=self.namespace)
        sink: Sink
        if self.kind == "postgres":
            sink = PostgresSink(name, self.dsn, naming)
        elif self.kind == "timescaledb":
            interval = CK_CHUNK if self.time_column == "ck" else "30 days"
            sink = TimescaleSink(name, self.dsn, self.time_column, naming, chunk_interval=interval, pool_size=1)
        else:
            sink = ClickHouseSink(name, self.dsn, naming)
        self.made.append(sink)
        return sink

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A PostgreSQL connection: the open sink's own for TimescaleDB (one session at a time there)."""
        for sink in reversed(self.made):
            pool = getattr(sink, "_pool", None)
            if pool is not None:
                async with pool.acquire() as conn:
                    yield conn
                return
        conn = await asyncpg.connect(self.dsn)
        try:
            yield conn
        finally:
            await conn.close()

    async def rows(self, schema: TableSchema) -> list[dict[str, Any]]:
        table = schema.name
        if self.kind in ("postgres", "timescaledb"):
            async with self.connection() as conn:
                return [dict(r) for r in await conn.fetch(f'SELECT * FROM "{self.namespace}"."{table}"')]
        client = _ch_client(self.dsn)
        blobs = {c.name: "bytes" for c in schema.columns if c.type.kind is Kind.BLOB}
        result = client.query(f"SELECT * FROM `{self.namespace}`.`{table}`", column_formats=blobs)
        return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]

    async def stored_text(self) -> str:
        """Every value in every table of the namespace and of the headrace bookkeeping, as text."""
        if self.kind in ("postgres", "timescaledb"):
            async with self.connection() as conn:
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


@pytest.fixture(scope="session")
def timescaledb_server() -> Iterator[TimescaleServer]:
    """PGlite + TimescaleDB for the session (node and npm install and run it)."""
    require_tool("node", "TimescaleDB runs here as PGlite, a Node.js package")
    require_tool("npm", "it installs PGlite with the timescaledb extension")
    with (
        tempfile.TemporaryDirectory(prefix="headrace-timescaledb-") as folder,
        running_timescaledb(Path(folder)) as server,
    ):
        yield server


@pytest.fixture
async def timescaledb_dsn(timescaledb_server: TimescaleServer) -> str:
    """The TimescaleDB server's DSN, its checkpoints emptied: one database serves every test."""
    conn = await asyncpg.connect(timescaledb_server.dsn)
    try:
        await conn.execute("DROP SCHEMA IF EXISTS headrace CASCADE")
    finally:
        await conn.close()
    return timescaledb_server.dsn


@pytest.fixture(params=["postgres", "clickhouse", "clickhouse-python", "clickhouse-http", "timescaledb"])
def harness(request: pytest.FixtureRequest) -> Harness:
    """A sink kind; ``clickhouse`` merges plain upserts in the compiled core when it is built,
    ``clickhouse-python`` always in Python, ``clickhouse-http`` over HTTP (the front over the
    engine, as a user reaches a server); ``timescaledb`` partitions by the ``time_column``
    marker's column (default ``ck``)."""
    kind = request.param
    namespace = f"ns{next(_numbers)}"
    if kind == "clickhouse-http":
        return Harness("clickhouse", request.getfixturevalue("clickhouse_http_dsn"), namespace)
    if kind == "clickhouse-python":
        request.getfixturevalue("monkeypatch").setattr(clickhouse_sink, "_native", lambda sql: None)
        kind = "clickhouse"
    if kind == "timescaledb":
        marker = request.node.get_closest_marker("time_column")
        time_column = marker.args[0] if marker else "ck"
        return Harness(kind, request.getfixturevalue("timescaledb_dsn"), namespace, time_column)
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
