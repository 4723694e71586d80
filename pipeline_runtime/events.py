"""Change events: what the source produces and the sinks consume (README, 'How it works').

One event per row-level change. Cassandra cannot tell an insert from an update,
so a write is an ``UPSERT`` of the cells it carries. Every cell keeps its
writetime, TTL and deletion time, because sinks resolve conflicts with
Cassandra's own rule: last write wins by writetime, and a tombstone beats an
older or equal write.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

#: Cassandra's "no deletion": markedForDeleteAt == Long.MIN_VALUE.
LIVE_TIMESTAMP = -(2**63)


class Op(StrEnum):
    """What happened to a row (or to a slice of a partition)."""

    UPSERT = "upsert"
    DELETE_ROW = "delete_row"
    DELETE_PARTITION = "delete_partition"
    DELETE_RANGE = "delete_range"


@dataclass(frozen=True, slots=True, order=True)
class Position:
    """A point in one node's commitlog: the end offset of an entry in a segment.

    Positions order totally within a node: segment ids grow over time.
    """

    segment_id: int
    offset: int

    def __str__(self) -> str:
        return f"{self.segment_id}:{self.offset}"


@dataclass(frozen=True, slots=True)
class SourcePosition:
    """Where an event came from: node, segment and end offset of its entry."""

    node: str
    position: Position


@dataclass(frozen=True, slots=True)
class Deletion:
    """A tombstone: everything written at or before ``timestamp`` (µs) is gone.

    ``local_deletion_time`` is the server time of the delete, in seconds.
    """

    timestamp: int
    local_deletion_time: int


@dataclass(frozen=True, slots=True)
class Liveness:
    """A row's primary-key liveness, set by INSERT (not by UPDATE).

    A row with liveness exists even when all its regular columns are null.
    """

    timestamp: int
    ttl: int | None = None
    #: Expiry time in seconds since the epoch when ``ttl`` is set.
    expires_at: int | None = None


@dataclass(frozen=True, slots=True)
class Cell:
    """One written or deleted value of a simple column.

    ``value`` is the Python value cassandra-driver returns for the column, or
    the exact form of one the driver cannot hold (``pipeline_runtime.cql.values``:
    ``Timestamp`` beyond years 1-9999, ``EMPTY`` for a zero-length value); it is
    None for a tombstone (``deleted``).
    """

    value: Any
    timestamp: int
    ttl: int | None = None
    #: For an expiring cell: expiry time (s). For a tombstone: deletion time (s).
    local_deletion_time: int | None = None
    deleted: bool = False

    @property
    def expires_at(self) -> int | None:
        """Expiry time in seconds since the epoch, or None if the cell does not expire."""
        return self.local_deletion_time if self.ttl is not None and not self.deleted else None


@dataclass(frozen=True, slots=True)
class ElementCell:
    """One element of a multi-cell column (non-frozen list, set, map or UDT).

    ``path`` identifies the element: a list's timeuuid, a set's element, a
    map's key, or a UDT's field name. A set element's ``value`` is None.
    """

    path: Any
    value: Any
    timestamp: int
    ttl: int | None = None
    local_deletion_time: int | None = None
    deleted: bool = False

    @property
    def expires_at(self) -> int | None:
        return self.local_deletion_time if self.ttl is not None and not self.deleted else None


@dataclass(frozen=True, slots=True)
class CollectionChange:
    """Changes to a multi-cell column.

    ``deletion`` wipes every element written at or before its timestamp (an
    overwrite of the whole collection, or setting it to null); ``elements``
    are then the elements added or removed.
    """

    deletion: Deletion | None
    elements: tuple[ElementCell, ...] = ()


ColumnChange = Cell | CollectionChange


@dataclass(frozen=True, slots=True)
class Bound:
    """One end of a clustering range: a prefix of clustering values."""

    values: tuple[Any, ...]
    inclusive: bool


@dataclass(slots=True)
class ChangeEvent:
    """One row-level change.

    - ``UPSERT``: ``cells`` holds the changed columns (cell-level deletes are
      tombstone cells inside it); ``liveness`` is set by INSERT.
    - ``DELETE_ROW``: ``deletion`` applies to the row at ``clustering_key``.
    - ``DELETE_PARTITION``: ``deletion`` applies to the whole partition.
    - ``DELETE_RANGE``: ``deletion`` applies to rows between ``range_start``
      and ``range_end`` (None = open end).

    ``static`` marks an upsert of the partition's static row.
    """

    op: Op
    keyspace: str
    table: str
    partition_key: dict[str, Any]
    source: SourcePosition
    clustering_key: dict[str, Any] = field(default_factory=dict)
    cells: dict[str, ColumnChange] = field(default_factory=dict)
    liveness: Liveness | None = None
    deletion: Deletion | None = None
    range_start: Bound | None = None
    range_end: Bound | None = None
    static: bool = False

    @property
    def qualified_table(self) -> str:
        return f"{self.keyspace}.{self.table}"

    @property
    def max_timestamp(self) -> int:
        """The newest writetime in the event (µs); orders events for the same row."""
        stamps = [self.deletion.timestamp] if self.deletion else []
        if self.liveness:
            stamps.append(self.liveness.timestamp)
        for change in self.cells.values():
            if isinstance(change, Cell):
                stamps.append(change.timestamp)
            else:
                if change.deletion:
                    stamps.append(change.deletion.timestamp)
                stamps.extend(e.timestamp for e in change.elements)
        return max(stamps, default=LIVE_TIMESTAMP)
