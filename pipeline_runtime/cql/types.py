"""CQL data types as a small tree, parsed from ``system_schema`` type strings.

The source uses it to decode cell values, the sinks to map columns to their own
types. It knows nothing of bytes or SQL: only what a CQL type *is*.

``system_schema.columns.type`` spells types in CQL syntax: ``int``,
``frozen<map<text, list<int>>>``, ``vector<float, 3>``, ``tuple<int, text>``, a
user type's bare name, or a quoted Java class name for custom types.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from pipeline_runtime.errors import SchemaError


class Kind(StrEnum):
    """What a type is; natives are named by their CQL name."""

    ASCII = "ascii"
    BIGINT = "bigint"
    BLOB = "blob"
    BOOLEAN = "boolean"
    COUNTER = "counter"
    DATE = "date"
    DECIMAL = "decimal"
    DOUBLE = "double"
    DURATION = "duration"
    FLOAT = "float"
    INET = "inet"
    INT = "int"
    SMALLINT = "smallint"
    TEXT = "text"
    TIME = "time"
    TIMESTAMP = "timestamp"
    TIMEUUID = "timeuuid"
    TINYINT = "tinyint"
    UUID = "uuid"
    VARINT = "varint"
    EMPTY = "empty"
    LIST = "list"
    SET = "set"
    MAP = "map"
    TUPLE = "tuple"
    UDT = "udt"
    VECTOR = "vector"
    CUSTOM = "custom"


NATIVE_KINDS: frozenset[Kind] = frozenset(
    k for k in Kind if k not in {Kind.LIST, Kind.SET, Kind.MAP, Kind.TUPLE, Kind.UDT, Kind.VECTOR, Kind.CUSTOM}
)
COLLECTION_KINDS: frozenset[Kind] = frozenset({Kind.LIST, Kind.SET, Kind.MAP})

#: Serialized width in bytes of types Cassandra writes without a length prefix.
#: Every other type is written as an unsigned vint length followed by the bytes.
FIXED_WIDTH: Mapping[Kind, int] = {
    Kind.BOOLEAN: 1,
    Kind.INT: 4,
    Kind.FLOAT: 4,
    Kind.BIGINT: 8,
    Kind.DOUBLE: 8,
    Kind.TIMESTAMP: 8,
    Kind.UUID: 16,
    Kind.TIMEUUID: 16,
    Kind.EMPTY: 0,
}

_ALIASES = {"varchar": Kind.TEXT}


@dataclass(frozen=True, slots=True)
class CqlType:
    """One CQL type.

    ``args`` are the element types: one for list/set/vector, key and value for
    map, the components of a tuple, the field types of a UDT (in field order).
    ``frozen`` matters only for collections and UDTs: a non-frozen one is
    multi-cell, stored as one cell per element.
    """

    kind: Kind
    args: tuple[CqlType, ...] = ()
    frozen: bool = False
    #: UDT only: keyspace-local type name and field names, parallel to ``args``.
    udt_name: str | None = None
    field_names: tuple[str, ...] = ()
    #: vector only: number of elements.
    dimension: int | None = None
    #: custom only: the Java class name.
    custom_class: str | None = None

    @property
    def multi_cell(self) -> bool:
        """True when each element is its own cell (non-frozen collection or UDT)."""
        return not self.frozen and (self.kind in COLLECTION_KINDS or self.kind is Kind.UDT)

    @property
    def fixed_width(self) -> int | None:
        """Serialized width when Cassandra writes no length prefix, else None."""
        if self.kind is Kind.VECTOR:
            (element,) = self.args
            width = element.fixed_width
            return None if width is None or self.dimension is None else width * self.dimension
        return FIXED_WIDTH.get(self.kind)

    def freeze(self) -> CqlType:
        """The same type, frozen (as it is when nested inside another type)."""
        if self.frozen or self.kind not in COLLECTION_KINDS | {Kind.UDT}:
            return self
        return CqlType(self.kind, self.args, True, self.udt_name, self.field_names, self.dimension)

    def cql(self) -> str:
        """The type in CQL syntax."""
        if self.kind in NATIVE_KINDS:
            return self.kind.value
        if self.kind is Kind.CUSTOM:
            return f"'{self.custom_class}'"
        if self.kind is Kind.UDT:
            inner = str(self.udt_name)
        elif self.kind is Kind.VECTOR:
            inner = f"vector<{self.args[0].cql()}, {self.dimension}>"
        else:
            inner = f"{self.kind.value}<{', '.join(a.cql() for a in self.args)}>"
        return f"frozen<{inner}>" if self.frozen and self.kind is not Kind.VECTOR else inner


@dataclass(frozen=True, slots=True)
class UserType:
    """A user-defined type as listed in ``system_schema.types``."""

    keyspace: str
    name: str
    field_names: tuple[str, ...]
    field_types: tuple[str, ...]


@dataclass
class _Parser:
    text: str
    keyspace: str
    user_types: Mapping[tuple[str, str], UserType]
    pos: int = 0
    depth: int = field(default=0)

    def parse(self) -> CqlType:
        result = self._type()
        self._skip_space()
        if self.pos != len(self.text):
            raise self._error("unexpected text after the type")
        return result

    def _error(self, why: str) -> SchemaError:
        return SchemaError(f"cannot parse CQL type {self.text!r} at {self.pos}: {why}")

    def _skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def _word(self) -> str:
        self._skip_space()
        if self.pos < len(self.text) and self.text[self.pos] == "'":
            end = self.text.find("'", self.pos + 1)
            if end < 0:
                raise self._error("unterminated quoted class name")
            word = self.text[self.pos : end + 1]
            self.pos = end + 1
            return word
        if self.pos < len(self.text) and self.text[self.pos] == '"':
            end = self.text.find('"', self.pos + 1)
            if end < 0:
                raise self._error("unterminated quoted name")
            word = self.text[self.pos + 1 : end]
            self.pos = end + 1
            return word
        start = self.pos
        while self.pos < len(self.text) and (self.text[self.pos].isalnum() or self.text[self.pos] in "_."):
            self.pos += 1
        if start == self.pos:
            raise self._error("expected a type name")
        return self.text[start : self.pos]

    def _expect(self, char: str) -> None:
        self._skip_space()
        if self.pos >= len(self.text) or self.text[self.pos] != char:
            raise self._error(f"expected {char!r}")
        self.pos += 1

    def _peek(self, char: str) -> bool:
        self._skip_space()
        return self.pos < len(self.text) and self.text[self.pos] == char

    def _args(self) -> list[CqlType]:
        self._expect("<")
        args = [self._type()]
        while self._peek(","):
            self.pos += 1
            args.append(self._type())
        self._expect(">")
        return args

    def _type(self) -> CqlType:
        self.depth += 1
        if self.depth > 64:
            raise self._error("type nested too deeply")
        try:
            return self._type_inner()
        finally:
            self.depth -= 1

    def _type_inner(self) -> CqlType:
        word = self._word()
        lower = word.lower()
        if word.startswith("'"):
            return CqlType(Kind.CUSTOM, custom_class=word.strip("'"))
        if lower == "frozen":
            (inner,) = self._args()
            return inner.freeze()
        if lower in ("list", "set"):
            (element,) = self._args()
            return CqlType(Kind(lower), (element.freeze(),))
        if lower == "map":
            key, value = self._args()
            return CqlType(Kind.MAP, (key.freeze(), value.freeze()))
        if lower == "tuple":
            return CqlType(Kind.TUPLE, tuple(a.freeze() for a in self._args()), frozen=True)
        if lower == "vector":
            self._expect("<")
            element = self._type()
            self._expect(",")
            self._skip_space()
            start = self.pos
            while self.pos < len(self.text) and self.text[self.pos].isdigit():
                self.pos += 1
            if start == self.pos:
                raise self._error("expected a vector dimension")
            dimension = int(self.text[start : self.pos])
            self._expect(">")
            return CqlType(Kind.VECTOR, (element.freeze(),), frozen=True, dimension=dimension)
        if lower in _ALIASES:
            return CqlType(_ALIASES[lower])
        try:
            kind = Kind(lower)
        except ValueError:
            return self._user_type(word)
        if kind not in NATIVE_KINDS:
            raise self._error(f"{word} needs type arguments")
        return CqlType(kind)

    def _user_type(self, name: str) -> CqlType:
        keyspace, _, local = name.rpartition(".")
        udt = self.user_types.get((keyspace or self.keyspace, local))
        if udt is None:
            raise self._error(f"unknown user type {name} in keyspace {keyspace or self.keyspace}")
        fields = tuple(
            _Parser(t, udt.keyspace, self.user_types, depth=self.depth).parse().freeze() for t in udt.field_types
        )
        return CqlType(Kind.UDT, fields, udt_name=udt.name, field_names=udt.field_names)


def parse_type(text: str, keyspace: str = "", user_types: Mapping[tuple[str, str], UserType] | None = None) -> CqlType:
    """Parse a ``system_schema`` type string; user types are looked up by (keyspace, name)."""
    return _Parser(text, keyspace, user_types or {}).parse()
