"""Per-table decoding plans, built once per schema version and reused for every mutation.

A mutation names its columns (by name) in each partition update's header and
carries no lengths, so everything the cell loop needs per column is resolved
here ahead of time: simple or multi-cell, fixed value width, the value
decoder, and how to read cell paths. Headers repeat from one mutation to the
next, so a header's bytes map straight to its tuple of column plans.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pipeline_runtime.cql.schema import Column, ColumnKind, TableSchema
from pipeline_runtime.cql.types import CqlType, Kind
from pipeline_runtime.source.commitlog.values import (
    ComplexCodec,
    ValueDecoder,
    complex_codec,
    empty_value,
    value_decoder,
)
from pipeline_runtime.source.commitlog.vint import read_uvint
from pipeline_runtime.source.errors import DecodeError

#: Custom type classes that are really natives; they matter because some are fixed-width.
CUSTOM_NATIVES: dict[str, Kind] = {
    "org.apache.cassandra.db.marshal.LexicalUUIDType": Kind.UUID,
    "org.apache.cassandra.db.marshal.DateType": Kind.TIMESTAMP,
    "org.apache.cassandra.db.marshal.BytesType": Kind.BLOB,
    "org.apache.cassandra.db.marshal.UTF8Type": Kind.TEXT,
    "org.apache.cassandra.db.marshal.AsciiType": Kind.ASCII,
    "org.apache.cassandra.db.marshal.LongType": Kind.BIGINT,
    "org.apache.cassandra.db.marshal.Int32Type": Kind.INT,
    "org.apache.cassandra.db.marshal.BooleanType": Kind.BOOLEAN,
    "org.apache.cassandra.db.marshal.DoubleType": Kind.DOUBLE,
    "org.apache.cassandra.db.marshal.FloatType": Kind.FLOAT,
    "org.apache.cassandra.db.marshal.UUIDType": Kind.UUID,
    "org.apache.cassandra.db.marshal.TimeUUIDType": Kind.TIMEUUID,
    "org.apache.cassandra.db.marshal.TimestampType": Kind.TIMESTAMP,
    "org.apache.cassandra.db.marshal.EmptyType": Kind.EMPTY,
}


def effective_type(cql_type: CqlType) -> CqlType:
    """Custom types that name a native class decode as that native."""
    if cql_type.kind is Kind.CUSTOM and cql_type.custom_class:
        name = cql_type.custom_class
        if name.startswith("org.apache.cassandra.db.marshal.ReversedType("):
            name = name[len("org.apache.cassandra.db.marshal.ReversedType(") : -1]
        kind = CUSTOM_NATIVES.get(name)
        if kind is not None:
            return CqlType(kind)
    return cql_type


@dataclass(slots=True)
class ColumnPlan:
    """Everything the cell loop needs to read one column's cells."""

    name: str
    complex: bool
    #: Serialized width when written without a length, else -1.
    fixed: int
    decode: ValueDecoder
    empty: Any
    codec: ComplexCodec | None = None
    #: Cells of dropped columns are read (to move past them) but not reported.
    dropped: bool = False
    #: A live column dropped before and added again: when it was dropped (µs). Cassandra ignores
    #: its cells, and its complex deletions, written at or before that time
    #: (``DeserializationHelper.isDropped``), so they are not reported.
    dropped_at: int | None = None


def column_plan(
    name: str, cql_type: CqlType, keyspace: str, dropped: bool = False, dropped_at: int | None = None
) -> ColumnPlan:
    cql_type = effective_type(cql_type)
    if cql_type.multi_cell:
        codec = complex_codec(cql_type, keyspace)
        return ColumnPlan(name, True, -1, _no_value, None, codec, dropped, dropped_at)
    width = cql_type.fixed_width
    return ColumnPlan(
        name,
        False,
        -1 if width is None else width,
        value_decoder(cql_type, keyspace),
        empty_value(cql_type, keyspace),
        None,
        dropped,
        dropped_at,
    )


def _no_value(data: bytes) -> Any:
    raise DecodeError("a multi-cell column has no single value")


@dataclass(slots=True)
class KeyPart:
    """One partition-key or clustering column."""

    name: str
    fixed: int
    decode: ValueDecoder
    empty: Any


def _key_part(column: Column, keyspace: str) -> KeyPart:
    plan = column_plan(column.name, column.type, keyspace)
    return KeyPart(column.name, plan.fixed, plan.decode, plan.empty)


