"""Plain upserts merged as flat rows: the ClickHouse sink's fast path.

Most batches are upserts of distinct rows of tables without static or
multi-cell columns. For those, the general path's objects (``RowDelta``,
``SimpleCell``, one per cell, then a list per row) cost more than the
database work. Here each event becomes one flat list in the column order of
``TableSql.state_columns``, the stored state read back is another, and the
merge compares them slot by slot with exactly the rules of
``changes.RowDelta.merge`` and ``RowDelta.version``
(tests/unit/sinks/test_ch_flat.py checks the equivalence on random states).

Flat row layout: key values, then per regular column ``value, ts, exp``
(``ts`` None = no cell), then ``_live_ts, _live_exp, _del_ts``. ``merge``
appends ``_version`` and ``is_deleted``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from pipeline_runtime.cql.schema import TableSchema
from pipeline_runtime.cql.types import CqlType, Kind
from pipeline_runtime.events import LIVE_TIMESTAMP, Cell, ChangeEvent, Op
from pipeline_runtime.sinks.changes import Layout, TieOrder
from pipeline_runtime.sinks.clickhouse.typemap import ch_encoder, from_ch, is_array

FlatRow = list[Any]
Key = tuple[Any, ...]

#: Kinds whose encoder (``typemap._ENCODERS``) returns a value of exactly this type unchanged.
_NATIVE: dict[Kind, type] = {
    Kind.ASCII: str,
    Kind.TEXT: str,
    Kind.INET: str,
    Kind.BIGINT: int,
    Kind.COUNTER: int,
    Kind.INT: int,
    Kind.SMALLINT: int,
    Kind.TINYINT: int,
    Kind.FLOAT: float,
    Kind.DOUBLE: float,
    Kind.BOOLEAN: bool,
}

# changes._tie's parts: below one writetime step, (tombstone, has expiry, expiry).
_TOMBSTONE_TIE = 1 << 34
_EXPIRY_TIE = 1 << 33
_EXPIRY_CAP = (1 << 33) - 1


class FlatRows:
    """Shapes, reads back and merges one table's plain-upsert batches as flat rows."""

    def __init__(self, layout: Layout) -> None:
        schema = layout.schema
        self.layout = layout
        #: Only tables whose every stored column is a single-cell regular column qualify.
        self.eligible = not layout.statics and not any(c.type.multi_cell for c in layout.regulars)
        self._keys = len(schema.primary_key)
        table = schema.qualified_name
        self._partition = [(c.name, ch_encoder(c.type, table, c.name, key=True)) for c in schema.partition_key]
        self._clustering = [(c.name, ch_encoder(c.type, table, c.name, key=True)) for c in layout.clustering]
        #: name -> (slot of the value, encoder, the type the encoder returns unchanged or None);
        #: columns the sink does not store are absent.
        self._slots: dict[str, tuple[int, Callable[[Any], Any], type | None]] = {}
        for index, column in enumerate(layout.regulars):
            native = _NATIVE.get(column.type.kind)
            self._slots[column.name] = (self._keys + 3 * index, ch_encoder(column.type, table, column.name), native)
        self._cells = [self._keys + 3 * i for i in range(len(layout.regulars))]
        self._arrays = [self._keys + 3 * i for i, c in enumerate(layout.regulars) if is_array(c.type)]
        self._width = self._keys + 3 * len(layout.regulars) + 3
        self._blank: FlatRow = [None] * self._width
        self._blank[-1] = LIVE_TIMESTAMP
        self._readers = _readers(schema, layout)

    # -- shaping ----------------------------------------------------------

    def shape(self, events: Sequence[ChangeEvent]) -> dict[Key, FlatRow] | None:
        """One flat delta per row, or None when the batch needs the general path.

        The general path takes over for anything but upserts of regular rows,
        and for a row that repeats in the batch (it coalesces repeats).
        Cell semantics are ``changes.Shaper.shape``'s.
        """
        if not self.eligible:
            return None
        out: dict[Key, FlatRow] = {}
        slots = self._slots
        partition, clustering = self._partition, self._clustering
        blank = self._blank
        upsert = Op.UPSERT
        for event in events:
            if event.op is not upsert or event.static:
                return None
            try:
                values = event.partition_key
                key = [encode(values[name]) for name, encode in partition]
                if clustering:
                    values = event.clustering_key
                    key += [encode(values[name]) for name, encode in clustering]
            except KeyError:
                return None  # the general path reports the missing key column
            identity = tuple(key)
            if identity in out:
                return None
            row = blank.copy()
            row[: len(key)] = key
            for name, change in event.cells.items():
                slot = slots.get(name)
                if slot is None:
                    continue  # a key, counter or dropped column: not stored, as in the general path
                if type(change) is not Cell:
                    return None
                index, encode, native = slot
                value = change.value
                if change.deleted or value is None:
                    row[index] = None
                    row[index + 2] = None
                else:
                    # str(s), int(i), float(f), bool(b) are the values themselves: skip the call.
                    row[index] = value if type(value) is native else encode(value)
                    row[index + 2] = change.local_deletion_time if change.ttl is not None else None
                row[index + 1] = change.timestamp
            liveness = event.liveness
            if liveness is not None:
                row[-3] = liveness.timestamp
                row[-2] = liveness.expires_at
            out[identity] = row
        return out

    # -- reading back -------------------------------------------------------

    def stored(self, columns: Sequence[Sequence[Any]]) -> tuple[dict[Key, FlatRow], dict[Key, int]]:
        """Flat states and their stored ``_version``s, by key, from the read-back's result columns
        (``read_columns`` order, then ``_version``)."""
        *columns, versions = columns
        converted = [
            list(values) if reader is None else [None if v is None else reader(v) for v in values]
            for values, reader in zip(columns, self._readers, strict=True)
        ]
        keys = self._keys
        rows = [list(row) for row in zip(*converted, strict=True)]
        return {tuple(row[:keys]): row for row in rows}, {
            tuple(row[:keys]): version for row, version in zip(rows, versions, strict=True)
        }

    # -- merging ------------------------------------------------------------

    def merge(
        self, deltas: dict[Key, FlatRow], stored: dict[Key, FlatRow], versions: dict[Key, int] | None = None
    ) -> list[FlatRow]:
        """Join each delta into its stored state; the rows whose state changed, with version and is_deleted.

        A changed state's version is at least its stored ``_version`` plus one (``versions``),
        as in the compiled merge (``native/src/chmerge.rs``), which follows this method.
        """
        versions = versions or {}
        out: list[FlatRow] = []
        cells = self._cells
        for key, delta in deltas.items():
            state = stored.get(key)
            if state is None:
                out.append(self._finish(delta, self._version(delta)))
                continue
            changed = delta[-1] > state[-1]
            for index in cells:
                ts = delta[index + 1]
                if ts is None:
                    continue
                old_ts = state[index + 1]
                if old_ts is None or ts > old_ts or (ts == old_ts and _tie_wins(delta, state, index)):
                    state[index] = delta[index]
                    state[index + 1] = ts
                    state[index + 2] = delta[index + 2]
                    changed = True
            live = delta[-3]
            if live is not None:
                old_live = state[-3]
                if (
                    old_live is None
                    or live > old_live
                    or (live == old_live and _expiry_rank(delta[-2]) > _expiry_rank(state[-2]))
                ):
                    state[-3], state[-2] = live, delta[-2]
                    changed = True
            state[-1] = max(state[-1], delta[-1])
            if changed:
                out.append(self._finish(state, max(self._version(state), versions.get(key, -1) + 1)))
        return out

    def _version(self, row: FlatRow) -> int:
        """``RowDelta.version`` of the state this flat row holds (``changes._tie`` inlined)."""
        deleted, live, live_exp = row[-1], row[-3], row[-2]
        times: int = deleted if deleted > 0 else 0
        ties = 0
        if live is not None:
            times += live if live > 0 else 0
            if live_exp is not None:
                ties += _EXPIRY_TIE + (live_exp if live_exp < _EXPIRY_CAP else _EXPIRY_CAP)
        for index in self._cells:
            ts = row[index + 1]
            if ts is not None:
                if ts > 0:
                    times += ts
                if row[index] is None:
                    ties += _TOMBSTONE_TIE
                exp = row[index + 2]
                if exp is not None:
                    ties += _EXPIRY_TIE + (exp if exp < _EXPIRY_CAP else _EXPIRY_CAP)
        return (times << 80) + ties

    def _finish(self, row: FlatRow, version: int) -> FlatRow:
        """Append ``_version`` and ``is_deleted``; a null numeric vector is stored as ``[]``."""
        deleted = row[-1]
        live = row[-3]
        alive = live is not None and live > deleted
        if not alive:
            for index in self._cells:
                ts = row[index + 1]
                if ts is not None and row[index] is not None and ts > deleted:
                    alive = True
                    break
        for index in self._arrays:
            if row[index] is None:
                row[index] = []
        row.append(version)
        row.append(0 if alive else 1)
        return row


