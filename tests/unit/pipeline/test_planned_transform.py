"""The runner's transform: re-planned when a table grows, and cells it cannot place counted, not lost silently."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator

import pytest

from pipeline_runtime.config.model import TransformSpec
from pipeline_runtime.cql.schema import Column, ColumnKind, TableSchema
from pipeline_runtime.cql.types import CqlType, Kind
from pipeline_runtime.events import Cell, ChangeEvent, Op, Position, SourcePosition
from pipeline_runtime.pipeline.transform import PlannedTransform
from pipeline_runtime.source.tailer import SegmentInfo, SourceBatch
from pipeline_runtime.transforms import Transformer

TABLE_ID = uuid.uuid4()


def schema(*regulars: str) -> TableSchema:
    key = Column("id", CqlType(Kind.INT), ColumnKind.PARTITION_KEY, 0)
    return TableSchema(
        "ks", "t", TABLE_ID, (key, *(Column(n, CqlType(Kind.TEXT), ColumnKind.REGULAR) for n in regulars))
    )


class SchemaSource:
    """Only ``schema`` matters here: what system_schema says now."""

    def __init__(self, current: TableSchema) -> None:
        self.current = current

    async def read(self, start: Position | None) -> AsyncIterator[SourceBatch]:
        raise NotImplementedError
        yield

    def schema(self, keyspace: str, table: str) -> TableSchema:
        return self.current

    def backlog(self) -> list[SegmentInfo]:
        return []


def upsert(**cells: str) -> ChangeEvent:
    source = SourcePosition("n0", Position(1, 10))
    return ChangeEvent(Op.UPSERT, "ks", "t", {"id": 1}, source, {}, {k: Cell(v, 5) for k, v in cells.items()})


def test_cells_of_a_column_the_schema_no_longer_has_are_counted_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # b was dropped in Cassandra; an entry written before the drop still carries a cell of it.
    source = SchemaSource(schema("a"))
    dropped: list[tuple[str, str, int]] = []
    transform = PlannedTransform(Transformer(TransformSpec()), source, lambda *seen: dropped.append(seen))
    with caplog.at_level(logging.WARNING, logger="pipeline_runtime.pipeline.transform"):
        out = transform.events([upsert(a="1", b="2") for _ in range(3)])
    assert [set(e.cells) for e in out] == [{"a"}] * 3
    assert dropped == [("ks.t", "column_not_in_schema", 1)] * 3
    warnings = [r for r in caplog.records if "no longer in the schema" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].__dict__["column"] == "b"


def test_a_new_column_is_planned_not_dropped() -> None:
    source = SchemaSource(schema("a"))
    dropped: list[tuple[str, str, int]] = []
    transform = PlannedTransform(Transformer(TransformSpec()), source, lambda *seen: dropped.append(seen))
    first = upsert(a="1")
    assert transform.events([first]) == [first]
    source.current = schema("a", "c")  # ALTER TABLE ... ADD c, seen in the middle of a chunk
    out = transform.events([upsert(a="2"), upsert(a="1", c="3"), upsert(c="4")])
    assert [e.cells for e in out] == [{"a": Cell("2", 5)}, {"a": Cell("1", 5), "c": Cell("3", 5)}, {"c": Cell("4", 5)}]
    assert dropped == []


def test_a_table_whose_plan_changes_nothing_passes_its_events_as_they_are() -> None:
    source = SchemaSource(schema("a", "b"))
    transform = PlannedTransform(Transformer(TransformSpec()), source)
    chunk = [upsert(a="1"), upsert(b="2"), upsert(a="3", b="4")]
    out = transform.events(chunk)
    assert len(out) == 3 and all(o is e for o, e in zip(out, chunk, strict=True))  # not copied


def test_a_masked_column_is_masked_in_every_event_of_a_chunk() -> None:
    source = SchemaSource(schema("a", "b"))
    spec = TransformSpec.model_validate({"masking": [{"table": "ks.t", "column": "b", "strategy": "redact"}]})
    transform = PlannedTransform(Transformer(spec), source)
    out = transform.events([upsert(a="1", b="secret"), upsert(b="other")])
    assert [e.cells.get("a") for e in out] == [Cell("1", 5), None]
    assert all(e.cells["b"] != Cell(v, 5) for e, v in zip(out, ["secret", "other"], strict=True))
