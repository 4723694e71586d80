"""Selection, renames, masking and the personal-data policy, on schemas and events."""

from __future__ import annotations

import logging
import uuid

import pytest

from pipeline_runtime.config.model import (
    ColumnSelection,
    MaskRule,
    MaskStrategy,
    SecretRef,
    TransformSpec,
    ValidationPolicy,
)
from pipeline_runtime.cql.canonical import canonical_text, dumps, to_json
from pipeline_runtime.cql.schema import Column, ColumnKind, TableSchema
from pipeline_runtime.cql.types import Kind, parse_type
from pipeline_runtime.errors import ConfigError
from pipeline_runtime.events import (
    Bound,
    Cell,
    ChangeEvent,
    CollectionChange,
    Deletion,
    ElementCell,
    Op,
    Position,
    SourcePosition,
)
from pipeline_runtime.transforms import Transformer, looks_personal, read_hash_key

KEY = b"0123456789abcdef0123456789abcdef"
SRC = SourcePosition("n", Position(1, 1))


def schema() -> TableSchema:
    return TableSchema(
        "ks",
        "people",
        uuid.uuid4(),
        (
            Column("email", parse_type("text"), ColumnKind.PARTITION_KEY, 0),
            Column("seq", parse_type("int"), ColumnKind.CLUSTERING, 0),
            Column("phone", parse_type("text"), ColumnKind.REGULAR),
            Column("card_number", parse_type("bigint"), ColumnKind.REGULAR),
            Column("tags", parse_type("set<text>"), ColumnKind.REGULAR),
            Column("age", parse_type("int"), ColumnKind.REGULAR),
        ),
    )


def transformer(**kwargs: object) -> Transformer:
    rules = [
        MaskRule(table="ks.*", column="email", strategy=MaskStrategy.HASH),
        MaskRule(table="ks.people", column="phone", strategy=MaskStrategy.PARTIAL, length=3, replacement="#"),
        MaskRule(table="ks.people", column="card_number", strategy=MaskStrategy.TRUNCATE, length=4),
        MaskRule(table="ks.people", column="tags", strategy=MaskStrategy.REDACT, replacement="[x]"),
    ]
    spec = TransformSpec(
        masking=rules,
        columns=[ColumnSelection(table="ks.people", rename={"age": "years"})],
        hash_key_secret=SecretRef(name="s", key="k"),
        **kwargs,  # type: ignore[arg-type]
    )
    return Transformer(spec, KEY)


def test_schema_types_follow_masking_and_renames() -> None:
    out = transformer().schema(schema())
    assert out.by_name["email"].type.kind is Kind.TEXT
    assert out.by_name["card_number"].type.kind is Kind.TEXT
    assert out.by_name["tags"].type.cql() == "set<text>"
    assert "years" in out.by_name and "age" not in out.by_name
    assert out.by_name["email"].kind is ColumnKind.PARTITION_KEY


def test_event_values_are_masked_keys_hashed_deterministically() -> None:
    t = transformer()
    t.schema(schema())
    event = ChangeEvent(
        Op.UPSERT,
        "ks",
        "people",
        {"email": "a@b.c"},
        SRC,
        {"seq": 1},
        {
            "phone": Cell("5551234", 1),
            "card_number": Cell(4111111111111111, 1),
            "tags": CollectionChange(Deletion(0, 0), (ElementCell("vip", None, 1),)),
            "age": Cell(42, 1),
        },
    )
    out = t.event(event)
    again = t.event(event)
    assert out.partition_key == again.partition_key
    assert out.partition_key["email"] != "a@b.c" and len(out.partition_key["email"]) == 64
    assert out.cells["phone"].value == "####234"  # type: ignore[union-attr]
    assert out.cells["card_number"].value == "4111"  # type: ignore[union-attr]
    tags = out.cells["tags"]
    assert isinstance(tags, CollectionChange) and tags.elements[0].path == "[x]"
    assert out.cells["years"].value == 42  # type: ignore[union-attr]
    assert event.partition_key == {"email": "a@b.c"}, "the original event must not change"


