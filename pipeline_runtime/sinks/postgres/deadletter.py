"""Dead letters as rows of ``headrace.dead_letters`` in the sink's own database."""

from __future__ import annotations

import json
from collections.abc import Sequence

import asyncpg

from pipeline_runtime.sinks.deadletter import DeadLetter
from pipeline_runtime.sinks.postgres.errors import boundary

_CREATE = """
CREATE SCHEMA IF NOT EXISTS headrace;
CREATE TABLE IF NOT EXISTS headrace.dead_letters (
    id bigserial PRIMARY KEY,
    sink text NOT NULL,
    node text NOT NULL,
    segment_id bigint NOT NULL,
    "offset" bigint NOT NULL,
    keyspace text NOT NULL,
    "table" text NOT NULL,
    op text NOT NULL,
    reason text NOT NULL,
    event jsonb NOT NULL,
    rejected_at timestamptz NOT NULL DEFAULT now()
)
"""

_INSERT = (
    'INSERT INTO headrace.dead_letters (sink, node, segment_id, "offset", keyspace, "table", op, reason, event) '
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
)


class PostgresDeadLetters:
    """A dead-letter store in PostgreSQL; committed before the writer moves the checkpoint."""

    def __init__(self, dsn: str, sink: str = "dead-letters") -> None:
        self._dsn = dsn
        self._sink = sink

    async def write(self, letters: Sequence[DeadLetter]) -> None:
        if not letters:
            return
        async with boundary(self._sink):
            conn = await asyncpg.connect(self._dsn)
            try:
                async with conn.transaction():
                    await conn.execute(_CREATE)
                    await conn.executemany(_INSERT, [_row(letter) for letter in letters])
            finally:
                await conn.close()


def _row(letter: DeadLetter) -> tuple[object, ...]:
    record = letter.record()
    return (
        _text(record["sink"]),
        _text(record["node"]),
        record["segment_id"],
        record["offset"],
        _text(record["keyspace"]),
        _text(record["table"]),
        record["op"],
        _text(record["reason"]),
        # The rejected value may be exactly what PostgreSQL cannot store (a NUL character): escape it visibly.
        json.dumps(record["event"]).replace("\\u0000", "\\\\u0000"),
    )


def _text(value: str) -> str:
    return value.replace("\x00", "\\0")
