"""What the wiring needs from the source and the transforms.

The wiring depends on these small protocols, not on the packages behind
them, so each side can be read (and tested) alone. Sinks are driven through
``pipeline_runtime.sinks.base.Sink``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from pipeline_runtime.cql.schema import TableSchema
from pipeline_runtime.events import ChangeEvent, Position


@dataclass(frozen=True, slots=True)
class SourceChunk:
    """Events read since the last chunk, and how far the source has read.

    ``position`` advances even when no event was selected (entries of other
    tables), so the checkpoint moves past them. An idle source yields empty
    chunks now and then, so partial batches still flush on time.
    """

    events: list[ChangeEvent]
    position: Position | None


@dataclass(frozen=True, slots=True)
class SegmentFile:
    """One cdc_raw segment as the cleanup sees it."""

    segment_id: int
    log: Path
    index: Path
    #: Durable offset from the idx file.
    durable_offset: int
    completed: bool
    size: int


@dataclass(frozen=True, slots=True)
class Backlog:
    """What cdc_raw holds now."""

    segments: list[SegmentFile] = field(default_factory=list)

    @property
    def bytes(self) -> int:
        return sum(s.size for s in self.segments)


class ChangeSource(Protocol):
    """A node's change stream, readable from a committed position."""

    def read(self, start: Position | None) -> AsyncIterator[SourceChunk]:
        """Chunks of events after ``start`` (exclusive), forever."""
        ...

    def schema(self, keyspace: str, table: str) -> TableSchema:
        """The table's current schema (for creating sink tables)."""
        ...

    def backlog(self) -> Backlog:
        """The segments now in cdc_raw."""
        ...


class EventTransform(Protocol):
    """Selection, renames and masking, applied before any sink or log sees a row."""

    def table(self, schema: TableSchema) -> TableSchema | None:
        """The schema as the sinks see it, or None when the table is not selected."""
        ...

    def event(self, event: ChangeEvent) -> ChangeEvent | None:
        """The event as the sinks see it, or None when it is not selected."""
        ...
