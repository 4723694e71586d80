"""A row PostgreSQL itself rejects is bisected out to the dead-letter file; the rest commits."""

from __future__ import annotations

import dataclasses
import json
import uuid
from pathlib import Path

import asyncpg
import pytest

from pipeline_runtime.cql.schema import ColumnKind, TableSchema
from pipeline_runtime.cql.values import EMPTY
from pipeline_runtime.errors import DeadLettersFullError
from pipeline_runtime.events import Cell, ChangeEvent, Liveness, Op, Position, SourcePosition
from pipeline_runtime.sinks.base import Batch, Checkpoint, TableNaming
from pipeline_runtime.sinks.deadletter import JsonlDeadLetters
from pipeline_runtime.sinks.postgres import PostgresSink
from pipeline_runtime.sinks.retry import Backoff
from pipeline_runtime.sinks.writer import BatchWriter
from tests.integration.sinks.workload import column

pytestmark = pytest.mark.postgres


def event(i: int, text: str, key: object = None) -> ChangeEvent:
    source = SourcePosition("node-a", Position(9, i))
    partition_key = {"id": i if key is None else key}
    return ChangeEvent(
        Op.UPSERT, "ks", "notes", partition_key, source, {}, {"body": Cell(text, 10 + i)}, Liveness(10 + i)
    )


async def test_server_rejected_row_goes_to_the_dead_letter_file(postgres_dsn: str, tmp_path: Path) -> None:
    schema = TableSchema(
        "ks", "notes", uuid.uuid4(), (column("id", "int", ColumnKind.PARTITION_KEY, 0), column("body", "text"))
    )
    sink = PostgresSink("pg", postgres_dsn, TableNaming())
    await sink.open()
    await sink.ensure_table(schema)
    dead = tmp_path / "dead.jsonl"
    writer = BatchWriter(sink, JsonlDeadLetters(dead), Backoff(initial=0.01, attempts=2))
    # A zero-length key value (blobAsInt(0x) is legal in a clustering column) is stored as NULL, which
    # PostgreSQL refuses in a key: SQLSTATE 23502, a row-level error raised by the server.
    events = [event(i, f"note {i}", EMPTY if i == 6 else None) for i in range(1, 11)]
    letters = await writer.write(Batch(events, Checkpoint("dl", "node-a", Position(9, 10))))
    assert [letter.event.partition_key for letter in letters] == [{"id": EMPTY}]
    assert await sink.committed_positions("dl") == {"node-a": Position(9, 10)}
    await sink.close()

    conn = await asyncpg.connect(postgres_dsn)
    try:
        ids = [r["id"] for r in await conn.fetch("SELECT id FROM ks.notes ORDER BY id")]
    finally:
        await conn.close()
    assert ids == [1, 2, 3, 4, 5, 7, 8, 9, 10]
    records = [json.loads(line) for line in dead.read_text().splitlines()]
    assert [(r["sink"], r["node"], r["segment_id"], r["offset"], r["table"]) for r in records] == [
        ("pg", "node-a", 9, 6, "notes")
    ]
    assert "23502" in records[0]["reason"]


async def test_a_full_dead_letter_file_keeps_the_batch_uncommitted(postgres_dsn: str, tmp_path: Path) -> None:
    """The file's bound (it may sit on Cassandra's disk) holds the batch back; moved away, the batch commits."""
    schema = TableSchema(
        "ks", "fullnotes", uuid.uuid4(), (column("id", "int", ColumnKind.PARTITION_KEY, 0), column("body", "text"))
    )
    sink = PostgresSink("pg", postgres_dsn, TableNaming())
    await sink.open()
    try:
        await sink.ensure_table(schema)
        dead = tmp_path / "dead.jsonl"
        dead.write_text("x" * 900 + "\n")
        writer = BatchWriter(sink, JsonlDeadLetters(dead, max_bytes=1000), Backoff(initial=0.01, attempts=2))
        events = [
            dataclasses.replace(e, table="fullnotes")
            for e in (event(i, "n", EMPTY if i == 3 else None) for i in (1, 2, 3))
        ]
        batch = Batch(events, Checkpoint("full", "node-a", Position(9, 3)))
        with pytest.raises(
            DeadLettersFullError, match=r"dead letters full: 1 rejected events .*deadLetters.maxSize 1000 bytes used"
        ):
            await writer.write(batch)
        assert await sink.committed_positions("full") == {}
        assert dead.read_text() == "x" * 900 + "\n"  # the earlier letter is untouched, nothing half-written

        dead.rename(tmp_path / "handled.jsonl")
        letters = await writer.write(batch)
        assert [letter.event.partition_key for letter in letters] == [{"id": EMPTY}]
        assert await sink.committed_positions("full") == {"node-a": Position(9, 3)}
        assert len(dead.read_text().splitlines()) == 1
    finally:
        await sink.close()
