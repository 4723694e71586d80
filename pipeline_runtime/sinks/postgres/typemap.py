"""CQL type -> PostgreSQL type, and driver value -> asyncpg value.

The one mapping table for PostgreSQL and TimescaleDB (docs/sinks.md repeats
it). Exactness beats convenience: varint and decimal go to ``numeric``,
``time`` to nanoseconds in ``bigint`` (PostgreSQL's time has microseconds),
and every type without an exact SQL counterpart (collections, tuples, UDTs,
durations, non-numeric vectors) to ``jsonb`` in the canonical JSON form of
``pipeline_runtime.cql.canonical``.
"""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from pipeline_runtime.cql.canonical import to_json
from pipeline_runtime.cql.types import CqlType, Kind
from pipeline_runtime.sinks.encoding import column_encoder, to_date, to_utc

SCALAR_TYPES: Mapping[Kind, str] = {
    Kind.ASCII: "text",
    Kind.TEXT: "text",
    Kind.BIGINT: "bigint",
    Kind.COUNTER: "bigint",
    Kind.INT: "integer",
    Kind.SMALLINT: "smallint",
    Kind.TINYINT: "smallint",
    Kind.VARINT: "numeric",
    Kind.DECIMAL: "numeric",
    Kind.FLOAT: "real",
    Kind.DOUBLE: "double precision",
    Kind.BOOLEAN: "boolean",
    Kind.BLOB: "bytea",
    Kind.DATE: "date",
    Kind.TIME: "bigint",
    Kind.TIMESTAMP: "timestamp with time zone",
    Kind.UUID: "uuid",
    Kind.TIMEUUID: "uuid",
    Kind.INET: "inet",
}

_VECTOR_ELEMENTS: Mapping[Kind, str] = {
    Kind.FLOAT: "real",
    Kind.DOUBLE: "double precision",
    Kind.INT: "integer",
    Kind.BIGINT: "bigint",
    Kind.SMALLINT: "smallint",
}


def pg_type(cql_type: CqlType) -> str:
    """The PostgreSQL column type of a single-cell CQL column (as ``format_type`` spells it)."""
    scalar = SCALAR_TYPES.get(cql_type.kind)
    if scalar is not None:
        return scalar
    if cql_type.kind is Kind.VECTOR and cql_type.args[0].kind in _VECTOR_ELEMENTS:
        return _VECTOR_ELEMENTS[cql_type.args[0].kind] + "[]"
    return "jsonb"


#: PostgreSQL type -> the binary COPY format the native encoder writes for it (``native/src/pgcopy.rs``).
_WIRES: Mapping[str, str] = {
    "text": "text",
    "smallint": "int2",
    "integer": "int4",
    "bigint": "int8",
    "numeric": "numeric",
    "real": "float4",
    "double precision": "float8",
    "boolean": "bool",
    "bytea": "bytea",
    "date": "date",
    "timestamp with time zone": "timestamptz",
    "uuid": "uuid",
    "inet": "inet",
    "jsonb": "jsonb",
}


def copy_wire(cql_type: CqlType) -> str:
    """The native COPY encoder's name for the binary format of ``pg_type(cql_type)``."""
    name = pg_type(cql_type)
    if name.endswith("[]"):
        return _WIRES[name[:-2]] + "[]"
    return _WIRES[name]


def is_json(cql_type: CqlType) -> bool:
    return pg_type(cql_type) == "jsonb"


def _time(value: Any) -> int:
    return int(to_json(value, CqlType(Kind.TIME)))


_ENCODERS: Mapping[Kind, Callable[[Any], Any]] = {
    Kind.ASCII: str,
    Kind.TEXT: str,
    Kind.BIGINT: int,
    Kind.COUNTER: int,
    Kind.INT: int,
    Kind.SMALLINT: int,
    Kind.TINYINT: int,
    Kind.VARINT: lambda v: Decimal(int(v)),
    Kind.DECIMAL: lambda v: v if isinstance(v, Decimal) else Decimal(str(v)),
    Kind.FLOAT: float,
    Kind.DOUBLE: float,
    Kind.BOOLEAN: bool,
    Kind.BLOB: bytes,
    Kind.DATE: to_date,
    Kind.TIME: _time,
    Kind.TIMESTAMP: to_utc,
    Kind.UUID: lambda v: v if isinstance(v, uuid.UUID) else uuid.UUID(str(v)),
    Kind.TIMEUUID: lambda v: v if isinstance(v, uuid.UUID) else uuid.UUID(str(v)),
    Kind.INET: lambda v: ipaddress.ip_address(str(v)),
}


def pg_encoder(cql_type: CqlType) -> Callable[[Any], Any]:
    """The function from a driver value of ``cql_type`` to its sink value (None stays None)."""
    return column_encoder(cql_type, _ENCODERS, lambda t: t.kind is Kind.VECTOR and t.args[0].kind in _VECTOR_ELEMENTS)


def pg_value(value: Any, cql_type: CqlType) -> Any:
    """One value for ``cql_type`` (tests and one-off callers; hot paths use ``pg_encoder``)."""
    return pg_encoder(cql_type)(value)
