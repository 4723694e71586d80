"""The transforms as the runner uses them: planned lazily, re-planned when the schema grows.

``Transformer`` needs a table's plan before its first event. Here the plan is
made from the source's current schema on the first event of a table, checked
against the personal-data policy, and made again when an event names a
column the plan has never seen (an ``ALTER TABLE ... ADD``), so new columns
reach the sinks instead of being dropped.
"""

from __future__ import annotations

from pipeline_runtime.cql.schema import TableSchema
from pipeline_runtime.events import ChangeEvent
from pipeline_runtime.pipeline.protocols import ChangeSource
from pipeline_runtime.transforms import Transformer


class PlannedTransform:
    """Adapts ``Transformer`` to the runner's ``EventTransform``."""

    def __init__(self, transformer: Transformer, source: ChangeSource) -> None:
        self.transformer = transformer
        self.source = source
        #: Per table, every source column name the current plan was made with.
        self._known: dict[str, frozenset[str]] = {}

    def table(self, schema: TableSchema) -> TableSchema | None:
        """The sink-side schema of ``schema`` (planning it if needed)."""
        self._plan(schema)
        return self.transformer.schema(schema)

    def event(self, event: ChangeEvent) -> ChangeEvent | None:
        known = self._known.get(event.qualified_table)
        if known is None or not known.issuperset(event.cells):
            self._plan(self.source.schema(event.keyspace, event.table))
        return self.transformer.event(event)

    def _plan(self, schema: TableSchema) -> None:
        names = frozenset(c.name for c in schema.columns)
        if self._known.get(schema.qualified_name) == names:
            return
        self.transformer.plan(schema)
        # Logs a warning, or raises ConfigError under the block policy.
        self.transformer.validate(schema)
        self._known[schema.qualified_name] = names
