"""devservices.sinkview: Cassandra rows through the pipeline's transforms, compared with sink rows."""

from __future__ import annotations

import hashlib
import hmac
import uuid

from devservices.sinkview import compare, differences, keyed, transformed
from pipeline_runtime.config.model import MaskRule, MaskStrategy, TransformSpec
from pipeline_runtime.cql.schema import Column, ColumnKind, TableSchema
from pipeline_runtime.cql.types import parse_type
from pipeline_runtime.transforms import Transformer

KEY = b"sinkview-test-key-0123"


def schema() -> TableSchema:
    return TableSchema(
        "ks",
        "people",
        uuid.uuid4(),
        (
            Column("id", parse_type("int"), ColumnKind.PARTITION_KEY, 0),
            Column("email", parse_type("text"), ColumnKind.REGULAR),
            Column("tags", parse_type("set<text>"), ColumnKind.REGULAR),
            Column("scores", parse_type("map<text, int>"), ColumnKind.REGULAR),
        ),
    )


def transformer() -> Transformer:
    spec = TransformSpec(
        masking=[
            MaskRule(table="ks.people", column="email", strategy=MaskStrategy.HASH),
            MaskRule(table="ks.people", column="tags", strategy=MaskStrategy.PARTIAL, length=1, replacement="*"),
        ],
        hashKeySecret={"name": "k", "key": "k"},
    )
    return Transformer(spec, KEY)


def test_cassandra_rows_are_masked_as_the_runtime_masks_them() -> None:
    t = transformer()
    rows = transformed(t, schema(), [{"id": 1, "email": "a@example.com", "tags": {"ab", "cd"}, "scores": {"x": 1}}])
    assert rows == [
        {
            "id": 1,
            "email": hmac.new(KEY, b"a@example.com", hashlib.sha256).hexdigest(),
            "tags": {"*b", "*d"},
            "scores": {"x": 1},
        }
    ]


def test_sink_rows_in_json_form_compare_equal_and_differences_are_readable() -> None:
    t = transformer()
    sink_schema = t.schema(schema())
    source = transformed(t, schema(), [{"id": 1, "email": "a", "tags": None, "scores": {"x": 1}}, {"id": 2}])
    expected = keyed(sink_schema, source, sink=False)
    same = [dict(r, scores='{"x":1}' if r.get("scores") else None) for r in source]
    assert compare("ks.people", "pg", expected, keyed(sink_schema, same, sink=True)).equal

    changed = [dict(same[0], scores='{"x":2}'), {"id": 3}]
    actual = keyed(sink_schema, changed, sink=True)
    result = compare("ks.people", "pg", expected, actual)
    assert (len(result.missing), len(result.unexpected), len(result.changed)) == (1, 1, 1)
    lines = differences(result, expected, actual)
    assert lines[0].startswith("pg ks.people: 2 rows, Cassandra 2; 1 missing, 1 unexpected, 1 differ")
    assert 'scores: sink {"x":2} != Cassandra {"x":1}' in lines[-1]
