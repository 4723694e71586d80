"""Cell values -> the Python values cassandra-driver returns for the same column.

Sinks and tests compare decoded values with what ``SELECT`` returns through
cassandra-driver, so every value goes through the driver's own deserializer
(``cassandra.cqltypes``, compiled with Cython in the driver's wheels) except
the few natives where a direct ``int.from_bytes``/``struct`` call gives the
very same object faster. Serialized forms inside a cell are the native
protocol's (v3+: int32 lengths in frozen collections, tuples and UDTs).

Where the driver's value loses what Cassandra holds, the decoder differs from
it, at every nesting depth (``pipeline_runtime.cql.values``, docs/commitlog.md):
timestamps outside ``datetime``'s range, zero-length values (``EMPTY``, not
None), and sets whose elements Python's ``==`` merges but Cassandra keeps
apart (``-0.0`` and ``0.0`` in a ``set<double>``).
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from cassandra import cqltypes, util

from pipeline_runtime.cql.types import CqlType, Kind
from pipeline_runtime.cql.values import EMPTY, timestamp_from_millis
from pipeline_runtime.source.errors import DecodeError

#: Native protocol version whose value encoding matches Cassandra's internal one.
PROTOCOL_VERSION = 4

ValueDecoder = Callable[[bytes], Any]

_NATIVE_DRIVER_TYPES: dict[Kind, type[Any]] = {
    Kind.ASCII: cqltypes.AsciiType,
    Kind.BIGINT: cqltypes.LongType,
    Kind.BLOB: cqltypes.BytesType,
    Kind.BOOLEAN: cqltypes.BooleanType,
    Kind.COUNTER: cqltypes.CounterColumnType,
    Kind.DATE: cqltypes.SimpleDateType,
    Kind.DECIMAL: cqltypes.DecimalType,
    Kind.DOUBLE: cqltypes.DoubleType,
    Kind.DURATION: cqltypes.DurationType,
    Kind.FLOAT: cqltypes.FloatType,
    Kind.INET: cqltypes.InetAddressType,
    Kind.INT: cqltypes.Int32Type,
    Kind.SMALLINT: cqltypes.ShortType,
    Kind.TEXT: cqltypes.UTF8Type,
    Kind.TIME: cqltypes.TimeType,
    Kind.TIMESTAMP: cqltypes.DateType,
    Kind.TIMEUUID: cqltypes.TimeUUIDType,
    Kind.TINYINT: cqltypes.ByteType,
    Kind.UUID: cqltypes.UUIDType,
    Kind.VARINT: cqltypes.IntegerType,
    Kind.EMPTY: cqltypes.EmptyType if hasattr(cqltypes, "EmptyType") else cqltypes.BytesType,
}


class _ExactTimestampType(cqltypes.DateType):  # type: ignore[misc]
    """``timestamp`` decoded exactly, over its whole 64-bit range (inside collections, tuples, UDTs too)."""

    @staticmethod
    def deserialize(byts: bytes, protocol_version: int) -> Any:
        return _timestamp(byts)


def _sorted_set(items: list[Any]) -> Any:
    result = util.SortedSet()
    result._items = items
    return result


class _ExactSetType(cqltypes.SetType):  # type: ignore[misc]
    """A frozen set with every element Cassandra keeps, in Cassandra's order.

    The driver's ``SortedSet`` drops an element equal (``==``) to one it holds, so
    ``{-0.0, 0.0}`` (two elements for Cassandra, which orders doubles by
    ``Double.compare``) came back with one. The elements arrive distinct and
    sorted; they are kept as they are.
    """

    adapter = staticmethod(_sorted_set)


def _empty_aware(cls: type[Any]) -> type[Any]:
    """``cls`` returning ``EMPTY`` for a zero-length value, where the driver returns None."""
    if cls.empty_binary_ok:
        return cls
    return type(cls.__name__, (cls,), {"support_empty_values": True})


_DRIVER_TYPES: dict[Kind, type[Any]] = {
    kind: _empty_aware(_ExactTimestampType if kind is Kind.TIMESTAMP else cls)
    for kind, cls in _NATIVE_DRIVER_TYPES.items()
}

_DOUBLE = struct.Struct(">d")
_FLOAT = struct.Struct(">f")


def _signed(data: bytes) -> int:
    return int.from_bytes(data, "big", signed=True)


def _text(data: bytes) -> str:
    return data.decode("utf-8")


def _ascii(data: bytes) -> str:
    return data.decode("ascii")


def _boolean(data: bytes) -> bool:
    return data[0] != 0


def _double(data: bytes) -> float:
    value: float = _DOUBLE.unpack(data)[0]
    return value


def _float(data: bytes) -> float:
    value: float = _FLOAT.unpack(data)[0]
    return value


def _uuid(data: bytes) -> uuid.UUID:
    return uuid.UUID(bytes=data)


def _blob(data: bytes) -> bytes:
    return bytes(data)


def _timestamp(data: bytes) -> Any:
    if len(data) != 8:
        raise DecodeError(f"a timestamp value has 8 bytes, not {len(data)}")
    return timestamp_from_millis(int.from_bytes(data, "big", signed=True))


#: Natives whose direct decoding is the driver's result, object for object.
_FAST: dict[Kind, ValueDecoder] = {
    Kind.INT: _signed,
    Kind.BIGINT: _signed,
    Kind.SMALLINT: _signed,
    Kind.TINYINT: _signed,
    Kind.VARINT: _signed,
    Kind.TEXT: _text,
    Kind.ASCII: _ascii,
    Kind.BOOLEAN: _boolean,
    Kind.DOUBLE: _double,
    Kind.FLOAT: _float,
    Kind.UUID: _uuid,
    Kind.TIMEUUID: _uuid,
    Kind.BLOB: _blob,
    Kind.TIMESTAMP: _timestamp,
}


def driver_type(cql_type: CqlType, keyspace: str) -> type[Any]:
    """The cassandra-driver type class for ``cql_type`` (frozen form for nested types)."""
    kind = cql_type.kind
    if kind in _DRIVER_TYPES:
        return _DRIVER_TYPES[kind]
    args = [driver_type(a, keyspace) for a in cql_type.args]
    if kind is Kind.LIST:
        return cqltypes.ListType.apply_parameters(args, None)  # type: ignore[no-any-return]
    if kind is Kind.SET:
        return _ExactSetType.apply_parameters(args, None)  # type: ignore[no-any-return]
    if kind is Kind.MAP:
        return cqltypes.MapType.apply_parameters(args, None)  # type: ignore[no-any-return]
    if kind is Kind.TUPLE:
        return cqltypes.TupleType.apply_parameters(args, None)  # type: ignore[no-any-return]
    if kind is Kind.UDT:
        return cqltypes.UserType.make_udt_class(  # type: ignore[no-any-return]
            keyspace, cql_type.udt_name, tuple(cql_type.field_names), tuple(args)
        )
    if kind is Kind.VECTOR:
        return cqltypes.VectorType.apply_parameters([args[0], cql_type.dimension], None)  # type: ignore[no-any-return]
    bytes_type: type[Any] = cqltypes.BytesType
    return bytes_type  # custom types: the driver hands back raw bytes too (b"" when empty)


def value_decoder(cql_type: CqlType, keyspace: str) -> ValueDecoder:
    """A function from a non-empty serialized value to the driver's Python value."""
    fast = _FAST.get(cql_type.kind)
    if fast is not None:
        return fast
    cls = driver_type(cql_type, keyspace)
    return partial(_through_driver, cls.deserialize, cql_type)


