"""COPY records for the staging tables, from row deltas or straight from events.

The general path shapes events into ``RowDelta``s, merges repeats and flattens
them. Most batches are plain upserts of distinct rows; for those the fast path
writes each event's cells straight into a record, with no intermediate
objects (same result, a fraction of the time). A collection change of a
regular column there is stored by ``collection_fields``, the general path's
own steps for a row's only change of the column.
Where the compiled core is built, ``copy_data`` goes one step further and
writes those batches as binary COPY data directly (``native/src/pgcopy.rs``),
which skips both the records and asyncpg's encoding of them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from pipeline_runtime.cql.canonical import dumps
from pipeline_runtime.cql.types import CqlType, Kind
from pipeline_runtime.cql.values import EMPTY
from pipeline_runtime.errors import ValueEncodingError
from pipeline_runtime.events import LIVE_TIMESTAMP, Cell, ChangeEvent, CollectionChange, Deletion, ElementCell, Op
from pipeline_runtime.native import native_module
from pipeline_runtime.sinks.changes import Elements, Encoder, Layout, RowDelta, collection_elements
from pipeline_runtime.sinks.encoding import native_classes
from pipeline_runtime.sinks.postgres.typemap import copy_wire, json_check

Record = tuple[Any, ...]
#: Binary COPY data (header, tuples, trailer) and the number of rows in it.
CopyData = tuple[bytes, int]

#: Kinds whose driver values asyncpg's binary COPY takes unchanged (it still type-checks them,
#: so a wrong type becomes a row-level rejection, not corrupt data). Not text: its encoder
#: names the column of a U+0000, which PostgreSQL cannot store. ``EMPTY`` (a zero-length
#: value) needs the encoder too: it takes these kinds off the fast path (``fast``).
_AS_IS = frozenset({Kind.INT, Kind.BIGINT, Kind.SMALLINT, Kind.DOUBLE, Kind.BOOLEAN})


class RecordBuilder:
    """Flattens one table's rows into the column order of ``TableSql.row_columns``.

    Everything that depends only on the schema (record slots, value encoders,
    which columns force the general path) is resolved here, once per table,
    so the per-event loop of ``fast`` does no lookups it could have done earlier.
    """

    def __init__(self, layout: Layout, encoder: Encoder) -> None:
        self.layout = layout
        self._regulars = [(c.name, c.type.multi_cell) for c in layout.regulars]
        self._statics = [(c.name, c.type.multi_cell) for c in layout.statics]
        keys = len(layout.key_names)
        table = layout.schema.qualified_name
        #: name -> (record index of the value, encoder or None when the driver's value is already right).
        self._slots: dict[str, tuple[int, Callable[[Any], Any] | None]] = {}
        #: Multi-cell regular column name -> (record index of its state, its fields from one change).
        self._multi: dict[str, tuple[int, Callable[[CollectionChange], tuple[str | None, int | None] | None]]] = {}
        index = keys
        for column in layout.regulars:
            if column.type.multi_cell:
                where = (table, column.type.cql())
                self._multi[column.name] = (index, stored_fields(column, where))
            else:
                self._slots[column.name] = (index, _plain(column.type, encoder(column.type, table, column.name)))
            index += 2 if column.type.multi_cell else 3
        self._width = index + 3
        #: Columns of the table that only the general path handles (static, key, skipped kinds).
        self._general = frozenset(layout.schema.by_name) - self._slots.keys() - self._multi.keys()
        keyed = [*layout.schema.partition_key]
        # Key values always go through their encoder: it refuses a zero-length one by name.
        self._partition = [(c.name, encoder(c.type, table, c.name, key=True)) for c in keyed]
        self._clustering = [(c.name, encoder(c.type, table, c.name, key=True)) for c in layout.clustering]
        #: An empty record: no cells, no liveness, no deletion.
        self._blank: list[Any] = [None] * self._width
        self._blank[-1] = LIVE_TIMESTAMP
        self._native = _native_encoder(layout, encoder, self._general, self._multi)
        #: Multi-cell column name -> (qualified table, CQL type): what names an element PostgreSQL refuses.
        self._types = {c.name: (table, c.type.cql()) for c in (*layout.regulars, *layout.statics) if c.type.multi_cell}

    def copy_data(self, events: Sequence[ChangeEvent]) -> CopyData | None:
        """``fast``'s records as binary COPY data, written by the compiled core.

        None when the core is not built (or ``HEADRACE_PURE_PYTHON`` is set) and
        for every batch ``fast`` returns None for. tests/unit/sinks/test_pg_records.py
        checks that PostgreSQL stores the same rows from both.
        """
        if self._native is None:
            return None
        data: CopyData | None = self._native.encode(events if type(events) is list else list(events))
        return data

    def copy_parts(self, events: Sequence[ChangeEvent], parts: int) -> list[CopyData] | None:
        """``copy_data``'s rows as ``parts`` COPY streams of consecutive rows, for as many connections.

        The rows are distinct over the whole batch (as ``copy_data`` requires), so no two
        streams write one row: their merges never wait for each other's row locks.
        """
        if self._native is None:
            return None
        data: list[CopyData] | None = self._native.encode_parts(list(events), parts)
        return data

    def fast(self, events: Sequence[ChangeEvent]) -> list[Record] | None:
        """Records for a batch of plain upserts of distinct rows, or None when the batch needs the general path.

        Gives exactly the records ``row`` gives for the shaped and coalesced
        events (tests/unit/sinks/test_pg_records.py checks it), at a third of the cost.
        """
        seen: set[tuple[Any, ...]] = set()
        out: list[Record] = []
        slots = self._slots
        general, multis = self._general, self._multi
        partition, clustering = self._partition, self._clustering
        blank = self._blank
        upsert = Op.UPSERT
        for event in events:
            if event.op is not upsert or event.static:
                return None
            try:
                values = event.partition_key
                key = [e(values[n]) for n, e in partition]
                if clustering:
                    values = event.clustering_key
                    key += [e(values[n]) for n, e in clustering]
            except KeyError:
                return None  # the general path reports the missing key column
            identity = tuple(key)
            if identity in seen:
                return None
            seen.add(identity)
            row = blank.copy()
            row[: len(key)] = key
            for name, change in event.cells.items():
                slot = slots.get(name)
                if slot is None:
                    multi = multis.get(name)
                    if multi is not None:
                        if type(change) is not CollectionChange:
                            return None
                        at, fields = multi
                        stored = fields(change)
                        if stored is None:
                            return None
                        row[at], row[at + 1] = stored
                        continue
                    if name in general:
                        return None
                    continue  # dropped since: the general path skips it too
                if type(change) is not Cell:
                    return None
                index, encode = slot
                value = change.value
                if change.deleted or value is None:
                    row[index] = None
                    row[index + 2] = None
                else:
                    # A zero-length value is stored as NULL, as the column encoders store it.
                    row[index] = encode(value) if encode is not None else None if value is EMPTY else value
                    row[index + 2] = change.local_deletion_time if change.ttl is not None else None
                row[index + 1] = change.timestamp
            liveness = event.liveness
            if liveness is not None:
                row[-3] = liveness.timestamp
                row[-2] = liveness.expires_at
            out.append(tuple(row))
        return out

    def row(self, delta: RowDelta) -> Record:
        cells = _cells(delta, self._regulars, self._types)
        return (*delta.key, *cells, delta.live_ts, delta.live_exp, delta.deleted_at)

    def static(self, delta: RowDelta) -> Record:
        return (*delta.key, *_cells(delta, self._statics, self._types), delta.deleted_at)


def _native_encoder(
    layout: Layout, encoder: Encoder, general: frozenset[str], multi: dict[str, tuple[int, Any]]
) -> Any | None:
    module = native_module()
    if module is None:
        return None
    table = layout.schema.qualified_name

    def spec(column: Any, key: bool = False) -> tuple[str, str, Callable[[Any], Any]]:
        wire = "multi" if column.type.multi_cell else copy_wire(column.type)
        return column.name, wire, encoder(column.type, table, column.name, key=key)

    return module.PgCopyEncoder(
        native_classes(),
        [spec(c, key=True) for c in layout.schema.partition_key],
        [spec(c, key=True) for c in layout.clustering],
        [spec(c) for c in layout.regulars],
        sorted(general),
        [(name, fields) for name, (_, fields) in multi.items()],
    )


def _plain(cql_type: CqlType, encode: Callable[[Any], Any]) -> Callable[[Any], Any] | None:
    """The encoder for non-null values, or None when asyncpg takes the driver's value unchanged."""
    return None if cql_type.kind in _AS_IS else encode


