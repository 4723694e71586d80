"""The transforms as the runner uses them: planned lazily, re-planned when the schema grows.

``Transformer`` needs a table's plan before its first event. Here the plan is
made from the source's current schema on the first event of a table, checked
against the personal-data policy, and made again when an event names a
column the plan has never seen (an ``ALTER TABLE ... ADD``), so new columns
reach the sinks instead of being dropped. Cells of a column the current schema
no longer has (dropped in Cassandra after the write) cannot reach a sink: they
are counted with ``on_dropped`` and logged once per table and column.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable

from pipeline_runtime.cql.schema import TableSchema
from pipeline_runtime.events import ChangeEvent
from pipeline_runtime.pipeline.protocols import ChangeSource
from pipeline_runtime.transforms import Transformer

log = logging.getLogger(__name__)

#: Told of cells dropped on purpose: table, reason, how many.
DropObserver = Callable[[str, str, int], None]


class PlannedTransform:
    """Adapts ``Transformer`` to the runner's ``EventTransform``."""

    def __init__(self, transformer: Transformer, source: ChangeSource, on_dropped: DropObserver | None = None) -> None:
        self.transformer = transformer
        self.source = source
        self.on_dropped = on_dropped
        #: Per table, every source column name the current plan was made with.
        self._known: dict[str, frozenset[str]] = {}
        self._reported: set[tuple[str, str]] = set()

    def table(self, schema: TableSchema) -> TableSchema | None:
        """The sink-side schema of ``schema`` (planning it if needed)."""
        self._plan(schema)
        return self.transformer.schema(schema)

    def events(self, events: Iterable[ChangeEvent]) -> list[ChangeEvent]:
        """``event`` over a chunk. Events of a table whose plan changes nothing pass as they are, at the
        cost of a column check each (a column the plan has not seen yet takes the full path)."""
        out: list[ChangeEvent] = []
        append = out.append
        table: tuple[str, str] | None = None
        passes: frozenset[str] | None = None  # the columns a table's identity plan was made with
        for event in events:
            if (event.keyspace, event.table) != table:
                table = (event.keyspace, event.table)
                passes = self._passes(event.qualified_table)
            if passes is not None and passes.issuperset(event.cells):
                append(event)
                continue
            transformed = self.event(event)
            if transformed is not None:
                append(transformed)
            passes = self._passes(event.qualified_table)  # planned (again) just now
        return out

    def _passes(self, qualified: str) -> frozenset[str] | None:
        plan = self.transformer.planned(qualified)
        return self._known.get(qualified) if plan is not None and plan.identity else None

    def event(self, event: ChangeEvent) -> ChangeEvent | None:
        known = self._known.get(event.qualified_table)
        if known is None or not known.issuperset(event.cells):
            self._plan(self.source.schema(event.keyspace, event.table))
            event = self._without_unknown(event)
        return self.transformer.event(event)

    def _without_unknown(self, event: ChangeEvent) -> ChangeEvent:
        known = self._known[event.qualified_table]
        unknown = sorted(set(event.cells) - known)
        if not unknown:
            return event
        if self.on_dropped is not None:
            self.on_dropped(event.qualified_table, "column_not_in_schema", len(unknown))
        for column in unknown:
            if (event.qualified_table, column) not in self._reported:
                self._reported.add((event.qualified_table, column))
                log.warning(
                    "cells of a column no longer in the schema are not replicated",
                    extra={"table": event.qualified_table, "column": column},
                )
        return dataclasses.replace(event, cells={k: v for k, v in event.cells.items() if k in known})

    def _plan(self, schema: TableSchema) -> None:
        names = frozenset(c.name for c in schema.columns)
        if self._known.get(schema.qualified_name) == names:
            return
        self.transformer.plan(schema)
        # Logs a warning, or raises ConfigError under the block policy.
        self.transformer.validate(schema)
        self._known[schema.qualified_name] = names
