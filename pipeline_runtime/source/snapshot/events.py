"""Snapshot rows -> the change events the commitlog decoder produces (docs/snapshot.md).

A row read with ``SELECT value, WRITETIME(value), TTL(value) ...`` becomes an
``UPSERT`` whose cells carry Cassandra's own writetimes and expiries, so the
sinks' last-write-wins merge orders them against live changes as Cassandra
does: a snapshot cell never beats a newer change, an older change never beats
a snapshot cell. The rules for what CQL cannot tell (row liveness, list
element paths, expiry seconds) are written in docs/snapshot.md, next to each
case they cannot cover.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pipeline_runtime.cql.schema import Column, ColumnKind, TableSchema
from pipeline_runtime.cql.types import Kind
from pipeline_runtime.events import (
    Cell,
    ChangeEvent,
    CollectionChange,
    ColumnChange,
    Deletion,
    ElementCell,
    Liveness,
    Op,
    Position,
    SourcePosition,
)

#: 100 ns intervals between the Gregorian epoch (1582-10-15) and the Unix epoch.
_UUID_EPOCH_OFFSET = 0x01B21DD213814000


def snapshot_node(node: str) -> str:
    """The source node of a snapshot's events: never a commitlog node's name, so never its checkpoint."""
    return f"snapshot:{node}"


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True, slots=True)
class _ValueColumn:
    column: Column
    multi_cell: bool


class SnapshotConverter:
    """Builds the snapshot SELECT of one table and turns its result tuples into events."""

    def __init__(self, schema: TableSchema) -> None:
        self.schema = schema
        self._keys = schema.primary_key
        self._values = tuple(
            _ValueColumn(c, c.type.multi_cell)
            for c in schema.columns
            if c.kind in (ColumnKind.STATIC, ColumnKind.REGULAR)
        )
        self._statics = tuple(i for i, v in enumerate(self._values) if v.column.kind is ColumnKind.STATIC)
        self._regulars = tuple(i for i, v in enumerate(self._values) if v.column.kind is ColumnKind.REGULAR)

    def select(self, keyspace: str | None = None) -> str:
        """The paged SELECT of one token range ``(?, ?]``: the key, three fields per value column, the token.

        Multi-cell columns return one writetime and TTL per element (Cassandra 5.0), as lists that hold
        nulls (an element without a TTL); ``multi_cell_fields`` names them for the reader's decoder.
        """
        fields = [_identifier(c.name) for c in self._keys]
        for value in self._values:
            name = _identifier(value.column.name)
            fields += [name, f"WRITETIME({name})", f"TTL({name})"]
        partition = ", ".join(_identifier(c.name) for c in self.schema.partition_key)
        fields.append(f"token({partition})")  # last, so the positions above hold; pages resume by it
        table = f"{_identifier(keyspace or self.schema.keyspace)}.{_identifier(self.schema.name)}"
        return (
            f"SELECT {', '.join(fields)} FROM {table} "  # noqa: S608 - quoted identifiers
            f"WHERE token({partition}) > ? AND token({partition}) <= ?"
        )

    def multi_cell_fields(self) -> tuple[int, ...]:
        """Result positions of the per-element WRITETIME and TTL lists."""
        base = len(self._keys)
        return tuple(base + 3 * i + j for i, v in enumerate(self._values) if v.multi_cell for j in (1, 2))

    def events(
        self, rows: Sequence[Sequence[Any]], node: str, first: int, read_at_us: int, previous_partition: Any = None
    ) -> tuple[list[ChangeEvent], Any]:
        """Events of ``rows`` (one page), numbered from ``first``; also the last partition key seen.

        ``previous_partition``: the last partition of the page before, whose static row was already emitted.
        ``read_at_us``: when the page was read (µs), the liveness of rows that hold no cell.
        """
        source_node = snapshot_node(node)
        now_s = read_at_us // 1_000_000
        pk_count = len(self.schema.partition_key)
        key_count = len(self._keys)
        out: list[ChangeEvent] = []
        number = first
        for row in rows:
            partition_values = tuple(row[:pk_count])
            partition_key = {c.name: row[i] for i, c in enumerate(self.schema.partition_key)}
            changes = [self._change(value, row, key_count + 3 * i, now_s) for i, value in enumerate(self._values)]
            if self._statics and partition_values != previous_partition:
                statics = {self._values[i].column.name: changes[i] for i in self._statics if changes[i] is not None}
                if statics:
                    number += 1
                    out.append(self._event(partition_key, {}, statics, None, source_node, number, static=True))
            previous_partition = partition_values
            clustering = {c.name: row[pk_count + i] for i, c in enumerate(self.schema.clustering)}
            if clustering and all(v is None for v in clustering.values()):
                continue  # a partition with static cells and no rows: SELECT shows it as one row of nulls
            cells = {self._values[i].column.name: changes[i] for i in self._regulars if changes[i] is not None}
            number += 1
            liveness = _liveness(cells, read_at_us)
            out.append(self._event(partition_key, clustering, cells, liveness, source_node, number))
        return out, previous_partition

    def _event(  # noqa: PLR0917 - one call site, positional for brevity
        self,
        partition_key: dict[str, Any],
        clustering: dict[str, Any],
        cells: dict[str, ColumnChange | None],
        liveness: Liveness | None,
        node: str,
        number: int,
        static: bool = False,
    ) -> ChangeEvent:
        return ChangeEvent(
            Op.UPSERT,
            self.schema.keyspace,
            self.schema.name,
            partition_key,
            SourcePosition(node, Position(0, number)),
            clustering_key=clustering,
            cells={k: v for k, v in cells.items() if v is not None},
            liveness=liveness,
            static=static,
        )

    def _change(self, value: _ValueColumn, row: Sequence[Any], at: int, now_s: int) -> ColumnChange | None:
        data, writetime, ttl = row[at], row[at + 1], row[at + 2]
        if data is None:
            return None  # a null cell: nothing to say (its deletion, if any, reaches the sink through CDC)
        if not value.multi_cell:
            return Cell(data, writetime, ttl, now_s + ttl if ttl is not None else None)
        return _collection(value.column, data, writetime, ttl, now_s)


def _collection(column: Column, data: Any, writetimes: list[Any], ttls: list[Any], now_s: int) -> ColumnChange:
    kind = column.type.kind
    if kind is Kind.UDT:
        items = [(n, getattr(data, n, None)) for n in column.type.field_names]
        # one writetime/TTL per field, null for fields without a cell
        triples = [(p, v, w, t) for (p, v), w, t in zip(items, writetimes, ttls, strict=False) if w is not None]
        return CollectionChange(None, tuple(_element(p, v, w, t, now_s) for p, v, w, t in triples))
    if kind is Kind.MAP:
        pairs: list[tuple[Any, Any]] = list(data.items())
    elif kind is Kind.SET:
        pairs = [(e, None) for e in data]
    else:
        return _list(list(data), writetimes, ttls, now_s)
    return CollectionChange(
        None, tuple(_element(p, v, w, t, now_s) for (p, v), w, t in zip(pairs, writetimes, ttls, strict=True))
    )


def _element(path: Any, value: Any, writetime: int, ttl: int | None, now_s: int) -> ElementCell:
    return ElementCell(path, value, writetime, ttl, now_s + ttl if ttl is not None else None)


def _list(values: list[Any], writetimes: list[int], ttls: list[int | None], now_s: int) -> CollectionChange:
    """A whole list: CQL does not return the elements' cell paths (timeuuids), so the snapshot writes the list
    as an overwrite just newer than its newest element, with paths of its own (docs/snapshot.md, lists)."""
    newest = max(writetimes)
    elements = tuple(
        ElementCell(_list_path(newest + 1, i), v, newest + 1, t, now_s + t if t is not None else None)
        for i, (v, t) in enumerate(zip(values, ttls, strict=True))
    )
    return CollectionChange(Deletion(newest, now_s), elements)


def _list_path(timestamp_us: int, index: int) -> uuid.UUID:
    """A version-1 UUID at ``timestamp_us`` whose clock sequence and node hold ``index``: in list order."""
    ticks = timestamp_us * 10 + _UUID_EPOCH_OFFSET
    time_low, time_mid, time_hi = ticks & 0xFFFFFFFF, (ticks >> 32) & 0xFFFF, (ticks >> 48) & 0x0FFF
    clock = 0x8000 | ((index >> 48) & 0x3FFF)
    node = index & 0xFFFFFFFFFFFF
    return uuid.UUID(fields=(time_low, time_mid, time_hi | 0x1000, clock >> 8, clock & 0xFF, node))


def _liveness(cells: dict[str, ColumnChange | None], read_at_us: int) -> Liveness:
    """The row exists (SELECT returned it); its primary-key liveness is not selectable.

    With cells: the oldest live cell's writetime, expiring with the latest cell when every cell expires.
    Without cells (only a primary key): the time the page was read. docs/snapshot.md says why both are safe
    against a later-arriving older delete.
    """
    stamps: list[int] = []
    expiries: list[int | None] = []
    for change in cells.values():
        if isinstance(change, Cell):
            stamps.append(change.timestamp)
            expiries.append(change.expires_at)
        elif change is not None:
            for element in change.elements:
                stamps.append(element.timestamp)
                expiries.append(element.expires_at)
    if not stamps:
        return Liveness(read_at_us)
    known = [e for e in expiries if e is not None]
    if len(known) < len(expiries):
        return Liveness(min(stamps))
    expires_at = max(known)
    return Liveness(min(stamps), max(1, expires_at - read_at_us // 1_000_000), expires_at)
