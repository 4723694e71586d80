"""Change events reshaped into per-row state deltas that merge like Cassandra.

Every sink stores, per row, each cell with its writetime and expiry, the
row's liveness and the newest deletion that covers it. Each of those fields
only ever moves "up" under Cassandra's reconcile rule, so merging two deltas
is commutative, associative and idempotent (a join in a lattice). That is
the whole exactly-once argument: re-delivered, replica-duplicated and
reordered events merge to the same state as Cassandra's own.

Sinks feed the deltas in their native value encoding (``encode``), so one
shaping step serves PostgreSQL and ClickHouse alike. Multi-cell columns keep
one entry per element in a JSON object ``{element key: [value, ts, expiry]}``
(see ``element_key``); a null value is an element tombstone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol

from pipeline_runtime.cql.canonical import canonical_text, dumps, to_json
from pipeline_runtime.cql.schema import Column, TableSchema
from pipeline_runtime.cql.types import CqlType, Kind
from pipeline_runtime.errors import RowRejectedError
from pipeline_runtime.events import (
    LIVE_TIMESTAMP,
    Bound,
    Cell,
    ChangeEvent,
    CollectionChange,
    ElementCell,
    Op,
    Position,
    SourcePosition,
)


class Encoder(Protocol):
    """Gives, for a column's CQL type, the function that turns a driver value into the sink's native value.

    Resolved once per column, not per value: shaping is the runtime's hottest loop. ``table``
    and ``column`` name the ``ValueEncodingError`` of a value the sink cannot hold; ``key``
    marks a primary-key column, which cannot hold a zero-length value either.
    """

    def __call__(
        self, cql_type: CqlType, table: str = "", column: str = "", *, key: bool = False
    ) -> Callable[[Any], Any]: ...


ElementState = list[Any]
"""``[value (canonical JSON text, None = tombstone), writetime µs, expiry s or None]``."""


@dataclass(slots=True)
class SimpleCell:
    """A cell of a single-cell column; ``value`` None is a tombstone."""

    value: Any
    ts: int
    exp: int | None = None

    def beats(self, other: SimpleCell) -> bool:
        """Cassandra's reconcile: newer wins; at equal time a tombstone, then the later expiry."""
        return _cell_rank(self) > _cell_rank(other)


def _cell_rank(cell: SimpleCell) -> tuple[int, bool, bool, int, TieOrder]:
    # The value is a last, deterministic tie-break for equal writetimes: the greater one wins.
    return (cell.ts, cell.value is None, cell.exp is not None, cell.exp or 0, TieOrder(cell.value))


class TieOrder:
    """Orders a column's values the way every sink's merge does at equal writetimes.

    The greater value wins, compared as the values compare (numbers by value,
    text and bytes by code point / byte, dates and times chronologically,
    UUIDs by their 128-bit number, vectors element by element), which is how
    the sinks' SQL merges compare the stored values too (PostgreSQL with the
    "C" collation for text, ClickHouse natively). Values of types Python cannot
    order against each other fall back to their text. None (a tombstone) is
    below any value; two tombstones are equal.
    """

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TieOrder) and not (self < other or other < self)

    def __hash__(self) -> int:
        return 0

    def __lt__(self, other: TieOrder) -> bool:
        mine, theirs = self.value, other.value
        if mine is None or theirs is None:
            return mine is None and theirs is not None
        try:
            return bool(mine < theirs)
        except TypeError:
            return str(mine) < str(theirs)

    def __gt__(self, other: TieOrder) -> bool:
        return other < self

    def __le__(self, other: TieOrder) -> bool:
        return not other < self

    def __ge__(self, other: TieOrder) -> bool:
        return not self < other


def element_beats(new: ElementState, old: ElementState) -> bool:
    """The same rule for one element of a multi-cell column."""
    return _element_rank(new) > _element_rank(old)


def _element_rank(state: ElementState) -> tuple[int, bool, bool, int, str]:
    value, ts, exp = state
    return (ts, value is None, exp is not None, exp or 0, dumps(value))


