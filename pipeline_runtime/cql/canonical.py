"""Canonical JSON form of CQL values, shared by every sink and by hash masking.

Collections, tuples, UDTs and durations have no exact counterpart in SQL
types, so every sink stores them as the same canonical JSON text. One encoder
means the PostgreSQL and ClickHouse copies of a row compare equal, and the
form is deterministic: the same Cassandra value always gives the same bytes,
which both idempotent writes and ``hash`` masking rely on.

Rules (docs/sinks.md has the full table):

- numbers stay numbers; varint and decimal are written as exact JSON number
  literals (never through float); NaN and infinities become strings;
- blob is ``"0x<hex>"``, uuid/timeuuid their lowercase text, inet its text;
- timestamp is ISO-8601 UTC with milliseconds (or the signed millisecond
  count as text when outside Python's years 1-9999), date ``YYYY-MM-DD`` (or
  the signed day number when outside Python's range), time nanoseconds since
  midnight, duration ``{"months","days","nanoseconds"}``;
- a zero-length value of a type whose values are never empty (``EMPTY``,
  e.g. ``blobAsInt(0x)`` inside a tuple) is ``""``, distinct from null;
- list, tuple and vector are arrays; set is an array ordered by each
  element's canonical text; map is an object when its key is text or ascii,
  otherwise an array of ``[key, value]`` pairs ordered by the key's text;
  a UDT is an object with every field in declared order (absent = null).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import uuid
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from pipeline_runtime.cql.types import CqlType, Kind
from pipeline_runtime.cql.values import EMPTY, Timestamp

JsonValue = Any
"""What ``to_json`` returns: None, bool, int, float, str, Decimal, list or dict."""

TEXT_KINDS = frozenset({Kind.TEXT, Kind.ASCII})

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def to_json(value: Any, cql_type: CqlType) -> JsonValue:
    """The canonical JSON-able form of a driver value of ``cql_type``."""
    if value is None:
        return None
    kind = cql_type.kind
    if value is EMPTY:
        return None if kind is Kind.EMPTY else ""
    converter = _SCALARS.get(kind)
    if converter is not None:
        return converter(value)
    if kind in (Kind.LIST, Kind.VECTOR):
        (element,) = cql_type.args
        return [to_json(v, element) for v in value]
    if kind is Kind.SET:
        (element,) = cql_type.args
        return sort_by_text(to_json(v, element) for v in value)
    if kind is Kind.MAP:
        key_type, value_type = cql_type.args
        return map_json(((to_json(k, key_type), to_json(v, value_type)) for k, v in _items(value)), key_type)
    if kind is Kind.TUPLE:
        return [to_json(v, t) for v, t in zip(value, cql_type.args, strict=False)]
    if kind is Kind.UDT:
        return {
            name: to_json(udt_field(value, name), t)
            for name, t in zip(cql_type.field_names, cql_type.args, strict=True)
        }
    return _fallback(value)


def canonical_text(value: Any, cql_type: CqlType) -> str:
    """The canonical text of a driver value: what ``hash`` masking feeds to HMAC, so the same
    Cassandra value hashes the same whatever Python type the driver used and in every sink."""
    if type(value) is str and cql_type.kind in TEXT_KINDS:
        return _SCALAR(value)  # what to_json and dumps make of it, without the two calls
    return dumps(to_json(value, cql_type))


#: One encoder for every scalar: ``json.dumps`` with an argument builds a new encoder per call.
_SCALAR = json.JSONEncoder(ensure_ascii=False).encode
#: Values written as the standard encoder writes them (Decimal is not: exact digits matter).
_PLAIN = frozenset({str, int, float, bool, type(None)})


#: The stdlib's compiled encoder with ``_encode``'s separators: the same text for values without Decimal
#: (the keys of canonical JSON objects are always text).
_COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def dumps(value: JsonValue) -> str:
    """Compact canonical JSON text; Decimal is written as an exact number literal."""
    if type(value) in _PLAIN:
        return _SCALAR(value)  # set elements and map keys: most calls, one scalar each
    try:
        return _COMPACT(value)  # element states and most collections: no Decimal inside
    except TypeError:  # a Decimal, which the stdlib would write through float
        return "".join(_encode(value))


def loads(text: str) -> JsonValue:
    """Parse canonical JSON text back, keeping exact decimals."""
    return json.loads(text, parse_float=Decimal)


def sort_by_text(values: Iterable[JsonValue]) -> list[JsonValue]:
    """Set elements (and non-text map keys) are ordered by their canonical text in every sink."""
    return [v for _, v in sorted(((dumps(v), v) for v in values), key=lambda pair: pair[0])]


def map_json(pairs: Iterable[tuple[JsonValue, JsonValue]], key_type: CqlType) -> JsonValue:
    """A map's canonical form: object for text keys, else sorted ``[key, value]`` pairs."""
    ordered = sorted(((dumps(k), k, v) for k, v in pairs), key=lambda item: item[0])
    if key_type.kind in TEXT_KINDS:
        return {k: v for _, k, v in ordered}
    return [[k, v] for _, k, v in ordered]


