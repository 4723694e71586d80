"""``writeMode: append`` on ClickHouse: each change one row of ``<table>_changes`` (``sinks.history``).

The table is a ``ReplacingMergeTree`` ordered by the change's identity (source node, segment,
offset, change id): a batch delivered again collapses into the rows already there at the next merge,
and ``SELECT ... FINAL`` (or ``count() ... FINAL``) is exact at once. An insert retried with the same
rows carries the same deduplication token. The checkpoint is inserted after the rows, as in the
upsert sink.
"""

from __future__ import annotations

import hashlib
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline_runtime.cql.schema import TableSchema
from pipeline_runtime.errors import SinkError
from pipeline_runtime.events import ChangeEvent
from pipeline_runtime.sinks.base import Batch, TableNaming, by_table
from pipeline_runtime.sinks.clickhouse.ddl import evolve
from pipeline_runtime.sinks.clickhouse.errors import boundary
from pipeline_runtime.sinks.clickhouse.sink import ClickHouseSink
from pipeline_runtime.sinks.clickhouse.sql import ident
from pipeline_runtime.sinks.clickhouse.typemap import ch_encoder, nullable
from pipeline_runtime.sinks.history import META_COLUMNS, HistoryLayout, history_row, history_table, recorded

#: The meta columns' types; ``_writetime`` is µs, ``_expires_at`` seconds since the epoch.
META_TYPES = {
    "_node": "String",
    "_segment": "Int64",
    "_offset": "Int64",
    "_change": "UUID",
    "_op": "LowCardinality(String)",
    "_static": "Bool",
    "_writetime": "DateTime64(6, 'UTC')",
    "_ttl": "Nullable(Int32)",
    "_expires_at": "Nullable(DateTime('UTC'))",
    "_deleted": "Array(String)",
    "_range_start": "Nullable(String)",
    "_range_end": "Nullable(String)",
}
ORDER_BY = ("_node", "_segment", "_offset", "_change")


def _same(value: Any) -> Any:
    return value


def column_types(layout: HistoryLayout) -> list[tuple[str, str]]:
    """Every column of the history table and its ClickHouse type."""
    data = [
        (c.name, "Nullable(String)" if layout.is_change_column(c) else nullable(c.type)) for c in layout.data_columns
    ]
    return [*META_TYPES.items(), *data]


@dataclass
class _History:
    target: str
    layout: HistoryLayout
    columns: list[tuple[str, str]]
    encoders: list[Callable[[Any], Any]]

    def rows(self, events: Sequence[ChangeEvent]) -> list[list[Any]]:
        encoders = self.encoders
        return [
            [None if v is None else encode(v) for encode, v in zip(encoders, history_row(self.layout, e), strict=True)]
            for e in recorded(events)
        ]


class ClickHouseHistorySink(ClickHouseSink):
    """The ClickHouse sink in ``append`` mode: a history of every change, idempotent under redelivery."""

    def __init__(
        self, name: str, dsn: str, naming: TableNaming | None = None, *, tls: ssl.SSLContext | None = None
    ) -> None:
        # Rows of a history are never merged with each other: nothing for concurrent writers to settle.
        super().__init__(name, dsn, naming, settle=lambda: False, tls=tls)
        self._histories: dict[str, _History] = {}

    async def ensure_table(self, schema: TableSchema) -> None:
        layout = HistoryLayout(schema)
        database, name = history_table(self._naming, schema, self.name)
        target = f"{ident(database)}.{ident(name)}"
        columns = column_types(layout)
        body = ", ".join(f"{ident(n)} {t}" for n, t in columns)
        order = ", ".join(ORDER_BY)
        await self._call(self.client.command, f"CREATE DATABASE IF NOT EXISTS {ident(database)}")
        await self._call(
            self.client.command,
            f"CREATE TABLE IF NOT EXISTS {target} ({body}) ENGINE = ReplacingMergeTree ORDER BY ({order})",
        )
        await self._call(
            evolve, self.client, database, name, target, columns, schema.qualified_name, frozenset(META_TYPES)
        )
        encoders: list[Callable[[Any], Any]] = [_same for _ in META_COLUMNS]
        for column in layout.data_columns:
            change = layout.is_change_column(column)
            encoders.append(_same if change else ch_encoder(column.type, schema.qualified_name, column.name))
        self._histories[schema.qualified_name] = _History(target, layout, columns, encoders)

    async def write(self, batch: Batch) -> None:
        tables = by_table(batch.events)
        for qualified, events in sorted(tables.items()):
            history = self._histories.get(qualified)
            if history is None:
                raise SinkError(f"sink {self.name}: table {qualified} was not prepared with ensure_table")
            async with boundary(self.name):  # encoding errors become RowRejectedError here
                rows = history.rows(events)
            token = hashlib.sha256(
                f"{self.name}|{qualified}|".encode() + b"|".join(str(r[:4]).encode() for r in rows)
            ).hexdigest()
            await self._insert(history.target, history.columns, rows, token)
        if self.before_checkpoint is not None:
            await self.before_checkpoint()
        if batch.checkpoint is not None:
            await self._store_checkpoint(batch.checkpoint)
        self._health.committed(len(batch.events))


__all__ = ["ClickHouseHistorySink", "column_types"]