def _expiry_rank(exp: int | None) -> tuple[bool, int]:
    return (exp is not None, exp or 0)


def _tie_wins(new: FlatRow, old: FlatRow, index: int) -> bool:
    """At equal writetimes: ``changes._cell_rank`` without the writetime."""
    new_value, old_value = new[index], old[index]
    new_rank = (new_value is None, new[index + 2] is not None, new[index + 2] or 0, TieOrder(new_value))
    old_rank = (old_value is None, old[index + 2] is not None, old[index + 2] or 0, TieOrder(old_value))
    return new_rank > old_rank


def _readers(schema: TableSchema, layout: Layout) -> list[Callable[[Any], Any] | None]:
    """Per read-back column, the conversion ``from_ch`` needs, or None where it is the identity."""
    out: list[Callable[[Any], Any] | None] = [_reader(c.type) for c in schema.primary_key]
    for column in layout.regulars:
        out += [_reader(column.type), None, None]
    return [*out, None, None, None]


def _reader(cql_type: CqlType) -> Callable[[Any], Any] | None:
    # from_ch is the identity except for naive datetimes and empty numeric vectors.
    if cql_type.kind is Kind.TIMESTAMP or is_array(cql_type):
        return lambda value: from_ch(value, cql_type)
    return None


def read_columns(layout: Layout) -> list[str]:
    """The stored columns ``flat`` merges, in flat-row order (no version, no is_deleted)."""
    names: list[str] = list(layout.key_names)
    for column in layout.regulars:
        names += [column.name, f"{column.name}__ts", f"{column.name}__exp"]
    return [*names, "_live_ts", "_live_exp", "_del_ts"]


def nonempty_columns(
    rows: Iterable[FlatRow], columns: Sequence[tuple[str, str]]
) -> tuple[list[tuple[str, str]], list[list[Any]]]:
    """(name, type) and column-oriented data, without the columns that are NULL in every row.

    An omitted column takes its default, NULL for these Nullable columns, so
    leaving it out stores the same rows while serialising a third fewer
    columns in a typical batch (expiries are mostly absent).
    """
    data = [list(values) for values in zip(*rows, strict=True)]
    kept = [(column, values) for column, values in zip(columns, data, strict=True) if values.count(None) != len(values)]
    return [column for column, _ in kept], [values for _, values in kept]
