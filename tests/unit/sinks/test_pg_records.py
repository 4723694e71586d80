"""The fast COPY-record path gives exactly the records of the general path."""

from __future__ import annotations

import functools
import random
import uuid

import pytest

from pipeline_runtime.cql.schema import Column, ColumnKind, TableSchema
from pipeline_runtime.cql.types import parse_type
from pipeline_runtime.cql.values import EMPTY
from pipeline_runtime.errors import ValueEncodingError
from pipeline_runtime.events import (
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
from pipeline_runtime.native import native_module
from pipeline_runtime.sinks.changes import Layout, Shaper, coalesce
from pipeline_runtime.sinks.postgres.records import RecordBuilder, collection_fields, stored_fields
from pipeline_runtime.sinks.postgres.typemap import pg_encoder

SCHEMA = TableSchema(
    "ks",
    "t",
    uuid.uuid4(),
    (
        Column("id", parse_type("int"), ColumnKind.PARTITION_KEY, 0),
        Column("a", parse_type("text"), ColumnKind.REGULAR),
        Column("b", parse_type("decimal"), ColumnKind.REGULAR),
        Column("m", parse_type("map<text, int>"), ColumnKind.REGULAR),
    ),
)
SRC = SourcePosition("n", Position(1, 1))


def upsert(i: int, **cells: Cell | CollectionChange) -> ChangeEvent:
    return ChangeEvent(Op.UPSERT, "ks", "t", {"id": i}, SRC, {}, dict(cells), Liveness(5, 10, 99))


def test_fast_path_equals_general_path() -> None:
    events = [
        upsert(1, a=Cell("x", 3), b=Cell(None, 4, deleted=True)),
        upsert(2, a=Cell("y", 3, ttl=60, local_deletion_time=1234)),
        upsert(3),
    ]
    builder = RecordBuilder(Layout(SCHEMA), pg_encoder)
    fast = builder.fast(events)
    rows, _ = coalesce(Shaper(SCHEMA, pg_encoder).shape(e) for e in events)
    assert fast == [builder.row(r) for r in rows]
    assert fast is not None and fast[1][1:4] == ("y", 3, 1234)


def test_fast_path_stores_collection_changes_as_the_general_path_does() -> None:
    events = [
        # elements out of key order, one key twice (the newer state wins), a tombstone, an expiring one
        upsert(
            1,
            a=Cell("x", 3),
            m=CollectionChange(
                None,
                (
                    ElementCell("k2", 2, 7),
                    ElementCell("k1", 1, 7, ttl=60, local_deletion_time=500),
                    ElementCell("k2", 3, 9),
                    ElementCell("gone", None, 8, deleted=True),
                ),
            ),
        ),
        upsert(2, m=CollectionChange(Deletion(6, 1), (ElementCell("only", 5, 7),))),  # an overwrite
        upsert(3, m=CollectionChange(Deletion(6, 1), ())),  # set to null
        upsert(4, m=CollectionChange(None, ())),
    ]
    builder = RecordBuilder(Layout(SCHEMA), pg_encoder)
    fast = builder.fast(events)
    rows, _ = coalesce(Shaper(SCHEMA, pg_encoder).shape(e) for e in events)
    assert fast is not None and fast == [builder.row(r) for r in rows]
    assert fast[0][7:9] == ('{"\\"k2\\"":["3",9,null],"\\"k1\\"":["1",7,500],"\\"gone\\"":[null,8,null]}', None)
    assert fast[2][7:9] == (None, 6)


def test_fast_path_declines_repeats_and_a_cell_where_a_collection_belongs() -> None:
    builder = RecordBuilder(Layout(SCHEMA), pg_encoder)
    assert builder.fast([upsert(1, a=Cell("x", 1)), upsert(1, a=Cell("y", 2))]) is None
    assert builder.fast([upsert(1, m=Cell({"a": 1}, 1))]) is None


def test_an_element_postgresql_cannot_hold_is_left_to_the_general_path() -> None:
    """It may be overwritten later in the batch (the general path merges first), else it is refused by name."""
    schema = TableSchema(
        "ks",
        "t",
        uuid.uuid4(),
        (
            Column("id", parse_type("int"), ColumnKind.PARTITION_KEY, 0),
            Column("m", parse_type("map<text, text>"), ColumnKind.REGULAR),
        ),
    )
    builder = RecordBuilder(Layout(schema), pg_encoder)

    def change(value: str, ts: int) -> ChangeEvent:
        return upsert(1, m=CollectionChange(None, (ElementCell("k", value, ts),)))

    bad, fixed = change("a\x00", 7), change("b", 9)
    assert builder.fast([bad]) is None
    assert builder.copy_data([bad]) is None
    rows, _ = coalesce(Shaper(schema, pg_encoder).shape(e) for e in [bad, fixed])
    assert builder.row(rows[0])[1] == '{"\\"k\\"":["\\"b\\"",9,null]}'
    rows, _ = coalesce(Shaper(schema, pg_encoder).shape(e) for e in [bad])
    with pytest.raises(ValueEncodingError, match=r"column m .*U\+0000"):
        builder.row(rows[0])


_TEXTS = ["a", "", 'q"uote', "back\\slash", "tab\tnew\nline\r", "\x01\x1f\x7f", "é ü 中文 😀", "\u2028", "nul\x00"]


def _random_change(rng: random.Random, key_kind: str, value_kind: str | None) -> CollectionChange:
    def scalar(kind: str) -> object:
        if kind == "int":
            return rng.choice([0, -1, 7, 2**31 - 1, -(2**31)])
        if kind == "bigint":
            return rng.choice([2**63 - 1, -(2**63), 12345678901234])
        return rng.choice([*_TEXTS, EMPTY, f"t{rng.randint(0, 50)}"])

    elements = []
    for _ in range(rng.randint(0, 5)):
        deleted = rng.random() < 0.2
        ttl = rng.choice([None, None, 60])
        value = None if value_kind is None or deleted else scalar(value_kind)
        local = rng.randint(1, 2**31) if deleted or ttl is not None else None
        elements.append(ElementCell(scalar(key_kind), value, rng.randint(-5, 10**16), ttl, local, deleted))
    deletion = Deletion(rng.randint(1, 10**16), 5) if rng.random() < 0.3 else None
    return CollectionChange(deletion, tuple(elements))


@pytest.mark.parametrize(
    "cql", ["set<text>", "set<ascii>", "set<int>", "set<bigint>", "map<text, int>", "map<int, text>", "map<text, text>"]
)
def test_compiled_element_fields_store_what_the_reference_stores(cql: str) -> None:
    if native_module() is None:
        pytest.skip("headrace_native is not built (cargo): `make dev` builds it")
    column = Column("c", parse_type(cql), ColumnKind.REGULAR)
    where = ("ks.t", cql)
    compiled = stored_fields(column, where)
    assert not isinstance(compiled, functools.partial)  # the compiled one, not the reference
    kinds = [a.kind.value for a in column.type.args]
    key_kind, value_kind = kinds[0], (kinds[1] if len(kinds) > 1 else None)
    referred = []

    def reference(change: CollectionChange) -> object:
        referred.append(change)
        return collection_fields(column, where, change)

    scalars = {"text": "text", "ascii": "text", "int": "integer", "bigint": "integer"}
    classes = {"collection_change": CollectionChange, "element_cell": ElementCell, "deletion": Deletion}
    counted = native_module().ElementFields(  # type: ignore[union-attr]
        classes, scalars[key_kind], scalars[value_kind] if value_kind else None, reference
    )
    rng = random.Random(cql)
    outcomes = set()
    for _ in range(3000):
        change = _random_change(rng, key_kind, value_kind)
        expected = collection_fields(column, where, change)
        assert compiled(change) == expected, change
        assert counted(change) == expected, change
        outcomes.add("declined" if expected is None else "empty" if expected[0] is None else "stored")
    assert {"empty", "stored"} <= outcomes
    assert 0 < len(referred) < 2500  # hundreds written natively, the odd ones (EMPTY, U+0000, repeats) by the reference