def _cells(delta: RowDelta, columns: Sequence[tuple[str, bool]], types: dict[str, tuple[str, str]]) -> list[Any]:
    out: list[Any] = []
    for name, multi in columns:
        if multi:
            elements = delta.elements.get(name)
            out += [None, None] if elements is None else element_fields(elements, name, types[name])
            continue
        cell = delta.cells.get(name)
        out += [None, None, None] if cell is None else [cell.value, cell.ts, cell.exp]
    return out


def element_fields(elements: Elements, column: str, where: tuple[str, str]) -> tuple[str | None, int | None]:
    """A multi-cell column's two stored fields: its element states as JSON text, its newest deletion."""
    deleted = None if elements.deleted_at == LIVE_TIMESTAMP else elements.deleted_at
    if not elements.cells:
        return None, deleted
    _check_elements(elements.cells, column, where)
    return dumps(elements.cells), deleted


def collection_fields(
    column: Any, where: tuple[str, str], change: CollectionChange
) -> tuple[str | None, int | None] | None:
    """``element_fields`` of one change of ``column``: what the general path stores for a row's only change of it.

    None where the general path must decide: an element PostgreSQL cannot hold may yet be overwritten by a
    later change of the same row in the batch, which only the general path merges before it refuses.
    """
    try:
        return element_fields(collection_elements(change, column.type), column.name, where)
    except ValueEncodingError:
        return None