@dataclass(slots=True)
class Elements:
    """A multi-cell column: the newest whole-column deletion plus its elements."""

    deleted_at: int = LIVE_TIMESTAMP
    cells: dict[str, ElementState] = field(default_factory=dict)

    def merge(self, other: Elements) -> bool:
        """Join ``other`` in; whether anything changed."""
        changed = other.deleted_at > self.deleted_at
        self.deleted_at = max(self.deleted_at, other.deleted_at)
        for key, state in other.cells.items():
            mine = self.cells.get(key)
            if mine is None or element_beats(state, mine):
                self.cells[key] = state
                changed = True
        # Covered elements are kept (readers filter them by ``deleted_at``):
        # pruning here would make ``RowDelta.version`` go down.
        return changed


@dataclass(slots=True)
class RowDelta:
    """The state change of one row (or of a partition's static row)."""

    key: tuple[Any, ...]
    static: bool = False
    cells: dict[str, SimpleCell] = field(default_factory=dict)
    elements: dict[str, Elements] = field(default_factory=dict)
    live_ts: int | None = None
    live_exp: int | None = None
    deleted_at: int = LIVE_TIMESTAMP
    source: SourcePosition | None = None

    def merge(self, other: RowDelta) -> bool:
        """Join ``other`` into this delta (same key); whether the state changed.

        A change is any cell, element, liveness or deletion of ``other`` winning,
        which includes a value that wins only the equal-writetime tie-break (the
        version does not move for that one).
        """
        changed = other.deleted_at > self.deleted_at
        for name, cell in other.cells.items():
            mine = self.cells.get(name)
            if mine is None or cell.beats(mine):
                self.cells[name] = cell
                changed = True
        for name, elements in other.elements.items():
            changed = self.elements.setdefault(name, Elements()).merge(elements) or changed
        if other.live_ts is not None and (
            self.live_ts is None or _live_rank(other.live_ts, other.live_exp) > _live_rank(self.live_ts, self.live_exp)
        ):
            self.live_ts, self.live_exp = other.live_ts, other.live_exp
            changed = True
        self.deleted_at = max(self.deleted_at, other.deleted_at)
        if other.source is not None and (self.source is None or other.source.position > self.source.position):
            self.source = other.source
        return changed

    @property
    def version(self) -> int:
        """A number that grows with every join that changes the state.

        Each join raises some fields' ranks (writetime, then tombstone flag and
        expiry) or adds fields. The version orders states by the sum of
        writetimes first and the sum of the tie-breaking parts second, so it
        never goes down. ClickHouse's replacing engine keeps the row with the
        highest version: the most-merged state wins.
        """
        times = max(self.deleted_at, 0) + max(self.live_ts or 0, 0)
        ties = _tie(False, self.live_exp) if self.live_ts is not None else 0
        for cell in self.cells.values():
            times += max(cell.ts, 0)
            ties += _tie(cell.value is None, cell.exp)
        for elements in self.elements.values():
            times += max(elements.deleted_at, 0)
            for value, ts, exp in elements.cells.values():
                times += max(ts, 0)
                ties += _tie(value is None, exp)
        return (times << 80) + ties


def _tie(tombstone: bool, exp: int | None) -> int:
    # Below one writetime step: (tombstone, has expiry, expiry) within 2^35 per field.
    return (int(tombstone) << 34) + ((1 << 33) + min(exp, (1 << 33) - 1) if exp is not None else 0)


def _live_rank(ts: int, exp: int | None) -> tuple[int, bool, int]:
    return (ts, exp is not None, exp or 0)


@dataclass(frozen=True, slots=True)
class Tombstone:
    """A partition deletion (both bounds None) or a clustering-range deletion."""

    partition: tuple[Any, ...]
    start: Bound | None
    end: Bound | None
    ts: int
    source: SourcePosition

    @property
    def whole_partition(self) -> bool:
        return self.start is None and self.end is None


@dataclass(frozen=True)
class Layout:
    """A table's columns sorted by how a sink stores them."""

    schema: TableSchema

    @cached_property
    def partition_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.schema.partition_key)

    @cached_property
    def clustering(self) -> tuple[Column, ...]:
        return self.schema.clustering

    @cached_property
    def key_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.schema.primary_key)

    @cached_property
    def regulars(self) -> tuple[Column, ...]:
        return tuple(c for c in self.schema.regulars if c.type.kind not in (Kind.EMPTY, Kind.COUNTER))

    @cached_property
    def statics(self) -> tuple[Column, ...]:
        return tuple(c for c in self.schema.statics if c.type.kind not in (Kind.EMPTY, Kind.COUNTER))


