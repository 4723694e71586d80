"""A row PostgreSQL itself rejects is bisected out to the dead-letter table; the rest commits."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from pipeline_runtime.cql.schema import ColumnKind, TableSchema
from pipeline_runtime.events import Cell, ChangeEvent, Liveness, Op, Position, SourcePosition
from pipeline_runtime.sinks.base import Batch, Checkpoint, TableNaming
from pipeline_runtime.sinks.postgres import PostgresSink
from pipeline_runtime.sinks.postgres.deadletter import PostgresDeadLetters
from pipeline_runtime.sinks.retry import Backoff
from pipeline_runtime.sinks.writer import BatchWriter
from tests.integration.sinks.workload import column

pytestmark = pytest.mark.postgres


def event(i: int, text: str) -> ChangeEvent:
    source = SourcePosition("node-a", Position(9, i))
    return ChangeEvent(Op.UPSERT, "ks", "notes", {"id": i}, source, {}, {"body": Cell(text, 10 + i)}, Liveness(10 + i))


async def test_server_rejected_row_goes_to_dead_letter_table(postgres_dsn: str) -> None:
    schema = TableSchema(
        "ks", "notes", uuid.uuid4(), (column("id", "int", ColumnKind.PARTITION_KEY, 0), column("body", "text"))
    )
    sink = PostgresSink("pg", postgres_dsn, TableNaming())
    await sink.open()
    await sink.ensure_table(schema)
    writer = BatchWriter(sink, PostgresDeadLetters(postgres_dsn, "pg"), Backoff(initial=0.01, attempts=2))
    # PostgreSQL text cannot hold a NUL character: SQLSTATE 22021, a row-level error.
    events = [event(i, "bad\x00byte" if i == 6 else f"note {i}") for i in range(1, 11)]
    assert await writer.write(Batch(events, Checkpoint("dl", "node-a", Position(9, 10)))) == 1
    assert await sink.committed_positions("dl") == {"node-a": Position(9, 10)}
    await sink.close()

    conn = await asyncpg.connect(postgres_dsn)
    try:
        ids = [r["id"] for r in await conn.fetch("SELECT id FROM ks.notes ORDER BY id")]
        letters = await conn.fetch(
            'SELECT sink, node, segment_id, "offset", "table", reason FROM headrace.dead_letters'
        )
    finally:
        await conn.close()
    assert ids == [1, 2, 3, 4, 5, 7, 8, 9, 10]
    assert [(r["sink"], r["node"], r["segment_id"], r["offset"], r["table"]) for r in letters] == [
        ("pg", "node-a", 9, 6, "notes")
    ]
    assert "22021" in letters[0]["reason"]