def udt_field(value: Any, name: str) -> Any:
    """A UDT field from either style the driver uses: attribute objects or dicts."""
    if isinstance(value, Mapping):
        return value.get(name)
    return getattr(value, name, None)


def epoch_seconds(moment: dt.datetime) -> int:
    """Whole seconds since the epoch of a naive-UTC or aware datetime."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return int((moment - _EPOCH).total_seconds())


def _items(value: Any) -> Iterable[tuple[Any, Any]]:
    if isinstance(value, Mapping):
        return value.items()
    return list(value.items()) if hasattr(value, "items") else list(value)


def _encode(value: JsonValue) -> Iterable[str]:
    # The stdlib encoder writes Decimal through float; exact digits matter here.
    if isinstance(value, Decimal):
        yield str(value)
    elif isinstance(value, dict):
        yield "{"
        for index, (key, item) in enumerate(value.items()):
            if index:
                yield ","
            yield _SCALAR(str(key))
            yield ":"
            yield from _encode(item)
        yield "}"
    elif isinstance(value, (list, tuple)):
        yield "["
        for index, item in enumerate(value):
            if index:
                yield ","
            yield from _encode(item)
        yield "]"
    else:
        yield _SCALAR(value)


def _float(value: Any) -> JsonValue:
    number = float(value)
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "Infinity" if number > 0 else "-Infinity"
    return number


def _decimal(value: Any) -> JsonValue:
    number = value if isinstance(value, Decimal) else Decimal(str(value))
    return number if number.is_finite() else str(number)


def _blob(value: Any) -> str:
    return "0x" + bytes(value).hex()


def _timestamp(value: Any) -> str:
    if isinstance(value, Timestamp):
        return str(value.milliseconds)
    if isinstance(value, (int, float)):
        value = _EPOCH + dt.timedelta(milliseconds=value)
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return f"{value:%Y-%m-%dT%H:%M:%S}.{value.microsecond // 1000:03d}Z"


def _date(value: Any) -> str:
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)  # cassandra.util.Date: ISO text, or the day number when out of range


def _time(value: Any) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, dt.time):
        return ((value.hour * 60 + value.minute) * 60 + value.second) * 1_000_000_000 + value.microsecond * 1000
    return int(value.nanosecond_time)


def _duration(value: Any) -> dict[str, int]:
    return {"months": int(value.months), "days": int(value.days), "nanoseconds": int(value.nanoseconds)}


def _fallback(value: Any) -> JsonValue:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _blob(value)
    return str(value)


_SCALARS: Mapping[Kind, Any] = {
    Kind.ASCII: str,
    Kind.TEXT: str,
    Kind.BIGINT: int,
    Kind.INT: int,
    Kind.SMALLINT: int,
    Kind.TINYINT: int,
    Kind.COUNTER: int,
    Kind.VARINT: int,
    Kind.BOOLEAN: bool,
    Kind.FLOAT: _float,
    Kind.DOUBLE: _float,
    Kind.DECIMAL: _decimal,
    Kind.BLOB: _blob,
    Kind.UUID: lambda v: str(uuid.UUID(str(v))),
    Kind.TIMEUUID: lambda v: str(uuid.UUID(str(v))),
    Kind.INET: str,
    Kind.TIMESTAMP: _timestamp,
    Kind.DATE: _date,
    Kind.TIME: _time,
    Kind.DURATION: _duration,
    Kind.EMPTY: lambda v: None,
    Kind.CUSTOM: _fallback,
}