def element_key(path: Any, column_type: CqlType) -> str:
    """The text key of one element of a multi-cell column.

    List keys sort by the timeuuid's time (list order); set and map keys are
    the element's canonical JSON text; UDT keys are field names.
    """
    kind = column_type.kind
    if kind is Kind.LIST:
        time = getattr(path, "time", None)
        return f"{time:016x}{path.hex}" if time is not None else str(path)
    if kind is Kind.SET or kind is Kind.MAP:
        return canonical_text(path, column_type.args[0])
    if isinstance(path, int) and not isinstance(path, bool):
        return column_type.field_names[path]
    return str(path)


def element_value(cell: ElementCell, column_type: CqlType) -> str | None:
    """The canonical JSON text of an element's value ("true" for a live set element).

    Kept as text inside the element state so that no JSON engine in between
    (ClickHouse's re-serialises numbers as doubles) can round a decimal.
    """
    if cell.deleted:
        return None
    kind = column_type.kind
    if kind is Kind.SET:
        return "true"
    if kind is Kind.LIST:
        return dumps(to_json(cell.value, column_type.args[0]))
    if kind is Kind.MAP:
        return dumps(to_json(cell.value, column_type.args[1]))
    name = element_key(cell.path, column_type)
    field_type = column_type.args[column_type.field_names.index(name)]
    return dumps(to_json(cell.value, field_type))


class Shaper:
    """Turns one table's change events into row deltas and tombstones."""

    def __init__(self, schema: TableSchema, encoder: Encoder) -> None:
        self.layout = Layout(schema)
        stored = {c.name for c in (*self.layout.regulars, *self.layout.statics)}
        #: name -> (column, value encoder); columns the sink does not store are absent.
        table = schema.qualified_name
        self._columns: dict[str, tuple[Column, Callable[[Any], Any]]] = {
            c.name: (c, encoder(c.type, table, c.name)) for c in schema.columns if c.name in stored
        }
        self._partition = [(c.name, encoder(c.type, table, c.name, key=True)) for c in schema.partition_key]
        self._clustering = [(c.name, encoder(c.type, table, c.name, key=True)) for c in schema.clustering]

    def key(
        self, values: Mapping[str, Any], columns: list[tuple[str, Callable[[Any], Any]]], event: ChangeEvent
    ) -> tuple[Any, ...]:
        try:
            return tuple([encode(values[name]) for name, encode in columns])
        except KeyError as missing:
            raise RowRejectedError(f"{event.qualified_table}: key column {missing} missing from the event") from None

    def shape(self, event: ChangeEvent) -> RowDelta | Tombstone:
        op = event.op
        partition = self.key(event.partition_key, self._partition, event)
        if op is Op.DELETE_PARTITION or op is Op.DELETE_RANGE:
            if event.deletion is None:
                raise RowRejectedError(f"{event.qualified_table}: {op} without a deletion time")
            start = self._bound(event.range_start) if op is Op.DELETE_RANGE else None
            end = self._bound(event.range_end) if op is Op.DELETE_RANGE else None
            return Tombstone(partition, start, end, event.deletion.timestamp, event.source)
        if event.static:
            delta = RowDelta(partition, static=True, source=event.source)
        else:
            delta = RowDelta(partition + self.key(event.clustering_key, self._clustering, event), source=event.source)
        if op is Op.DELETE_ROW:
            if event.deletion is None:
                raise RowRejectedError(f"{event.qualified_table}: delete_row without a deletion time")
            delta.deleted_at = event.deletion.timestamp
            return delta
        liveness = event.liveness
        if liveness is not None:
            delta.live_ts = liveness.timestamp
            delta.live_exp = liveness.expires_at
        columns = self._columns
        cells = delta.cells
        for name, change in event.cells.items():
            found = columns.get(name)
            if found is None:
                continue  # dropped since, or a column the sink does not store
            if type(change) is Cell:
                value = change.value
                dead = change.deleted or value is None
                expiry = change.local_deletion_time if change.ttl is not None and not dead else None
                cells[name] = SimpleCell(None if dead else found[1](value), change.timestamp, expiry)
            else:
                self._add_collection(delta, found[0], change)
        return delta

    def _bound(self, bound: Bound | None) -> Bound | None:
        if bound is None or not bound.values:
            return None
        values = tuple(encode(v) for v, (_, encode) in zip(bound.values, self._clustering, strict=False))
        return Bound(values, bound.inclusive)

    def _add_collection(self, delta: RowDelta, column: Column, change: Cell | CollectionChange) -> None:
        assert isinstance(change, CollectionChange)
        elements = collection_elements(change, column.type)
        present = delta.elements.get(column.name)
        if present is None:
            delta.elements[column.name] = elements  # the row's first change of this column: nothing to join
        else:
            present.merge(elements)