def test_range_bounds_of_masked_clustering_columns_are_masked() -> None:
    spec = TransformSpec(
        masking=[MaskRule(table="ks.people", column="seq", strategy=MaskStrategy.HASH)],
        hash_key_secret=SecretRef(name="s", key="k"),
        validation=ValidationPolicy.OFF,
    )
    t = Transformer(spec, KEY)
    t.schema(schema())
    event = ChangeEvent(
        Op.DELETE_RANGE, "ks", "people", {"email": "x"}, SRC, deletion=Deletion(1, 0), range_start=Bound((5,), True)
    )
    out = t.event(event)
    assert out.range_start is not None and out.range_start.values[0] != 5


def test_key_columns_allow_only_hash_and_cannot_be_excluded() -> None:
    bad = TransformSpec(masking=[MaskRule(table="ks.people", column="email", strategy=MaskStrategy.REDACT)])
    with pytest.raises(ConfigError, match="only strategy hash"):
        Transformer(bad).schema(schema())
    excluded = TransformSpec(columns=[ColumnSelection(table="ks.people", exclude=["seq"])])
    with pytest.raises(ConfigError, match="cannot be excluded"):
        Transformer(excluded).schema(schema())


def test_personal_data_policy_warns_or_blocks(caplog: pytest.LogCaptureFixture) -> None:
    assert looks_personal("email") and looks_personal("homeAddress") and looks_personal("date_of_birth")
    assert looks_personal("cardNumber") and not looks_personal("created_at") and not looks_personal("status")
    unmasked = TransformSpec(validation=ValidationPolicy.WARN)
    caplog.set_level(logging.WARNING)
    findings = Transformer(unmasked).validate(schema())
    assert {str(f) for f in findings} == {"ks.people.email", "ks.people.phone", "ks.people.card_number"}
    assert "ks.people.phone" in caplog.text
    with pytest.raises(ConfigError, match="personal data"):
        Transformer(TransformSpec(validation=ValidationPolicy.BLOCK)).validate(schema())
    assert transformer(validation=ValidationPolicy.BLOCK).validate(schema()) == []


def test_hash_key_from_env_or_file(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HR_KEY", "k" * 20)
    assert read_hash_key(env="HR_KEY") == b"k" * 20
    monkeypatch.setenv("HR_SHORT", "short")
    with pytest.raises(ConfigError, match="shorter"):
        read_hash_key(env="HR_SHORT")
    with pytest.raises(ConfigError):
        read_hash_key(env="HR_MISSING")


@pytest.mark.parametrize(
    ("cql", "value", "text"),
    [
        ("set<int>", {10, 9, 1}, "[1,10,9]"),  # ordered by each element's text, as in every sink
        ("map<int, text>", {2: "b", 10: "a"}, '[[10,"a"],[2,"b"]]'),
        ("map<text, int>", {"b": 1, "a": 2}, '{"a":2,"b":1}'),
        ("decimal", __import__("decimal").Decimal("1.10"), "1.10"),  # exact digits, never through float
    ],
)
def test_canonical_text_is_the_sinks_canonical_json(cql: str, value: object, text: str) -> None:
    cql_type = parse_type(cql)
    assert canonical_text(value, cql_type) == text
    assert dumps(to_json(value, cql_type)) == text


def test_an_event_nothing_applies_to_passes_unchanged_and_uncopied() -> None:
    elsewhere = MaskRule(table="other.t", column="x", strategy=MaskStrategy.HASH)
    plain = Transformer(TransformSpec(masking=[elsewhere], hash_key_secret=SecretRef(name="s", key="k")), KEY)
    plain.plan(schema())
    cells = {"age": Cell(3, 10), "phone": Cell("555-1234", 10)}
    event = ChangeEvent(Op.UPSERT, "ks", "people", {"email": "a@b.c"}, SRC, {"seq": 1}, cells)
    assert plain.event(event) is event
    # A selection, a rename or a mask on the table makes a copy with the change.
    people = "ks.people"
    cases = {
        "exclude": (TransformSpec(columns=[ColumnSelection(table=people, exclude=["phone"])]), {"age"}),
        "rename": (TransformSpec(columns=[ColumnSelection(table=people, rename={"age": "n"})]), {"n", "phone"}),
        "mask": (
            TransformSpec(masking=[MaskRule(table=people, column="age", strategy=MaskStrategy.REDACT)]),
            {"age", "phone"},
        ),
    }
    for case, (spec, columns) in cases.items():
        changed = Transformer(spec, KEY)
        changed.plan(schema())
        out = changed.event(event)
        assert out is not event, case
        assert set(out.cells) == columns, case
    assert event.cells == cells  # the original is never changed
