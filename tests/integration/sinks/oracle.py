"""A small reference model of Cassandra's read semantics, written independently of the sinks.

It applies change events in their original order and answers what
``SELECT *`` would return at a given time: last write wins per cell by
writetime, a tombstone beats an older-or-equal write, row/range/partition
deletions shadow everything at or before their time, expired cells and
liveness are gone. The contract suite compares every sink's view with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipeline_runtime.cql.schema import TableSchema
from pipeline_runtime.cql.types import Kind
from pipeline_runtime.events import Bound, Cell, ChangeEvent, CollectionChange, Op

MIN = -(2**63)


@dataclass
class _Cell:
    value: Any
    ts: int
    exp: int | None
    tomb: bool

    def rank(self) -> tuple[int, bool]:
        return (self.ts, self.tomb)


@dataclass
class _Collection:
    deleted: int = MIN
    elements: dict[Any, _Cell] = field(default_factory=dict)


@dataclass
class _Row:
    live: tuple[int, int | None] | None = None
    deleted: int = MIN
    cells: dict[str, _Cell] = field(default_factory=dict)
    collections: dict[str, _Collection] = field(default_factory=dict)


@dataclass
class _Partition:
    deleted: int = MIN
    ranges: list[tuple[Bound | None, Bound | None, int]] = field(default_factory=list)
    static: _Row = field(default_factory=_Row)
    rows: dict[tuple[Any, ...], _Row] = field(default_factory=dict)


class Oracle:
    def __init__(self, schema: TableSchema) -> None:
        self.schema = schema
        self.partitions: dict[tuple[Any, ...], _Partition] = {}

    def apply(self, event: ChangeEvent) -> None:
        pk = tuple(event.partition_key[c.name] for c in self.schema.partition_key)
        part = self.partitions.setdefault(pk, _Partition())
        assert event.deletion is not None or event.op is Op.UPSERT
        if event.op is Op.DELETE_PARTITION:
            part.deleted = max(part.deleted, event.deletion.timestamp)  # type: ignore[union-attr]
            return
        if event.op is Op.DELETE_RANGE:
            part.ranges.append((event.range_start, event.range_end, event.deletion.timestamp))  # type: ignore[union-attr]
            return
        if event.static:
            row = part.static
        else:
            ck = tuple(event.clustering_key[c.name] for c in self.schema.clustering)
            row = part.rows.setdefault(ck, _Row())
        if event.op is Op.DELETE_ROW:
            row.deleted = max(row.deleted, event.deletion.timestamp)  # type: ignore[union-attr]
            return
        if event.liveness is not None:
            new = (event.liveness.timestamp, event.liveness.expires_at)
            if row.live is None or new[0] > row.live[0]:
                row.live = new
        for name, change in event.cells.items():
            if isinstance(change, Cell):
                cell = _Cell(change.value, change.timestamp, change.expires_at, change.deleted or change.value is None)
                old = row.cells.get(name)
                if old is None or cell.rank() > old.rank():
                    row.cells[name] = cell
                continue
            assert isinstance(change, CollectionChange)
            coll = row.collections.setdefault(name, _Collection())
            if change.deletion is not None:
                coll.deleted = max(coll.deleted, change.deletion.timestamp)
            for element in change.elements:
                cell = _Cell(element.value, element.timestamp, element.expires_at, element.deleted)
                old = coll.elements.get(element.path)
                if old is None or cell.rank() > old.rank():
                    coll.elements[element.path] = cell

    # -- reading -----------------------------------------------------------

    def select(self, now: int) -> dict[tuple[Any, ...], dict[str, Any]]:
        """Rows keyed by primary key (clustering None for static-only rows), values as the driver gives them."""
        out: dict[tuple[Any, ...], dict[str, Any]] = {}
        schema = self.schema
        statics = list(schema.statics)
        regulars = list(schema.regulars)
        for pk, part in self.partitions.items():
            static_values = {c.name: self._value(part.static, c.name, c.type, part.deleted, now) for c in statics}
            emitted = False
            for ck, row in part.rows.items():
                floor = max(row.deleted, part.deleted, *(ts for s, e, ts in part.ranges if _covers(s, e, ck, schema)))
                values = {c.name: self._value(row, c.name, c.type, floor, now) for c in regulars}
                live = row.live is not None and row.live[0] > floor and (row.live[1] is None or row.live[1] > now)
                if not live and all(v is None for v in values.values()):
                    continue
                keys = dict(zip([c.name for c in schema.primary_key], pk + ck, strict=True))
                out[pk + ck] = {**keys, **static_values, **values}
                emitted = True
            if not emitted and any(v is not None for v in static_values.values()):
                keys = dict(zip([c.name for c in schema.partition_key], pk, strict=True))
                nulls = {c.name: None for c in schema.clustering} | {c.name: None for c in regulars}
                out[pk + tuple(None for _ in schema.clustering)] = {**keys, **static_values, **nulls}
        return out

    def _value(self, row: _Row, name: str, cql_type: Any, floor: int, now: int) -> Any:
        if cql_type.multi_cell:
            coll = row.collections.get(name)
            if coll is None:
                return None
            cutoff = max(coll.deleted, floor)
            live = {
                p: c
                for p, c in coll.elements.items()
                if c.ts > cutoff and not c.tomb and (c.exp is None or c.exp > now)
            }
            if not live:
                return None
            kind = cql_type.kind
            if kind is Kind.LIST:
                return [live[p].value for p in sorted(live, key=lambda u: (u.time, u.bytes))]
            if kind is Kind.SET:
                return set(live)
            if kind is Kind.MAP:
                return {p: c.value for p, c in live.items()}
            return {f: (live[f].value if f in live else None) for f in cql_type.field_names}
        cell = row.cells.get(name)
        if cell is None or cell.tomb or cell.ts <= floor or (cell.exp is not None and cell.exp <= now):
            return None
        return cell.value


def _covers(start: Bound | None, end: Bound | None, ck: tuple[Any, ...], schema: TableSchema) -> bool:
    columns = schema.clustering

    def cmp(bound: Bound) -> int:
        for value, limit, column in zip(ck, bound.values, columns, strict=False):
            order = (value > limit) - (value < limit)
            if column.reversed:
                order = -order
            if order:
                return order
        return 0

    if start is not None:
        c = cmp(start)
        if c < 0 or (c == 0 and not start.inclusive):
            return False
    if end is not None:
        c = cmp(end)
        if c > 0 or (c == 0 and not end.inclusive):
            return False
    return True
