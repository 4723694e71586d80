"""Table id -> decoding plan, refreshed from ``system_schema`` when a mutation names something unknown.

Every table's updates must be walked (a mutation carries no per-table
length), so the registry answers for every table, selected or not; the
selector only decides which ones produce events.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Protocol

from pipeline_runtime.cql.schema import TableSchema
from pipeline_runtime.source.commitlog.plan import ColumnPlan, TablePlan, build_plan, column_plan, live_column_plan
from pipeline_runtime.source.errors import UnknownColumnError, UnknownTableError
from pipeline_runtime.source.schema.rows import SchemaRows, build_schemas

TableSelector = Callable[[TableSchema], bool]


def cdc_tables(schema: TableSchema) -> bool:
    """Default selection: tables created ``WITH cdc = true``."""
    return schema.cdc


class SchemaSource(Protocol):
    def load(self) -> SchemaRows: ...


class StaticSchemaSource:
    """Rows known in advance (recorded fixtures, tests)."""

    def __init__(self, rows: SchemaRows) -> None:
        self.rows = rows

    def load(self) -> SchemaRows:
        return self.rows


class SchemaRegistry:
    """Plans by table id; thread-safe, so decoding can run in a worker thread.

    ``min_refresh_interval`` (seconds) bounds how often an unknown id can hit
    ``system_schema``: a burst of mutations for a table just created refreshes
    once, not once per mutation.
    """

    def __init__(
        self,
        source: SchemaSource,
        selector: TableSelector = cdc_tables,
        min_refresh_interval: float = 0.5,
    ) -> None:
        self.source = source
        self.selector = selector
        self.min_refresh_interval = min_refresh_interval
        self.refreshes = 0
        self._lock = threading.Lock()
        self._schemas: dict[uuid.UUID, TableSchema] = {}
        self._plans: dict[bytes, TablePlan] = {}
        self._last_refresh = float("-inf")
        self.refresh()

    @property
    def schemas(self) -> dict[uuid.UUID, TableSchema]:
        return dict(self._schemas)

    def refresh(self) -> None:
        """Reload every schema; plans are rebuilt lazily (header caches start empty)."""
        rows = self.source.load()
        schemas = build_schemas(rows)
        with self._lock:
            self._schemas = schemas
            self._plans = {}
            self._last_refresh = time.monotonic()
            self.refreshes += 1

    def schema(self, table_id: uuid.UUID) -> TableSchema | None:
        return self._schemas.get(table_id)

    def plan(self, table_id: bytes) -> TablePlan:
        """The plan of the table with this 16-byte id; refreshes once, then raises UnknownTableError."""
        plan = self._plans.get(table_id)
        if plan is not None:
            return plan
        key = uuid.UUID(bytes=bytes(table_id))
        schema = self._schemas.get(key)
        if schema is None:
            self._refresh_soon()
            schema = self._schemas.get(key)
            if schema is None:
                raise UnknownTableError(key)
        plan = build_plan(schema, self.selector(schema), self._unknown_column)
        with self._lock:
            self._plans[bytes(table_id)] = plan
        return plan

    def _refresh_soon(self) -> None:
        wait = self._last_refresh + self.min_refresh_interval - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        self.refresh()

    def _unknown_column(self, plan: TablePlan, name: str) -> ColumnPlan:
        """A header names a column the plan lacks: refresh, then look again (live, then dropped)."""
        self._refresh_soon()
        schema = self._schemas.get(plan.table_id)
        if schema is not None:
            column = schema.column(name)
            if column is not None:
                return live_column_plan(schema, name, column.type)
            dropped = schema.dropped.get(name)
            if dropped is not None:
                return column_plan(name, dropped.type, schema.keyspace, dropped=True)
        raise UnknownColumnError(plan.schema.qualified_name, plan.table_id, name)
