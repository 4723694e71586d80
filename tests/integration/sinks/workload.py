"""A seeded random workload of change events for one table, and a normaliser for comparing rows.

The table has a composite clustering key with a DESC column, a static
column, simple columns of several types, a set, a list, a map and a
non-frozen UDT, so every kind of cell and every delete kind is exercised.
"""

from __future__ import annotations

import random
import time
import uuid
from decimal import Decimal
from typing import Any

from pipeline_runtime.cql.canonical import dumps, loads, to_json
from pipeline_runtime.cql.schema import Column, ColumnKind, TableSchema
from pipeline_runtime.cql.types import CqlType, Kind, UserType, parse_type
from pipeline_runtime.events import (
    Bound,
    Cell,
    ChangeEvent,
    CollectionChange,
    Deletion,
    ElementCell,
    Liveness,
    Op,
    Position,
    SourcePosition,
)

USER_TYPES = {("ks", "address"): UserType("ks", "address", ("street", "zip"), ("text", "int"))}


def column(name: str, cql: str, kind: ColumnKind = ColumnKind.REGULAR, position: int = -1, rev: bool = False) -> Column:
    return Column(name, parse_type(cql, "ks", USER_TYPES), kind, position, rev)


def contract_schema(table: str = "t") -> TableSchema:
    return TableSchema(
        "ks",
        table,
        uuid.uuid5(uuid.NAMESPACE_DNS, table),
        (
            column("pk", "text", ColumnKind.PARTITION_KEY, 0),
            column("ck", "int", ColumnKind.CLUSTERING, 0),
            column("ck2", "text", ColumnKind.CLUSTERING, 1, rev=True),
            column("s", "text", ColumnKind.STATIC),
            column("a", "int"),
            column("b", "text"),
            column("d", "decimal"),
            column("tags", "set<text>"),
            column("items", "list<int>"),
            column("attrs", "map<text, int>"),
            column("home", "address"),
        ),
    )


def plain_schema(table: str = "plain") -> TableSchema:
    """A table the sinks' fast paths take: no static and no multi-cell columns."""
    return TableSchema(
        "ks",
        table,
        uuid.uuid5(uuid.NAMESPACE_DNS, table),
        (
            column("pk", "text", ColumnKind.PARTITION_KEY, 0),
            column("ck", "int", ColumnKind.CLUSTERING, 0),
            column("ck2", "text", ColumnKind.CLUSTERING, 1, rev=True),
            column("a", "int"),
            column("b", "text"),
            column("d", "decimal"),
        ),
    )


