"""Snapshot rows -> the change events the commitlog decoder produces (docs/snapshot.md).

A row read with ``SELECT value, WRITETIME(value), TTL(value) ...`` becomes an
``UPSERT`` whose cells carry Cassandra's own writetimes and expiries, so the
sinks' last-write-wins merge orders them against live changes as Cassandra
does: a snapshot cell never beats a newer change, an older change never beats
a snapshot cell. The rules for what CQL cannot tell (row liveness, list
element paths, expiry seconds) are written in docs/snapshot.md, next to each
case they cannot cover.

A page arrives as Cassandra sent it (``RawRows``: the native protocol's row
bytes, which the reader keeps undecoded), and its values are decoded with the
commitlog decoder's own value decoders, so a snapshot cell and a live cell of
the same value are the same Python object. Where the compiled core is built,
``SnapshotConverter.events`` runs its twin (``native/src/snapshot.rs``,
``SnapshotRows``) from the bytes to the events; ``parse`` and
``python_events`` are the reference both are tested against.
"""

from __future__ import annotations

import functools
import struct
import uuid
from collections.abc import Callable, Mapping, Sequence
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
from pipeline_runtime.native import native_module
from pipeline_runtime.source.commitlog import values

#: 100 ns intervals between the Gregorian epoch (1582-10-15) and the Unix epoch.
_UUID_EPOCH_OFFSET = 0x01B21DD213814000


def snapshot_node(node: str) -> str:
    """The source node of a snapshot's events: never a commitlog node's name, so never its checkpoint."""
    return f"snapshot:{node}"


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True, slots=True)
class RawRows:
    """One page of result rows as Cassandra sent them (native protocol v3+ row content).

    ``data``: an int row count, then per row and per column an int length (-1: null) and that
    many bytes. ``columns``: the columns per row, from the page's result metadata.
    """

    data: bytes
    columns: int


@dataclass(frozen=True, slots=True)
class PageEvents:
    """What one page of a token range became.

    ``last_partition``: the partition key of the page's last row (whose statics went out).
    ``final_token``: the token of the page's last row; ``token_before_final``: the highest token
    before it in the page (None when every row of the page has the final token).
    """

    events: list[ChangeEvent]
    rows: int
    last_partition: Any
    final_token: int | None
    token_before_final: int | None


#: Decodes one field of a result row: its bytes, or None for a null.
_FieldDecoder = Callable[[bytes | None], Any]