UnknownColumn = Callable[["TablePlan", str], ColumnPlan]


@dataclass(slots=True)
class TablePlan:
    """How to decode one table's partition updates."""

    schema: TableSchema
    #: Whether the pipeline asked for this table's changes.
    selected: bool
    #: Whether to build events (selected and reportable) or only walk past its bytes.
    emit: bool
    #: Why the table's changes are not reported even when selected ("counter", "view"), else None.
    skip_reason: str | None
    partition_key: tuple[KeyPart, ...]
    clustering: tuple[KeyPart, ...]
    by_name: dict[bytes, ColumnPlan]
    on_unknown: UnknownColumn
    headers: dict[bytes, tuple[ColumnPlan, ...]] = field(default_factory=dict)
    subsets: dict[tuple[int, int], tuple[ColumnPlan, ...]] = field(default_factory=dict)

    @property
    def keyspace(self) -> str:
        return self.schema.keyspace

    @property
    def table(self) -> str:
        return self.schema.name

    @property
    def table_id(self) -> uuid.UUID:
        return self.schema.id

    def read_columns(self, buf: bytes, pos: int) -> tuple[tuple[ColumnPlan, ...], int]:
        """Read a columns header (count, then names) at ``pos``; return its plans and the next position."""
        start = pos
        count, pos = read_uvint(buf, pos)
        names: list[bytes] = []
        for _ in range(count):
            length, pos = read_uvint(buf, pos)
            end = pos + length
            if end > len(buf):
                raise DecodeError("column name runs past the end of the mutation")
            names.append(buf[pos:end])
            pos = end
        key = buf[start:pos]
        cached = self.headers.get(key)
        if cached is None:
            cached = tuple(self._column(name) for name in names)
            self.headers[key] = cached
        return cached, pos

    def _column(self, name: bytes) -> ColumnPlan:
        plan = self.by_name.get(name)
        if plan is None:
            text = name.decode("utf-8", errors="replace")
            plan = self.on_unknown(self, text)
            self.by_name[name] = plan
        return plan

    def decode_partition_key(self, key: bytes) -> dict[str, Any]:
        """The partition key's column values (composite keys: u16 length, bytes, end-of-component byte)."""
        parts = self.partition_key
        if len(parts) == 1:
            part = parts[0]
            return {part.name: part.decode(key) if key else part.empty}
        values: dict[str, Any] = {}
        pos = 0
        for part in parts:
            if pos + 2 > len(key):
                raise DecodeError(f"composite partition key of {self.schema.qualified_name} is truncated")
            length = int.from_bytes(key[pos : pos + 2], "big")
            pos += 2
            raw = key[pos : pos + length]
            if len(raw) != length:
                raise DecodeError(f"composite partition key of {self.schema.qualified_name} is truncated")
            values[part.name] = part.decode(raw) if raw else part.empty
            pos += length + 1
        return values


def live_column_plan(schema: TableSchema, name: str, cql_type: CqlType) -> ColumnPlan:
    """The plan of a live column, remembering when a column of that name was last dropped."""
    dropped = schema.dropped.get(name)
    return column_plan(name, cql_type, schema.keyspace, dropped_at=None if dropped is None else dropped.dropped_at)


def build_plan(schema: TableSchema, emit: bool, on_unknown: UnknownColumn, skip_reason: str | None = None) -> TablePlan:
    """Compile ``schema`` into a plan; dropped columns are readable but marked."""
    keyspace = schema.keyspace
    by_name: dict[bytes, ColumnPlan] = {}
    for name, dropped in schema.dropped.items():
        try:
            by_name[name.encode("utf-8")] = column_plan(name, dropped.type, keyspace, dropped=True)
        except DecodeError:
            continue
    for column in schema.columns:
        if column.kind in (ColumnKind.REGULAR, ColumnKind.STATIC):
            by_name[column.name.encode("utf-8")] = live_column_plan(schema, column.name, column.type)
    if skip_reason is None:
        if schema.is_counter:
            skip_reason = "counter"
        elif schema.is_view:
            skip_reason = "view"
    return TablePlan(
        schema=schema,
        selected=emit,
        emit=emit and skip_reason is None,
        skip_reason=skip_reason,
        partition_key=tuple(_key_part(c, keyspace) for c in schema.partition_key),
        clustering=tuple(_key_part(c, keyspace) for c in schema.clustering),
        by_name=by_name,
        on_unknown=on_unknown,
    )
