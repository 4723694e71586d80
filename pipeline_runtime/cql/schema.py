"""Table metadata: what the decoder and the sinks need to know of a Cassandra table.

Built from ``system_schema`` by the source's schema registry; shared with the
sinks (which create their tables from it) without either importing the other.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property

from pipeline_runtime.cql.types import CqlType


class ColumnKind(StrEnum):
    """A column's role, as ``system_schema.columns.kind`` names it."""

    PARTITION_KEY = "partition_key"
    CLUSTERING = "clustering"
    STATIC = "static"
    REGULAR = "regular"


@dataclass(frozen=True, slots=True)
class Column:
    """One column; ``position`` orders key columns, ``reversed`` marks DESC clustering."""

    name: str
    type: CqlType
    kind: ColumnKind
    position: int = -1
    reversed: bool = False


@dataclass(frozen=True, slots=True)
class DroppedColumn:
    """A column dropped from the table; old segments may still hold its cells."""

    name: str
    type: CqlType
    dropped_at: int  # microseconds since the epoch
    kind: ColumnKind = ColumnKind.REGULAR


@dataclass(frozen=True)
class TableSchema:
    """One table as the commitlog sees it: id, key layout and every column ever known."""

    keyspace: str
    name: str
    id: uuid.UUID
    columns: tuple[Column, ...]
    dropped: Mapping[str, DroppedColumn] = field(default_factory=dict)
    cdc: bool = False
    is_counter: bool = False
    is_view: bool = False

    @property
    def qualified_name(self) -> str:
        return f"{self.keyspace}.{self.name}"

    @cached_property
    def partition_key(self) -> tuple[Column, ...]:
        return tuple(sorted((c for c in self.columns if c.kind is ColumnKind.PARTITION_KEY), key=lambda c: c.position))

    @cached_property
    def clustering(self) -> tuple[Column, ...]:
        return tuple(sorted((c for c in self.columns if c.kind is ColumnKind.CLUSTERING), key=lambda c: c.position))

    @cached_property
    def primary_key(self) -> tuple[Column, ...]:
        return self.partition_key + self.clustering

    @cached_property
    def statics(self) -> tuple[Column, ...]:
        return tuple(c for c in self.columns if c.kind is ColumnKind.STATIC)

    @cached_property
    def regulars(self) -> tuple[Column, ...]:
        return tuple(c for c in self.columns if c.kind is ColumnKind.REGULAR)

    @cached_property
    def by_name(self) -> Mapping[str, Column]:
        return {c.name: c for c in self.columns}

    def column(self, name: str) -> Column | None:
        """The live column called ``name``, or None."""
        return self.by_name.get(name)