_COUNT = struct.Struct(">i")


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
        self._pk_names = tuple(c.name for c in schema.partition_key)
        self._ck_names = tuple(c.name for c in schema.clustering)
        #: Per value column: name, result position of its value (then WRITETIME, TTL), multi-cell, static.
        self._plan = tuple(
            (v.column.name, len(self._keys) + 3 * i, v.multi_cell, v.column.kind is ColumnKind.STATIC, v.column)
            for i, v in enumerate(self._values)
        )
        self._has_statics = any(static for _, _, _, static, _ in self._plan)
        self._fields = _field_decoders(schema, self._keys, self._values)
        self._native = _native_rows(schema, self._plan)

    def select(self, keyspace: str | None = None) -> str:
        """The paged SELECT of one token range ``(?, ?]``: the key, three fields per value column, the token.

        Multi-cell columns return one writetime and TTL per element (Cassandra 5.0), as lists that hold
        nulls (an element without a TTL).
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

    def events(
        self, rows: RawRows, node: str, first: int, read_at_us: int, previous_partition: Any = None
    ) -> PageEvents:
        """The events of one page (``rows``), numbered from ``first``.

        ``previous_partition``: the last partition of the page before, whose static row was already emitted.
        ``read_at_us``: when the page was read (µs), the liveness of rows that hold no cell.
        """
        if self._native is not None:
            events, last, count, final, before = self._native.events(
                rows.data, rows.columns, snapshot_node(node), first, read_at_us, previous_partition
            )
            return PageEvents(events, count, last, final, before)
        parsed = self.parse(rows)
        events, last = self.python_events(parsed, node, first, read_at_us, previous_partition)
        tokens = [row[-1] for row in parsed]
        final = tokens[-1] if tokens else None
        before = max((t for t in tokens if t != final), default=None)
        return PageEvents(events, len(parsed), last, final, before)

    def parse(self, rows: RawRows) -> list[tuple[Any, ...]]:
        """The rows of a page as tuples of values (the reference of the compiled core's reading).

        Keys and simple values decode as the commitlog decoder decodes cells (``values.value_decoder``);
        a set is its list of elements and a map its list of (key, value) pairs, each decoded as the
        commitlog decoder decodes element paths and values; a list or UDT is the driver's value of its
        frozen form; writetimes and TTLs are ints (lists of them, holding None, for multi-cell columns).
        """
        if rows.columns != len(self._fields):
            raise ValueError(
                f"{self.schema.qualified_name}: a snapshot page has {rows.columns} columns, "
                f"the SELECT asks for {len(self._fields)}"
            )
        data, fields = rows.data, self._fields
        (count,) = _COUNT.unpack_from(data, 0)
        at = 4
        parsed = []
        for _ in range(count):
            row = []
            for decode in fields:
                (length,) = _COUNT.unpack_from(data, at)
                at += 4
                if length < 0:
                    row.append(decode(None))
                    continue
                if at + length > len(data):
                    raise ValueError(f"{self.schema.qualified_name}: a snapshot page ends inside a value")
                row.append(decode(data[at : at + length]))
                at += length
            parsed.append(tuple(row))
        if at != len(data):
            raise ValueError(f"{self.schema.qualified_name}: {len(data) - at} bytes after the last row of a page")
        return parsed

    def python_events(
        self, rows: Sequence[Sequence[Any]], node: str, first: int, read_at_us: int, previous_partition: Any = None
    ) -> tuple[list[ChangeEvent], Any]:
        """Parsed rows (``parse``) -> events and the last partition: the reference of the compiled converter."""
        source_node = snapshot_node(node)
        now_s = read_at_us // 1_000_000
        keyspace, table = self.schema.keyspace, self.schema.name
        pk_names, ck_names = self._pk_names, self._ck_names
        pk_count, ck_end = len(pk_names), len(pk_names) + len(ck_names)
        plan, has_statics = self._plan, self._has_statics
        out: list[ChangeEvent] = []
        number = first
        for row in rows:
            partition_values = tuple(row[:pk_count])
            partition_key = dict(zip(pk_names, partition_values, strict=True))
            new_partition = has_statics and partition_values != previous_partition
            previous_partition = partition_values
            cells: dict[str, ColumnChange] = {}
            statics: dict[str, ColumnChange] = {}
            # The row's liveness (its primary-key marker is not selectable), gathered as its cells are built:
            # with cells, the oldest live cell's writetime, expiring with the latest cell when every cell
            # expires; without cells, the time the page was read. docs/snapshot.md says why both are safe
            # against a later-arriving older delete.
            oldest: int | None = None
            latest_expiry, all_expire = 0, True
            for name, at, multi_cell, static, column in plan:
                data = row[at]
                if data is None:
                    continue  # a null cell: nothing to say (a deletion, if any, reaches the sink through CDC)
                if static and not new_partition:
                    continue  # the partition's statics went out with its first row of this page
                writetime, ttl = row[at + 1], row[at + 2]
                if not multi_cell:
                    expires = now_s + ttl if ttl is not None else None
                    change: ColumnChange = Cell(data, writetime, ttl, expires)
                    if not static:
                        oldest = writetime if oldest is None or writetime < oldest else oldest
                        if expires is None:
                            all_expire = False
                        elif expires > latest_expiry:
                            latest_expiry = expires
                else:
                    collection = _collection(column, data, writetime, ttl, now_s)
                    change = collection
                    if not static:
                        for element in collection.elements:
                            stamp, expires = element.timestamp, element.local_deletion_time
                            oldest = stamp if oldest is None or stamp < oldest else oldest
                            if element.ttl is None or expires is None:
                                all_expire = False
                            elif expires > latest_expiry:
                                latest_expiry = expires
                if static:
                    statics[name] = change
                else:
                    cells[name] = change
            if statics:
                number += 1
                position = SourcePosition(source_node, Position(0, number))
                out.append(ChangeEvent(Op.UPSERT, keyspace, table, partition_key, position, cells=statics, static=True))
            clustering = dict(zip(ck_names, row[pk_count:ck_end], strict=True))
            if ck_names and all(v is None for v in clustering.values()):
                continue  # a partition with static cells and no rows: SELECT shows it as one row of nulls
            if oldest is None:
                liveness = Liveness(read_at_us)
            elif all_expire:
                liveness = Liveness(oldest, max(1, latest_expiry - now_s), latest_expiry)
            else:
                liveness = Liveness(oldest)
            number += 1
            position = SourcePosition(source_node, Position(0, number))
            out.append(
                ChangeEvent(
                    Op.UPSERT, keyspace, table, partition_key, position,
                    clustering_key=clustering, cells=cells, liveness=liveness,
                )
            )  # fmt: skip
        return out, previous_partition


def _nullable(decode: values.ValueDecoder, empty: Any) -> _FieldDecoder:
    """A field decoder: None for a null, ``empty`` for zero bytes, else ``decode``."""

    def field(data: bytes | None) -> Any:
        if data is None:
            return None
        return decode(data) if data else empty

    return field


def _signed(data: bytes) -> int:
    return int.from_bytes(data, "big", signed=True)


def _integer(data: bytes | None) -> int | None:
    """A WRITETIME (bigint), TTL (int) or token (bigint)."""
    return None if data is None else _signed(data)


def _elements(data: bytes, decode: Callable[[bytes], Any], per_element: int = 1) -> list[Any]:
    """A frozen collection's fields: a count, then per element ``per_element`` fields (a map's entries are
    a key and a value), each a length and its bytes (-1: null)."""
    (count,) = _COUNT.unpack_from(data, 0)
    at, out = 4, list[Any]()
    for _ in range(count * per_element):
        (length,) = _COUNT.unpack_from(data, at)
        at += 4
        if length < 0:
            out.append(None)
            continue
        if at + length > len(data):
            raise ValueError("a collection value ends inside an element")
        out.append(decode(data[at : at + length]))
        at += length
    if at != len(data):
        raise ValueError("bytes after the last element of a collection value")
    return out


def _integers(data: bytes | None) -> list[int | None] | None:
    """The per-element WRITETIME or TTL list of a multi-cell column (an entry is null where there is no TTL)."""
    return None if data is None else _elements(data, _signed)


def _set_field(codec: values.ComplexCodec) -> _FieldDecoder:
    assert codec.path is not None  # a set's codec decodes its elements as paths
    path = _nullable(codec.path, codec.path_empty)

    def field(data: bytes | None) -> Any:
        return None if data is None else _elements(data, path)

    return field


def _map_field(codec: values.ComplexCodec) -> _FieldDecoder:
    assert codec.path is not None and codec.value is not None
    key, value = _nullable(codec.path, codec.path_empty), _nullable(codec.value, codec.value_empty)

    def field(data: bytes | None) -> Any:
        if data is None:
            return None
        flat = _elements(data, lambda b: b, per_element=2)
        return [(key(flat[i]), value(flat[i + 1])) for i in range(0, len(flat), 2)]

    return field


def _field_decoders(
    schema: TableSchema, keys: Sequence[Column], value_columns: Sequence[_ValueColumn]
) -> tuple[_FieldDecoder, ...]:
    """One decoder per column of the snapshot SELECT, in its order."""
    keyspace = schema.keyspace

    def simple(cql: Any) -> _FieldDecoder:
        return _nullable(values.value_decoder(cql, keyspace), values.empty_value(cql, keyspace))

    fields: list[_FieldDecoder] = [simple(c.type) for c in keys]
    for value in value_columns:
        cql = value.column.type
        if not value.multi_cell:
            fields += [simple(cql), _integer, _integer]
            continue
        if cql.kind is Kind.SET:
            field = _set_field(values.complex_codec(cql, keyspace))
        elif cql.kind is Kind.MAP:
            field = _map_field(values.complex_codec(cql, keyspace))
        else:  # lists and UDTs: the driver's value of the frozen form
            field = _nullable(values.value_decoder(cql, keyspace), None)
        fields += [field, _integers, _integers]
    fields.append(_integer)  # the token
    return tuple(fields)


def _native_rows(schema: TableSchema, plan: Sequence[tuple[str, int, bool, bool, Column]]) -> Any | None:
    """The compiled converter of ``plan``, or None without the compiled core.

    Each value decoder goes with its zero-length value; the core decodes the common natives itself
    (the commitlog decoder's direct kinds) and calls the decoder for the rest.
    """
    module = native_module()
    if module is None:
        return None
    from pipeline_runtime.source.commitlog.fast import direct_decoders, event_classes  # noqa: PLC0415

    keyspace = schema.keyspace

    def codec(cql: Any) -> tuple[values.ValueDecoder, Any]:
        return values.value_decoder(cql, keyspace), values.empty_value(cql, keyspace)

    kinds = {Kind.SET: "set", Kind.MAP: "map"}
    entries = []
    for name, at, multi_cell, static, column in plan:
        kind = "simple" if not multi_cell else kinds.get(column.type.kind, "other")
        convert = functools.partial(_collection, column) if kind == "other" else None
        codecs: list[tuple[values.ValueDecoder | None, Any]]
        if kind == "simple":
            codecs = [codec(column.type)]
        elif kind in ("set", "map"):
            complex_codec = values.complex_codec(column.type, keyspace)
            codecs = [(complex_codec.path, complex_codec.path_empty)]
            if complex_codec.value is not None:
                codecs.append((complex_codec.value, complex_codec.value_empty))
        else:
            codecs = [(values.value_decoder(column.type, keyspace), None)]
        entries.append((name, at, kind, static, convert, codecs))
    classes = event_classes() | {"position": Position, "source_position": SourcePosition}
    return module.SnapshotRows(
        classes,
        direct_decoders(),
        schema.keyspace,
        schema.name,
        [(c.name, *codec(c.type)) for c in schema.partition_key],
        [(c.name, *codec(c.type)) for c in schema.clustering],
        entries,
    )


def _collection(column: Column, data: Any, writetimes: list[Any], ttls: list[Any], now_s: int) -> CollectionChange:
    kind = column.type.kind
    if kind is Kind.UDT:
        items = [(n, getattr(data, n, None)) for n in column.type.field_names]
        # one writetime/TTL per field, null for fields without a cell
        triples = [(p, v, w, t) for (p, v), w, t in zip(items, writetimes, ttls, strict=False) if w is not None]
        return CollectionChange(None, tuple(_element(p, v, w, t, now_s) for p, v, w, t in triples))
    if kind is Kind.MAP:
        pairs: list[tuple[Any, Any]] = list(data.items()) if isinstance(data, Mapping) else list(data)
    elif kind is Kind.SET:
        pairs = [(e, None) for e in data]
    else:
        return _list(list(data), writetimes, ttls, now_s)
    if len(pairs) != len(writetimes) or len(pairs) != len(ttls):
        raise ValueError(f"{column.name}: {len(pairs)} elements, {len(writetimes)} writetimes, {len(ttls)} TTLs")
    return CollectionChange(
        None,
        tuple(  # _element, inlined: this runs once per element of every collection a snapshot reads
            ElementCell(p, v, w, t, None if t is None else now_s + t)
            for (p, v), w, t in zip(pairs, writetimes, ttls, strict=False)
        ),
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
