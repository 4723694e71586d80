"""CQL type -> PostgreSQL type, and driver value -> asyncpg value.

The one mapping table for PostgreSQL and TimescaleDB (docs/sinks.md repeats
it). Exactness beats convenience: varint and decimal go to ``numeric``,
``time`` to nanoseconds in ``bigint`` (PostgreSQL's time has microseconds),
and every type without an exact SQL counterpart (collections, tuples, UDTs,
durations, non-numeric vectors) to ``jsonb`` in the canonical JSON form of
``pipeline_runtime.cql.canonical``.

``timestamp`` and ``date`` reach further than Python's years 1-9999 in both
Cassandra and PostgreSQL, so they are encoded as PostgreSQL's own binary
numbers (microseconds / days since 2000-01-01) and the sink's connections
exchange those types through ``register_codecs``. A value PostgreSQL cannot
hold (a timestamp past 294276 AD, a date past 5874897 AD or before 4713 BC,
text with U+0000, a numeric beyond its digit limits) raises
``ValueEncodingError``: that row is dead-lettered.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import uuid
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

import asyncpg

from pipeline_runtime.cql.canonical import to_json
from pipeline_runtime.cql.types import CqlType, Kind
from pipeline_runtime.cql.values import date_days, timestamp_from_millis, timestamp_micros
from pipeline_runtime.sinks.encoding import UnstorableValueError, column_encoder

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


#: 2000-01-01, PostgreSQL's epoch, from 1970: in days and in microseconds.
PG_EPOCH_DAYS = 10_957
PG_EPOCH_MICROS = PG_EPOCH_DAYS * 86_400_000_000
#: timestamptz holds [4714-11-24 BC, 294277-01-01) (``IS_VALID_TIMESTAMP``), µs from 2000.
PG_TIMESTAMP_MIN = -211_813_488_000_000_000
PG_TIMESTAMP_END = 9_223_371_331_200_000_000
#: date holds [4714-11-24 BC, 5874898-01-01) (``IS_VALID_DATE``), days from 2000.
PG_DATE_MIN = -2_451_545
PG_DATE_END = 2_145_031_949
#: numeric: at most 131072 digits before the decimal point and 16383 after it.
PG_NUMERIC_INTEGER_DIGITS = 131_072
PG_NUMERIC_SCALE = 16_383


def _timestamp(value: Any) -> int:
    """Microseconds since 2000-01-01 UTC: what timestamptz's binary format carries."""
    micros = timestamp_micros(value) - PG_EPOCH_MICROS
    if not PG_TIMESTAMP_MIN <= micros < PG_TIMESTAMP_END:
        raise UnstorableValueError("the timestamp is outside PostgreSQL timestamptz's range, 4713 BC to 294276 AD")
    return micros


def _date(value: Any) -> int:
    """Days since 2000-01-01: what date's binary format carries."""
    days = date_days(value) - PG_EPOCH_DAYS
    if not PG_DATE_MIN <= days < PG_DATE_END:
        raise UnstorableValueError("the date is outside PostgreSQL date's range, 4713 BC to 5874897 AD")
    return days


def _text(value: Any) -> str:
    text = str(value)
    if "\x00" in text:
        raise UnstorableValueError("PostgreSQL text cannot hold the character U+0000")
    return text


def _numeric(value: Decimal) -> Decimal:
    if value.is_finite():
        _, digits, exponent = value.as_tuple()
        assert isinstance(exponent, int)
        if -exponent > PG_NUMERIC_SCALE:
            raise UnstorableValueError(f"PostgreSQL numeric keeps at most {PG_NUMERIC_SCALE} decimal places")
        if len(digits) + exponent > PG_NUMERIC_INTEGER_DIGITS and any(digits):
            raise UnstorableValueError(
                f"PostgreSQL numeric holds at most {PG_NUMERIC_INTEGER_DIGITS} digits before the decimal point"
            )
    return value


def _varint(value: Any) -> Decimal:
    return _numeric(Decimal(int(value)))


def _decimal(value: Any) -> Decimal:
    return _numeric(value if isinstance(value, Decimal) else Decimal(str(value)))


