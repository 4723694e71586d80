"""The canonical text of a CQL value, as hash masking feeds it to HMAC.

The same Cassandra value must hash the same whatever Python type the driver
used (``SortedSet`` or ``set``, namedtuple or dict UDT) and in every sink.
Sinks have their own copy of the canonical JSON rules (``sinks.values``),
which the import contracts keep separate from transforms; a unit test checks
that both give the same text.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import uuid
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any

from pipeline_runtime.cql.types import CqlType, Kind

_TEXT = frozenset({Kind.TEXT, Kind.ASCII})


def canonical_text(value: Any, cql_type: CqlType) -> str:
    return "".join(_encode(_json(value, cql_type)))


def _json(value: Any, t: CqlType) -> Any:
    if value is None:
        return None
    kind = t.kind
    if kind in _TEXT or kind is Kind.INET:
        return str(value)
    if kind in (Kind.BIGINT, Kind.INT, Kind.SMALLINT, Kind.TINYINT, Kind.VARINT, Kind.COUNTER):
        return int(value)
    if kind is Kind.BOOLEAN:
        return bool(value)
    if kind in (Kind.FLOAT, Kind.DOUBLE):
        number = float(value)
        if math.isnan(number):
            return "NaN"
        return number if not math.isinf(number) else ("Infinity" if number > 0 else "-Infinity")
    if kind is Kind.DECIMAL:
        exact = value if isinstance(value, Decimal) else Decimal(str(value))
        return exact if exact.is_finite() else str(exact)
    if kind is Kind.BLOB:
        return "0x" + bytes(value).hex()
    if kind in (Kind.UUID, Kind.TIMEUUID):
        return str(uuid.UUID(str(value)))
    if kind is Kind.TIMESTAMP:
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return f"{value:%Y-%m-%dT%H:%M:%S}.{value.microsecond // 1000:03d}Z"
    if kind is Kind.DATE:
        return value.isoformat() if isinstance(value, dt.date) else str(value)
    if kind is Kind.TIME:
        if isinstance(value, dt.time):
            return ((value.hour * 60 + value.minute) * 60 + value.second) * 1_000_000_000 + value.microsecond * 1000
        return int(value) if isinstance(value, int) else int(value.nanosecond_time)
    if kind is Kind.DURATION:
        return {"months": int(value.months), "days": int(value.days), "nanoseconds": int(value.nanoseconds)}
    if kind in (Kind.LIST, Kind.VECTOR):
        return [_json(v, t.args[0]) for v in value]
    if kind is Kind.SET:
        return [v for _, v in sorted((canonical_text(v, t.args[0]), _json(v, t.args[0])) for v in value)]
    if kind is Kind.MAP:
        items = value.items() if isinstance(value, Mapping) or hasattr(value, "items") else value
        pairs = sorted(((canonical_text(k, t.args[0]), _json(k, t.args[0]), _json(v, t.args[1])) for k, v in items))
        if t.args[0].kind in _TEXT:
            return {k: v for _, k, v in pairs}
        return [[k, v] for _, k, v in pairs]
    if kind is Kind.TUPLE:
        return [_json(v, a) for v, a in zip(value, t.args, strict=False)]
    if kind is Kind.UDT:
        return {n: _json(_field(value, n), a) for n, a in zip(t.field_names, t.args, strict=True)}
    return str(value)


def _field(value: Any, name: str) -> Any:
    return value.get(name) if isinstance(value, Mapping) else getattr(value, name, None)


def _encode(value: Any) -> Iterator[str]:
    if isinstance(value, Decimal):
        yield str(value)
    elif isinstance(value, dict):
        yield "{"
        for index, (key, item) in enumerate(value.items()):
            if index:
                yield ","
            yield json.dumps(str(key), ensure_ascii=False) + ":"
            yield from _encode(item)
        yield "}"
    elif isinstance(value, list):
        yield "["
        for index, item in enumerate(value):
            if index:
                yield ","
            yield from _encode(item)
        yield "]"
    else:
        yield json.dumps(value, ensure_ascii=False)
