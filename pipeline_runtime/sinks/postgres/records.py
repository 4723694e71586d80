"""COPY records for the staging tables, from row deltas or straight from events.

The general path shapes events into ``RowDelta``s, merges repeats and flattens
them. Most batches are plain upserts of distinct rows with single-cell
columns; for those the fast path writes each event's cells straight into a
record, with no intermediate objects (same result, about half the time).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from pipeline_runtime.cql.types import Kind
from pipeline_runtime.events import LIVE_TIMESTAMP, Cell, ChangeEvent, Op
from pipeline_runtime.sinks.changes import Layout, RowDelta
from pipeline_runtime.sinks.values import dumps

Record = tuple[Any, ...]

#: Kinds whose driver values asyncpg's binary COPY takes unchanged (it still type-checks them,
#: so a wrong type becomes a row-level rejection, not corrupt data).
_AS_IS = frozenset({Kind.TEXT, Kind.ASCII, Kind.INT, Kind.BIGINT, Kind.SMALLINT, Kind.DOUBLE, Kind.BOOLEAN})


class RecordBuilder:
    """Flattens one table's rows into the column order of ``TableSql.row_columns``."""

    def __init__(self, layout: Layout, encoder: Callable[[Any], Callable[[Any], Any]]) -> None:
        self.layout = layout
        self._regulars = [(c.name, c.type.multi_cell) for c in layout.regulars]
        self._statics = [(c.name, c.type.multi_cell) for c in layout.statics]
        keys = len(layout.key_names)
        #: name -> (record index of the value, encoder or None when the driver's value is already right).
        self._slots: dict[str, tuple[int, Callable[[Any], Any] | None]] = {}
        index = keys
        for column in layout.regulars:
            if not column.type.multi_cell:
                plain = None if column.type.kind in _AS_IS else encoder(column.type)
                self._slots[column.name] = (index, plain)
            index += 2 if column.type.multi_cell else 3
        self._width = index + 3
        self._partition = [(c.name, encoder(c.type)) for c in layout.schema.partition_key]
        self._clustering = [(c.name, encoder(c.type)) for c in layout.clustering]

    def fast(self, events: Sequence[ChangeEvent]) -> list[Record] | None:
        """Records for a batch of plain upserts of distinct rows, or None when the batch needs the general path."""
        seen: set[tuple[Any, ...]] = set()
        out: list[Record] = []
        slots = self._slots
        width = self._width
        partition, clustering = self._partition, self._clustering
        for event in events:
            if event.op is not Op.UPSERT or event.static:
                return None
            try:
                key = tuple([e(event.partition_key[n]) for n, e in partition]) + tuple(
                    [e(event.clustering_key[n]) for n, e in clustering]
                )
            except KeyError:
                return None  # the general path reports the missing key column
            if key in seen:
                return None
            seen.add(key)
            row: list[Any] = [None] * width
            row[: len(key)] = key
            for name, change in event.cells.items():
                slot = slots.get(name)
                if slot is None:
                    if name in self.layout.schema.by_name and name not in slots:
                        return None  # a multi-cell or static column: general path
                    continue
                if type(change) is not Cell:
                    return None
                index, encode = slot
                value = change.value
                dead = change.deleted or value is None
                row[index] = None if dead else (value if encode is None else encode(value))
                row[index + 1] = change.timestamp
                row[index + 2] = change.local_deletion_time if change.ttl is not None and not dead else None
            liveness = event.liveness
            if liveness is not None:
                row[-3] = liveness.timestamp
                row[-2] = liveness.expires_at
            row[-1] = LIVE_TIMESTAMP
            out.append(tuple(row))
        return out

    def row(self, delta: RowDelta) -> Record:
        return (*delta.key, *_cells(delta, self._regulars), delta.live_ts, delta.live_exp, delta.deleted_at)

    def static(self, delta: RowDelta) -> Record:
        return (*delta.key, *_cells(delta, self._statics), delta.deleted_at)


def _cells(delta: RowDelta, columns: Sequence[tuple[str, bool]]) -> list[Any]:
    out: list[Any] = []
    for name, multi in columns:
        if multi:
            elements = delta.elements.get(name)
            if elements is None:
                out += [None, None]
            else:
                deleted = None if elements.deleted_at == LIVE_TIMESTAMP else elements.deleted_at
                out += [dumps(elements.cells) if elements.cells else None, deleted]
            continue
        cell = delta.cells.get(name)
        out += [None, None, None] if cell is None else [cell.value, cell.ts, cell.exp]
    return out
