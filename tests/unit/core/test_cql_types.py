from __future__ import annotations

import pytest

from pipeline_runtime.cql.types import CqlType, Kind, UserType, parse_type
from pipeline_runtime.errors import SchemaError

ADDRESS = UserType("shop", "address", ("street", "zip"), ("text", "int"))
USER_TYPES = {("shop", "address"): ADDRESS}


@pytest.mark.parametrize(
    ("text", "kind", "multi_cell", "width"),
    [
        ("int", Kind.INT, False, 4),
        ("varchar", Kind.TEXT, False, None),
        ("timeuuid", Kind.TIMEUUID, False, 16),
        ("list<text>", Kind.LIST, True, None),
        ("frozen<list<text>>", Kind.LIST, False, None),
        ("map<text, frozen<set<int>>>", Kind.MAP, True, None),
        ("tuple<int, text>", Kind.TUPLE, False, None),
        ("vector<float, 3>", Kind.VECTOR, False, 12),
        ("vector<text, 2>", Kind.VECTOR, False, None),
        ("address", Kind.UDT, True, None),
        ("frozen<address>", Kind.UDT, False, None),
        ("'org.apache.cassandra.db.marshal.BytesType'", Kind.CUSTOM, False, None),
    ],
)
def test_parse_type(text: str, kind: Kind, multi_cell: bool, width: int | None) -> None:
    parsed = parse_type(text, "shop", USER_TYPES)
    assert parsed.kind is kind
    assert parsed.multi_cell is multi_cell
    assert parsed.fixed_width == width


def test_nested_types_are_frozen_and_round_trip_to_cql() -> None:
    parsed = parse_type("map<text, list<int>>")
    assert parsed.args[1] == CqlType(Kind.LIST, (CqlType(Kind.INT),), frozen=True)
    assert parsed.cql() == "map<text, frozen<list<int>>>"
    assert parse_type(parsed.cql()) == parsed


def test_udt_fields_are_resolved_from_the_keyspace() -> None:
    parsed = parse_type("frozen<address>", "shop", USER_TYPES)
    assert parsed.field_names == ("street", "zip")
    assert [a.kind for a in parsed.args] == [Kind.TEXT, Kind.INT]
    assert parse_type("shop.address", "other", USER_TYPES).udt_name == "address"


@pytest.mark.parametrize("text", ["", "list<", "map<int>", "unknown_udt", "vector<float>", "int int", "list<int"])
def test_bad_types_raise_schema_error(text: str) -> None:
    with pytest.raises((SchemaError, ValueError)):
        parse_type(text, "shop", USER_TYPES)