class Workload:
    """Generates events with unique, shuffled writetimes; TTLs are far past or far future."""

    def __init__(self, schema: TableSchema, seed: int, node: str = "node-1") -> None:
        self.schema = schema
        self.rng = random.Random(seed)
        self.node = node
        self.now = int(time.time())
        self.offset = 0
        self.clock = 1_700_000_000_000_000
        #: How many partitions keys are drawn from; more means fewer repeats of a row in one batch.
        self.partitions = 3

    def _ts(self) -> int:
        # Distinct writetimes, not in generation order: arrival order must not matter.
        self.clock += 1000
        return self.clock + self.rng.randrange(-5000, 5000) * 10 + self.rng.randrange(10)

    def _source(self) -> SourcePosition:
        self.offset += 100
        return SourcePosition(self.node, Position(1, self.offset))

    def _exp(self) -> tuple[int | None, int | None]:
        roll = self.rng.random()
        if roll < 0.15:
            return 60, self.now - 1000  # already expired
        if roll < 0.3:
            return 86400, self.now + 86400
        return None, None

    def _key(self) -> tuple[dict[str, Any], dict[str, Any]]:
        pk = {"pk": f"p{self.rng.randrange(self.partitions)}"}
        ck = {"ck": self.rng.randrange(4), "ck2": self.rng.choice(["a", "b", "c"])}
        return pk, ck

    def events(self, count: int, *, plain: bool = False) -> list[ChangeEvent]:
        """Random events; ``plain`` ones fit ``plain_schema`` and are mostly upserts (the sinks' fast paths)."""
        if plain:
            ops = [self._upsert] * 60 + [self._null_cell] * 8 + [self._delete_row]
        else:
            ops = [self._upsert] * 6 + [self._collection] * 3 + [self._static] * 2
            ops += [self._delete_row, self._delete_range, self._delete_partition, self._null_cell]
        out = []
        for _ in range(count):
            out.append(self.rng.choice(ops)())
        return out

    def _cell(self, value: Any) -> Cell:
        ttl, exp = self._exp()
        return Cell(value, self._ts(), ttl, exp)

    def _upsert(self) -> ChangeEvent:
        pk, ck = self._key()
        cells: dict[str, Any] = {}
        for name, make in (
            ("a", lambda: self.rng.randrange(-1000, 1000)),
            ("b", lambda: self.rng.choice(["x", "yé", "z" * 20])),
            ("d", lambda: Decimal(f"{self.rng.randrange(10**6)}.{self.rng.randrange(100):02d}")),
        ):
            if self.rng.random() < 0.6:
                cells[name] = self._cell(make())
        liveness = None
        if self.rng.random() < 0.5:
            ttl, exp = self._exp()
            liveness = Liveness(self._ts(), ttl, exp)
        return ChangeEvent(Op.UPSERT, "ks", self.schema.name, pk, self._source(), ck, cells, liveness)

    def _null_cell(self) -> ChangeEvent:
        pk, ck = self._key()
        name = self.rng.choice(["a", "b", "d"])
        cell = Cell(None, self._ts(), None, self.now - 5, deleted=True)
        return ChangeEvent(Op.UPSERT, "ks", self.schema.name, pk, self._source(), ck, {name: cell})

    def _collection(self) -> ChangeEvent:
        pk, ck = self._key()
        name = self.rng.choice(["tags", "items", "attrs", "home"])
        ts = self._ts()
        overwrite = self.rng.random() < 0.3
        deletion = Deletion(ts - 1, self.now) if overwrite else None
        elements = []
        for _ in range(self.rng.randrange(1, 4)):
            remove = not overwrite and self.rng.random() < 0.25
            ttl, exp = self._exp()
            if name == "tags":
                path, value = self.rng.choice(["red", "green", "blue", "ünï"]), None
            elif name == "items":
                path, value = uuid.uuid1(clock_seq=self.rng.randrange(2**14)), self.rng.randrange(100)
            elif name == "attrs":
                path, value = self.rng.choice(["k1", "k2", "k3"]), self.rng.randrange(100)
            else:
                path = self.rng.choice(["street", "zip"])
                value = "Main St" if path == "street" else self.rng.randrange(99999)
            if remove:
                elements.append(ElementCell(path, None, ts, None, self.now, deleted=True))
            else:
                elements.append(ElementCell(path, value, ts, ttl, exp))
        unique = {str(e.path): e for e in elements}  # one cell per element, as in a real mutation
        change = CollectionChange(deletion, tuple(unique.values()))
        return ChangeEvent(Op.UPSERT, "ks", self.schema.name, pk, self._source(), ck, {name: change})

    def _static(self) -> ChangeEvent:
        pk, _ = self._key()
        value = self.rng.choice(["s1", "s2", None])
        cell = self._cell(value) if value else Cell(None, self._ts(), None, self.now, deleted=True)
        return ChangeEvent(Op.UPSERT, "ks", self.schema.name, pk, self._source(), {}, {"s": cell}, static=True)

    def _deletion(self) -> Deletion:
        return Deletion(self._ts(), self.now)

    def _delete_row(self) -> ChangeEvent:
        pk, ck = self._key()
        return ChangeEvent(Op.DELETE_ROW, "ks", self.schema.name, pk, self._source(), ck, deletion=self._deletion())

    def _delete_range(self) -> ChangeEvent:
        pk, _ = self._key()
        low = self.rng.randrange(4)
        start = Bound((low,), self.rng.random() < 0.5)
        end: Bound | None = Bound((low + self.rng.randrange(2),), self.rng.random() < 0.5)
        if self.rng.random() < 0.3:
            start = Bound((low, self.rng.choice(["a", "b", "c"])), True)  # two-column prefix on a DESC column
            end = Bound((low,), True)
        if self.rng.random() < 0.2:
            end = None
        return ChangeEvent(
            Op.DELETE_RANGE,
            "ks",
            self.schema.name,
            pk,
            self._source(),
            deletion=self._deletion(),
            range_start=start,
            range_end=end,
        )

    def _delete_partition(self) -> ChangeEvent:
        pk, _ = self._key()
        return ChangeEvent(Op.DELETE_PARTITION, "ks", self.schema.name, pk, self._source(), deletion=self._deletion())


JSON_KINDS = frozenset({Kind.LIST, Kind.SET, Kind.MAP, Kind.TUPLE, Kind.UDT, Kind.DURATION, Kind.CUSTOM})


def stored_as_json(cql_type: CqlType) -> bool:
    if cql_type.kind is Kind.VECTOR:
        return cql_type.args[0].kind not in (Kind.FLOAT, Kind.DOUBLE, Kind.INT, Kind.BIGINT)
    return cql_type.kind in JSON_KINDS


def canonical(value: Any, cql_type: CqlType) -> Any:
    """A driver value in the canonical, comparable form."""
    return loads(dumps(to_json(value, cql_type)))


def from_sink(value: Any, cql_type: CqlType) -> Any:
    """A value read from a sink view in the same canonical form."""
    if value is None:
        return None
    if stored_as_json(cql_type) and isinstance(value, str):
        return loads(value)
    if cql_type.kind is Kind.VECTOR and value == []:
        return None
    return canonical(value, cql_type)


def expected_rows(schema: TableSchema, rows: dict[tuple[Any, ...], dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        dumps(canonical_key(schema, r)): {c.name: canonical(r[c.name], c.type) for c in schema.columns}
        for r in rows.values()
    }


def actual_rows(schema: TableSchema, rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out = {}
    for row in rows:
        out[dumps(canonical_key(schema, row))] = {c.name: from_sink(row[c.name], c.type) for c in schema.columns}
    return out


def canonical_key(schema: TableSchema, row: dict[str, Any]) -> list[Any]:
    return [canonical(row[c.name], c.type) for c in schema.primary_key]