#: The element kinds whose canonical text the compiled ``ElementFields`` writes itself.
_ELEMENT_SCALARS = {
    Kind.TEXT: "text",
    Kind.ASCII: "text",
    Kind.INT: "integer",
    Kind.BIGINT: "integer",
    Kind.SMALLINT: "integer",
    Kind.TINYINT: "integer",
}


def stored_fields(column: Any, where: tuple[str, str]) -> Callable[[CollectionChange], Any]:
    """``collection_fields`` of ``column`` as a function of one change: compiled (``native/src/elements.rs``)
    for sets and maps of text and integers, the reference itself otherwise."""
    reference = functools.partial(collection_fields, column, where)
    module = native_module()
    cql = column.type
    scalars = [_ELEMENT_SCALARS.get(arg.kind) for arg in cql.args]
    if module is None or cql.kind not in (Kind.SET, Kind.MAP) or None in scalars:
        return reference
    classes = {"collection_change": CollectionChange, "element_cell": ElementCell, "deletion": Deletion}
    value = scalars[1] if cql.kind is Kind.MAP else None
    compiled: Callable[[CollectionChange], Any] = module.ElementFields(classes, scalars[0], value, reference)
    return compiled


def _check_elements(cells: dict[str, Any], column: str, where: tuple[str, str]) -> None:
    """Refuse, by name, an element whose key or value holds U+0000: the column's view turns each into jsonb,
    which cannot hold it, so storing it would make the whole view unreadable."""
    for key, state in cells.items():
        for text in (key, state[0]):
            if isinstance(text, str) and json_check(text) is not None:
                table, cql_type = where
                raise ValueEncodingError(table, column, cql_type, "PostgreSQL jsonb cannot hold the character U+0000")