def collection_elements(change: CollectionChange, column_type: CqlType) -> Elements:
    """One change of a multi-cell column as its element states (the newest of each element key)."""
    elements = Elements(change.deletion.timestamp if change.deletion else LIVE_TIMESTAMP)
    cells = elements.cells
    for cell in change.elements:
        key = element_key(cell.path, column_type)
        state = [element_value(cell, column_type), cell.timestamp, cell.expires_at]
        known = cells.get(key)
        if known is None or element_beats(state, known):
            cells[key] = state
    return elements


def coalesce(items: Iterable[RowDelta | Tombstone]) -> tuple[list[RowDelta], list[Tombstone]]:
    """Merge deltas of the same row (static rows apart) and keep tombstones."""
    rows: dict[tuple[bool, tuple[Any, ...]], RowDelta] = {}
    tombstones: list[Tombstone] = []
    for item in items:
        if isinstance(item, Tombstone):
            tombstones.append(item)
            continue
        known = rows.get((item.static, item.key))
        if known is None:
            rows[(item.static, item.key)] = item
        else:
            known.merge(item)
    return list(rows.values()), tombstones


def covers(tombstone: Tombstone, clustering: tuple[Any, ...], columns: tuple[Column, ...]) -> bool:
    """Whether a tombstone of this row's partition covers the row's clustering values.

    Bounds are prefixes in clustering order; a reversed (DESC) column flips
    the comparison. timeuuids order by time first, as in Cassandra.
    """
    if tombstone.start is not None and not _on_side(tombstone.start, clustering, columns, after=True):
        return False
    return tombstone.end is None or _on_side(tombstone.end, clustering, columns, after=False)


def _on_side(bound: Bound, clustering: tuple[Any, ...], columns: tuple[Column, ...], *, after: bool) -> bool:
    for value, limit, column in zip(clustering, bound.values, columns, strict=False):
        order = _compare(value, limit, column.type.kind)
        if column.reversed:
            order = -order
        if order != 0:
            return (order > 0) == after
    return bound.inclusive


def _compare(a: Any, b: Any, kind: Kind) -> int:
    if kind is Kind.TIMEUUID:
        a, b = (a.time, a.bytes), (b.time, b.bytes)
    return int(a > b) - int(a < b)


def tombstone_record(tombstone: Tombstone, clustering: int) -> tuple[Any, ...]:
    """A flat row for a sink's tombstone table.

    ``(id, *partition, *start values, *end values, start length, start inclusive,
    end length, end inclusive, ts)``; bound values are padded with None to the
    clustering width, length 0 is an open bound, and ``id`` is a digest of the
    partition and bounds, so a re-delivered tombstone lands on the same row.
    """

    def values(bound: Bound | None) -> list[Any]:
        found = list(bound.values) if bound else []
        return found + [None] * (clustering - len(found))

    start, end = tombstone.start, tombstone.end
    identity = repr((tombstone.partition, _bound_id(start), _bound_id(end)))
    return (
        hashlib.sha256(identity.encode()).hexdigest(),
        *tombstone.partition,
        *values(start),
        *values(end),
        len(start.values) if start else 0,
        start.inclusive if start else True,
        len(end.values) if end else 0,
        end.inclusive if end else True,
        tombstone.ts,
    )


def tombstone_from_record(record: Sequence[Any], partition: int, clustering: int) -> Tombstone:
    """The inverse of ``tombstone_record`` (the source position is not stored)."""
    keys = tuple(record[1 : 1 + partition])
    starts = tuple(record[1 + partition : 1 + partition + clustering])
    ends = tuple(record[1 + partition + clustering : 1 + partition + 2 * clustering])
    s_len, s_incl, e_len, e_incl, ts = record[-5:]
    start = Bound(starts[:s_len], bool(s_incl)) if s_len else None
    end = Bound(ends[:e_len], bool(e_incl)) if e_len else None
    return Tombstone(keys, start, end, int(ts), _STORED)


_STORED = SourcePosition("stored", Position(0, 0))


def _bound_id(bound: Bound | None) -> tuple[Any, ...] | None:
    return None if bound is None else (bound.values, bound.inclusive)