def empty_value(cql_type: CqlType, keyspace: str) -> Any:
    """A zero-length value of this type (e.g. ``blobAsInt(0x)``): ``EMPTY``, or ``''``/``b''`` for text and blob."""
    value = driver_type(cql_type, keyspace).from_binary(b"", PROTOCOL_VERSION)
    return EMPTY if value is None else value


def _through_driver(deserialize: Callable[[bytes, int], Any], cql_type: CqlType, data: bytes) -> Any:
    try:
        return deserialize(data, PROTOCOL_VERSION)
    # OSError: the driver's inet decoder raises it ("packed IP wrong length") for a damaged value.
    except (ValueError, TypeError, struct.error, IndexError, UnicodeDecodeError, OverflowError, OSError) as exc:
        raise DecodeError(f"cannot decode a {cql_type.cql()} value of {len(data)} bytes: {exc}") from exc


@dataclass(frozen=True, slots=True)
class ComplexCodec:
    """How to read the cells of a multi-cell column.

    ``path`` turns a cell path into the element's identity (a list's timeuuid,
    a set's element, a map's key); ``value`` decodes the cell value (None for
    sets, whose cells carry no value). A non-frozen UDT's path is a 2-byte
    field index: ``field_names``/``field_values`` are indexed by it.
    """

    path: ValueDecoder | None
    value: ValueDecoder | None
    field_names: tuple[str, ...] = ()
    field_values: tuple[ValueDecoder, ...] = ()
    #: What zero-length paths and values decode to (the driver's answer for each type).
    path_empty: Any = None
    value_empty: Any = None
    field_empties: tuple[Any, ...] = ()


def complex_codec(cql_type: CqlType, keyspace: str) -> ComplexCodec:
    """Path and value decoders for a non-frozen list, set, map or UDT."""
    kind = cql_type.kind
    args = cql_type.args
    if kind is Kind.LIST:
        return ComplexCodec(_uuid, value_decoder(args[0], keyspace), value_empty=empty_value(args[0], keyspace))
    if kind is Kind.SET:
        return ComplexCodec(value_decoder(args[0], keyspace), None, path_empty=empty_value(args[0], keyspace))
    if kind is Kind.MAP:
        return ComplexCodec(
            value_decoder(args[0], keyspace),
            value_decoder(args[1], keyspace),
            path_empty=empty_value(args[0], keyspace),
            value_empty=empty_value(args[1], keyspace),
        )
    if kind is Kind.UDT:
        decoders = tuple(value_decoder(t, keyspace) for t in args)
        empties = tuple(empty_value(t, keyspace) for t in args)
        return ComplexCodec(None, None, cql_type.field_names, decoders, field_empties=empties)
    raise DecodeError(f"{cql_type.cql()} is not a multi-cell type")
