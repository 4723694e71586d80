"""What the wiring needs from the source and the transforms.

The wiring depends on these small protocols, not on the classes behind them,
so each side can be read (and its logic tested) alone. The data it passes
are the source's own types; sinks are driven through
``pipeline_runtime.sinks.base.Sink``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Protocol

from pipeline_runtime.cql.schema import TableSchema
from pipeline_runtime.events import ChangeEvent, Position
from pipeline_runtime.source.tailer import SegmentInfo, SourceBatch


class ChangeSource(Protocol):
    """A node's change stream, readable from a committed position (``CdcRawSource``)."""

    def read(self, start: Position | None) -> AsyncIterator[SourceBatch]:
        """Batches of events after ``start`` (exclusive), forever; empty batches while idle."""
        ...

    def schema(self, keyspace: str, table: str) -> TableSchema:
        """The table's current schema (for creating sink tables)."""
        ...

    def fork(self) -> ChangeSource:
        """Another reader of the same stream with a position of its own (a sink catching up)."""
        ...

    def backlog(self) -> list[SegmentInfo]:
        """The segments now in cdc_raw, in id order."""
        ...

    def unread_durable_at(self) -> float | None:
        """When the oldest durable entry not yet read became durable (None: everything durable was read)."""
        ...


class EventTransform(Protocol):
    """Selection, renames and masking, applied before any sink or log sees a row."""

    def table(self, schema: TableSchema) -> TableSchema | None:
        """The schema as the sinks see it, or None when the table is not selected."""
        ...

    def events(self, events: Iterable[ChangeEvent]) -> list[ChangeEvent]:
        """The events as the sinks see them, in order, without those not selected."""
        ...
