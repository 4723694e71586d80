"""The TimescaleDB sink: the PostgreSQL sink with its row tables as hypertables.

Everything about merging, tombstones and checkpoints is the PostgreSQL
sink's. Differences: start-up fails with ``MissingExtensionError`` naming the
database when the timescaledb extension is absent, and each ``t__rows``
becomes a hypertable partitioned ``by_range`` on the configured time column.
TimescaleDB requires every unique index to include that column, so the time
column must be part of the Cassandra primary key, and partitions by time or
by integers, so it must be a ``timestamp`` or ``date`` (chunk interval: an
interval such as ``7 days``) or an integer column (chunk interval: a whole
number). Both are checked up front, with a ``ConfigError`` that names the
table and column.
"""

from __future__ import annotations

import ssl

import asyncpg

from pipeline_runtime.cql.schema import TableSchema
from pipeline_runtime.cql.types import Kind
from pipeline_runtime.errors import ConfigError
from pipeline_runtime.sinks.base import TableNaming
from pipeline_runtime.sinks.errors import MissingExtensionError
from pipeline_runtime.sinks.postgres.errors import boundary
from pipeline_runtime.sinks.postgres.history import PostgresHistorySink
from pipeline_runtime.sinks.postgres.sink import PostgresSink
from pipeline_runtime.sinks.postgres.sql import TableSql

#: Column types a hypertable partitions by, and the SQL type their chunk interval is given in.
INTERVAL_TYPES = {
    Kind.TIMESTAMP: "text::interval",
    Kind.DATE: "text::interval",
    Kind.TINYINT: "bigint",
    Kind.SMALLINT: "bigint",
    Kind.INT: "bigint",
    Kind.BIGINT: "bigint",
}


class TimescaleSink(PostgresSink):
    """PostgreSQL sink whose row tables are TimescaleDB hypertables."""

    def __init__(
        self,
        name: str,
        dsn: str,
        time_column: str,
        naming: TableNaming | None = None,
        *,
        chunk_interval: str = "7 days",
        pool_size: int = 2,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(name, dsn, naming, pool_size=pool_size, tls=tls)
        self.time_column = time_column
        self.chunk_interval = chunk_interval
        self._extension_schema = "public"

    async def _prepare_database(self, conn: asyncpg.Connection) -> None:
        self._extension_schema = await extension_schema(conn, self.name)
        await super()._prepare_database(conn)

    async def ensure_table(self, schema: TableSchema) -> None:
        self._interval(schema)  # fails before any table is created
        await super().ensure_table(schema)

    def _interval(self, schema: TableSchema) -> tuple[str, str | int]:
        """The chunk interval's SQL type and value for ``schema``'s time column; ConfigError if unusable."""
        where = f"sink {self.name}: table {schema.qualified_name}"
        column = next((c for c in schema.primary_key if c.name == self.time_column), None)
        if column is None:
            raise ConfigError(
                f"{where} has no primary-key column {self.time_column!r}; "
                "TimescaleDB needs the time column in every unique index"
            )
        sql_type = INTERVAL_TYPES.get(column.type.kind)
        if sql_type is None:
            raise ConfigError(
                f"{where}: column {column.name} is {column.type.kind.value}; a hypertable partitions by a "
                "timestamp, date or integer column"
            )
        if sql_type != "bigint":
            return sql_type, self.chunk_interval
        try:
            return sql_type, int(self.chunk_interval)
        except ValueError:
            raise ConfigError(
                f"{where}: column {column.name} is an integer, so timescale.chunkInterval must be a whole number "
                f"(how many of its units one chunk spans), not {self.chunk_interval!r}"
            ) from None

    async def _after_create(self, conn: asyncpg.Connection, sql: TableSql) -> None:
        sql_type, interval = self._interval(sql.layout.schema)
        schema = self._extension_schema
        await conn.execute(
            f"SELECT {schema}.create_hypertable($1::regclass, {schema}.by_range($2::name, $3::{sql_type}), "
            "if_not_exists => TRUE, migrate_data => TRUE)",
            sql.rows,
            self.time_column,
            interval,
        )


async def extension_schema(conn: asyncpg.Connection, sink: str) -> str:
    """The schema of the timescaledb extension (quoted where it must be); MissingExtensionError without it.

    Its functions are called schema-qualified: the session's search_path need not include them.
    """
    async with boundary(sink):
        found = await conn.fetchval(
            "SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'timescaledb'"
        )
        database = await conn.fetchval("SELECT current_database()")
    if found is None:
        raise MissingExtensionError(
            str(database),
            "timescaledb",
            "install TimescaleDB on the server and run CREATE EXTENSION timescaledb in that database, "
            "or use a sink of type postgres",
        )
    return str(found)


class TimescaleHistorySink(PostgresHistorySink):
    """``writeMode: append`` on TimescaleDB: each history table a hypertable on the change's writetime."""

    def __init__(
        self,
        name: str,
        dsn: str,
        naming: TableNaming | None = None,
        *,
        chunk_interval: str = "7 days",
        pool_size: int = 2,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(name, dsn, naming, pool_size=pool_size, tls=tls)
        self.chunk_interval = chunk_interval
        self._extension_schema = "public"

    async def _prepare_database(self, conn: asyncpg.Connection) -> None:
        self._extension_schema = await extension_schema(conn, self.name)
        await super()._prepare_database(conn)

    async def _after_history_create(self, conn: asyncpg.Connection, target: str) -> None:
        schema = self._extension_schema
        try:
            await conn.execute(
                f"SELECT {schema}.create_hypertable($1::regclass, {schema}.by_range('_writetime', $2::text::interval), "
                "if_not_exists => TRUE, migrate_data => TRUE)",
                target,
                self.chunk_interval,
            )
        except asyncpg.DataError as exc:
            raise ConfigError(
                f"sink {self.name}: timescale.chunkInterval {self.chunk_interval!r} is not an interval "
                "(such as 7 days) for the history tables' writetime"
            ) from exc


__all__ = ["TimescaleHistorySink", "TimescaleSink", "extension_schema"]