#: An unescaped ``\u0000`` in JSON text (after an even number of backslashes).
_JSON_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def json_check(text: str) -> str | None:
    """Why PostgreSQL's jsonb cannot hold this JSON text (an escaped U+0000), or None."""
    if "\\u0000" in text and _JSON_NUL.search(text):
        return "PostgreSQL jsonb cannot hold the character U+0000"
    return None


_ENCODERS: Mapping[Kind, Callable[[Any], Any]] = {
    Kind.ASCII: _text,
    Kind.TEXT: _text,
    Kind.BIGINT: int,
    Kind.COUNTER: int,
    Kind.INT: int,
    Kind.SMALLINT: int,
    Kind.TINYINT: int,
    Kind.VARINT: _varint,
    Kind.DECIMAL: _decimal,
    Kind.FLOAT: float,
    Kind.DOUBLE: float,
    Kind.BOOLEAN: bool,
    Kind.BLOB: bytes,
    Kind.DATE: _date,
    Kind.TIME: _time,
    Kind.TIMESTAMP: _timestamp,
    Kind.UUID: lambda v: v if isinstance(v, uuid.UUID) else uuid.UUID(str(v)),
    Kind.TIMEUUID: lambda v: v if isinstance(v, uuid.UUID) else uuid.UUID(str(v)),
    Kind.INET: lambda v: ipaddress.ip_address(str(v)),
}


def pg_encoder(cql_type: CqlType, table: str = "", column: str = "", *, key: bool = False) -> Callable[[Any], Any]:
    """The function from a driver value of ``cql_type`` to its sink value (None stays None).

    ``table`` and ``column`` name the ``ValueEncodingError`` of a value PostgreSQL cannot hold.
    A zero-length value is NULL in a ``key`` column too: PostgreSQL refuses it there itself
    (SQLSTATE 23502, naming the column), a row-level rejection.
    """
    return column_encoder(
        cql_type,
        _ENCODERS,
        lambda t: t.kind is Kind.VECTOR and t.args[0].kind in _VECTOR_ELEMENTS,
        table,
        column,
        json_check,
    )


# -- timestamptz and date on the sink's connections -------------------------------------------

_UTC_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _encode_timestamptz(value: Any) -> tuple[int]:
    """Encoders give µs since 2000 already; datetimes (and ``Timestamp``) come from other statements."""
    return (value if isinstance(value, int) else timestamp_micros(value) - PG_EPOCH_MICROS,)


def _decode_timestamptz(value: tuple[int]) -> Any:
    """An aware UTC datetime, as asyncpg returns one; ``Timestamp`` outside years 1-9999; ±infinity as ints."""
    micros = value[0] + PG_EPOCH_MICROS
    if micros % 1000 == 0:
        moment = timestamp_from_millis(micros // 1000)
        return moment.replace(tzinfo=dt.UTC) if isinstance(moment, dt.datetime) else moment
    try:
        return _UTC_EPOCH + dt.timedelta(microseconds=micros)
    except OverflowError:
        return value[0]


def _encode_date(value: Any) -> tuple[int]:
    return (value if isinstance(value, int) else date_days(value) - PG_EPOCH_DAYS,)


def _decode_date(value: tuple[int]) -> Any:
    """A ``datetime.date``, or the driver's ``Date`` outside years 1-9999."""
    from cassandra.util import Date  # noqa: PLC0415 - only for values beyond datetime.date

    days = value[0] + PG_EPOCH_DAYS
    try:
        return dt.date(1970, 1, 1) + dt.timedelta(days=days)
    except OverflowError:
        return Date(days)


async def register_codecs(conn: asyncpg.Connection) -> None:
    """Make ``conn`` exchange timestamptz and date as PostgreSQL's binary numbers (the encoders' form).

    The sink's pool calls it for every connection (asyncpg's own codecs take only
    ``datetime``/``date``, which stop at year 9999).
    """
    await conn.set_type_codec(
        "timestamptz", schema="pg_catalog", encoder=_encode_timestamptz, decoder=_decode_timestamptz, format="tuple"
    )
    await conn.set_type_codec("date", schema="pg_catalog", encoder=_encode_date, decoder=_decode_date, format="tuple")


def pg_value(value: Any, cql_type: CqlType) -> Any:
    """One value for ``cql_type`` (tests and one-off callers; hot paths use ``pg_encoder``)."""
    return pg_encoder(cql_type)(value)
