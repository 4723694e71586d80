"""CQL type -> ClickHouse type, and driver value -> clickhouse-connect value.

The one mapping table for ClickHouse (docs/sinks.md repeats it). varint and
decimal are kept as exact decimal text in ``String``: ClickHouse's Decimal
needs a fixed scale and Int256 a bound, Cassandra's have neither. Types
without a ClickHouse counterpart (collections, tuples, UDTs, durations) are
canonical JSON text, identical to what the PostgreSQL sink stores as jsonb.

``timestamp`` and ``date`` are stored for every value Python's ``datetime``
and ``date`` hold (years 1-9999: the sink reads stored rows back through
clickhouse-connect, which returns those types); the engine keeps them
exactly as ticks and days even outside ClickHouse's documented 1900-2299.
A value beyond years 1-9999 raises ``ValueEncodingError``: that row is
dead-lettered.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from pipeline_runtime.cql.canonical import to_json
from pipeline_runtime.cql.types import CqlType, Kind
from pipeline_runtime.sinks.encoding import column_encoder, to_date, to_utc

SCALAR_TYPES: Mapping[Kind, str] = {
    Kind.ASCII: "String",
    Kind.TEXT: "String",
    Kind.BIGINT: "Int64",
    Kind.COUNTER: "Int64",
    Kind.INT: "Int32",
    Kind.SMALLINT: "Int16",
    Kind.TINYINT: "Int8",
    Kind.VARINT: "String",
    Kind.DECIMAL: "String",
    Kind.FLOAT: "Float32",
    Kind.DOUBLE: "Float64",
    Kind.BOOLEAN: "Bool",
    Kind.BLOB: "String",
    Kind.DATE: "Date32",
    Kind.TIME: "Int64",
    Kind.TIMESTAMP: "DateTime64(3, 'UTC')",
    Kind.UUID: "UUID",
    Kind.TIMEUUID: "UUID",
    Kind.INET: "String",
}

_VECTOR_ELEMENTS: Mapping[Kind, str] = {
    Kind.FLOAT: "Float32",
    Kind.DOUBLE: "Float64",
    Kind.INT: "Int32",
    Kind.BIGINT: "Int64",
}


def ch_type(cql_type: CqlType) -> str:
    """The (non-nullable) ClickHouse type of a single-cell CQL column."""
    scalar = SCALAR_TYPES.get(cql_type.kind)
    if scalar is not None:
        return scalar
    if is_array(cql_type):
        return f"Array({_VECTOR_ELEMENTS[cql_type.args[0].kind]})"
    return "String"


def stage_type(cql_type: CqlType) -> str:
    """``ch_type``, or ``JSON`` for a String holding canonical JSON (the native stage encoder's names)."""
    if cql_type.kind in SCALAR_TYPES or is_array(cql_type):
        return ch_type(cql_type)
    return "JSON"


def is_array(cql_type: CqlType) -> bool:
    """Numeric vectors are arrays, which ClickHouse cannot make Nullable: null is stored as []."""
    return cql_type.kind is Kind.VECTOR and cql_type.args[0].kind in _VECTOR_ELEMENTS


def nullable(cql_type: CqlType) -> str:
    kind = ch_type(cql_type)
    return kind if is_array(cql_type) else f"Nullable({kind})"


_ENCODERS: Mapping[Kind, Callable[[Any], Any]] = {
    Kind.ASCII: str,
    Kind.TEXT: str,
    Kind.BIGINT: int,
    Kind.COUNTER: int,
    Kind.INT: int,
    Kind.SMALLINT: int,
    Kind.TINYINT: int,
    Kind.VARINT: lambda v: str(int(v)),
    Kind.DECIMAL: lambda v: str(v if isinstance(v, Decimal) else Decimal(str(v))),
    Kind.FLOAT: float,
    Kind.DOUBLE: float,
    Kind.BOOLEAN: bool,
    Kind.BLOB: bytes,
    Kind.DATE: to_date,
    Kind.TIME: lambda v: int(to_json(v, CqlType(Kind.TIME))),
    Kind.TIMESTAMP: to_utc,
    Kind.UUID: lambda v: v if isinstance(v, uuid.UUID) else uuid.UUID(str(v)),
    Kind.TIMEUUID: lambda v: v if isinstance(v, uuid.UUID) else uuid.UUID(str(v)),
    Kind.INET: str,
}


def ch_encoder(cql_type: CqlType, table: str = "", column: str = "", *, key: bool = False) -> Callable[[Any], Any]:
    """The function from a driver value of ``cql_type`` to its sink value (None stays None).

    ``table`` and ``column`` name the ``ValueEncodingError`` of a value ClickHouse cannot take.
    """
    return column_encoder(cql_type, _ENCODERS, is_array, table, column, key=key)


def ch_value(value: Any, cql_type: CqlType) -> Any:
    """One value for ``cql_type`` (tests and one-off callers; hot paths use ``ch_encoder``)."""
    return ch_encoder(cql_type)(value)


def from_ch(value: Any, cql_type: CqlType) -> Any:
    """A value read back from ClickHouse, as ``ch_value`` produced it."""
    if is_array(cql_type) and value == []:
        return None
    return normalise(value)


def normalise(value: Any) -> Any:
    """clickhouse-connect returns naive UTC datetimes; ``ch_value`` makes aware ones."""
    if isinstance(value, dt.datetime) and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value
