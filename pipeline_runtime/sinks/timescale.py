"""The TimescaleDB sink: the PostgreSQL sink with its row tables as hypertables.

Everything about merging, tombstones and checkpoints is the PostgreSQL
sink's. Differences: start-up fails with ``MissingExtensionError`` naming the
database when the timescaledb extension is absent, and each ``t__rows``
becomes a hypertable partitioned ``by_range`` on the configured time column.
TimescaleDB requires every unique index to include that column, so the time
column must be part of the Cassandra primary key (checked up front, with a
``ConfigError`` that names the table and column).
"""

from __future__ import annotations

import asyncpg

from pipeline_runtime.cql.schema import TableSchema
from pipeline_runtime.errors import ConfigError
from pipeline_runtime.sinks.base import TableNaming
from pipeline_runtime.sinks.errors import MissingExtensionError
from pipeline_runtime.sinks.postgres.errors import boundary
from pipeline_runtime.sinks.postgres.sink import PostgresSink
from pipeline_runtime.sinks.postgres.sql import TableSql


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
    ) -> None:
        super().__init__(name, dsn, naming, pool_size=pool_size)
        self.time_column = time_column
        self.chunk_interval = chunk_interval

    async def _prepare_database(self, conn: asyncpg.Connection) -> None:
        async with boundary(self.name):
            found = await conn.fetchval("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")
            database = await conn.fetchval("SELECT current_database()")
        if found is None:
            raise MissingExtensionError(
                str(database),
                "timescaledb",
                "install TimescaleDB on the server and run CREATE EXTENSION timescaledb in that database, "
                "or use a sink of type postgres",
            )
        await super()._prepare_database(conn)

    async def ensure_table(self, schema: TableSchema) -> None:
        if self.time_column not in {c.name for c in schema.primary_key}:
            raise ConfigError(
                f"sink {self.name}: table {schema.qualified_name} has no primary-key column "
                f"{self.time_column!r}; TimescaleDB needs the time column in every unique index"
            )
        await super().ensure_table(schema)

    async def _after_create(self, conn: asyncpg.Connection, sql: TableSql) -> None:
        await conn.execute(
            "SELECT create_hypertable($1::regclass, by_range($2, $3::interval), if_not_exists => TRUE, "
            "migrate_data => TRUE)",
            sql.rows,
            self.time_column,
            self.chunk_interval,
        )


__all__ = ["TimescaleSink"]
