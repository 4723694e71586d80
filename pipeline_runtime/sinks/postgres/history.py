"""``writeMode: append`` on PostgreSQL: each change one row of ``<table>_changes`` (``sinks.history``).

Rows go in with COPY into a transaction-local stage, then ``INSERT ... ON CONFLICT DO NOTHING`` on
the table's unique key (source node, segment, offset, change id, writetime): a batch delivered again
adds nothing. The rows and the checkpoint commit in one transaction, as in the upsert sink. New
Cassandra columns are added; a column that changed type or disappeared is drift (``SchemaDriftError``).
"""

from __future__ import annotations

import hashlib
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from pipeline_runtime.cql.schema import TableSchema
from pipeline_runtime.errors import SinkError
from pipeline_runtime.events import ChangeEvent
from pipeline_runtime.sinks.base import Batch, TableNaming, by_table
from pipeline_runtime.sinks.history import (
    META_COLUMNS,
    UNIQUE_KEY,
    HistoryLayout,
    history_row,
    history_table,
    recorded,
)
from pipeline_runtime.sinks.postgres.ddl import DDL_LOCK, evolve
from pipeline_runtime.sinks.postgres.errors import boundary
from pipeline_runtime.sinks.postgres.sink import PostgresSink, store_checkpoint
from pipeline_runtime.sinks.postgres.sql import ident
from pipeline_runtime.sinks.postgres.typemap import PG_EPOCH_MICROS, pg_encoder, pg_type

#: The meta columns' types (``_writetime`` and ``_expires_at`` are timestamptz, given as µs from 2000).
META_TYPES = {
    "_node": "text NOT NULL",
    "_segment": "bigint NOT NULL",
    "_offset": "bigint NOT NULL",
    "_change": "uuid NOT NULL",
    "_op": "text NOT NULL",
    "_static": "boolean NOT NULL",
    "_writetime": "timestamp with time zone NOT NULL",
    "_ttl": "integer",
    "_expires_at": "timestamp with time zone",
    "_deleted": "text[]",
    "_range_start": "jsonb",
    "_range_end": "jsonb",
}


def _same(value: Any) -> Any:
    return value


def _micros_from_2000(micros: int) -> int:
    return micros - PG_EPOCH_MICROS


def _seconds_from_2000(seconds: int | None) -> int | None:
    return None if seconds is None else seconds * 1_000_000 - PG_EPOCH_MICROS


_META_ENCODERS: dict[str, Callable[[Any], Any]] = {"_writetime": _micros_from_2000, "_expires_at": _seconds_from_2000}


@dataclass
class _History:
    target: str
    layout: HistoryLayout
    encoders: list[Callable[[Any], Any]]

    @property
    def stage(self) -> str:
        return ident("_hist_" + hashlib.sha256(self.target.encode()).hexdigest()[:16])

    def records(self, events: Sequence[ChangeEvent]) -> list[tuple[Any, ...]]:
        encoders = self.encoders
        out = []
        for event in recorded(events):
            row = history_row(self.layout, event)
            out.append(tuple(None if v is None else encode(v) for encode, v in zip(encoders, row, strict=True)))
        return out


def column_types(layout: HistoryLayout) -> dict[str, str]:
    """Every column of the history table and its PostgreSQL type."""
    data = {c.name: "jsonb" if layout.is_change_column(c) else pg_type(c.type) for c in layout.data_columns}
    return {**META_TYPES, **data}


class PostgresHistorySink(PostgresSink):
    """The PostgreSQL sink in ``append`` mode: a history of every change, idempotent under redelivery."""

    def __init__(
        self,
        name: str,
        dsn: str,
        naming: TableNaming | None = None,
        *,
        pool_size: int = 2,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(name, dsn, naming, pool_size=pool_size, tls=tls)
        self._histories: dict[str, _History] = {}

    async def ensure_table(self, schema: TableSchema) -> None:
        layout = HistoryLayout(schema)
        namespace, name = history_table(self._naming, schema, self.name)
        target = f"{ident(namespace)}.{ident(name)}"
        types = column_types(layout)
        columns = ", ".join(f"{ident(n)} {t}" for n, t in types.items())
        key = ", ".join(ident(n) for n in UNIQUE_KEY)
        async with boundary(self.name), self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", DDL_LOCK)
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {ident(namespace)}")
            await conn.execute(f"CREATE TABLE IF NOT EXISTS {target} ({columns}, PRIMARY KEY ({key}))")
            expected: dict[str, str | None] = {n: t.removesuffix(" NOT NULL") for n, t in types.items()}
            await evolve(conn, f"{namespace}.{name}", target, expected)
            await self._after_history_create(conn, target)
        encoders = [_META_ENCODERS.get(n, _same) for n in META_COLUMNS]
        for column in layout.data_columns:
            change = layout.is_change_column(column)
            encoders.append(_same if change else pg_encoder(column.type, schema.qualified_name, column.name))
        self._histories[schema.qualified_name] = _History(target, layout, encoders)

    async def _after_history_create(self, conn: asyncpg.Connection, target: str) -> None:
        """Hook for TimescaleDB: make the history table a hypertable on ``_writetime``."""

    async def write(self, batch: Batch) -> None:
        tables = by_table(batch.events)
        work = []
        histories = self._histories
        async with boundary(self.name):  # encoding errors become RowRejectedError here
            for qualified, events in sorted(tables.items()):
                history = histories.get(qualified)
                if history is None:
                    raise SinkError(f"sink {self.name}: table {qualified} was not prepared with ensure_table")
                work.append((history, history.records(events)))
        async with boundary(self.name), self.pool.acquire() as conn, conn.transaction():
            for history, records in work:
                names = history.layout.column_names
                columns = ", ".join(ident(n) for n in names)
                await conn.execute(f"CREATE TEMP TABLE {history.stage} (LIKE {history.target}) ON COMMIT DROP")
                await conn.copy_records_to_table(history.stage.strip('"'), records=records, columns=names)
                await conn.execute(
                    f"INSERT INTO {history.target} ({columns}) SELECT {columns} FROM {history.stage} "  # noqa: S608 - quoted identifiers
                    "ON CONFLICT DO NOTHING"
                )
            if self.before_checkpoint is not None:
                await self.before_checkpoint(conn)
            if batch.checkpoint is not None:
                await store_checkpoint(conn, batch.checkpoint)
        self._health.committed(len(batch.events))


__all__ = ["PostgresHistorySink", "column_types"]
