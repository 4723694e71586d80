"""The dead-letter file counts what it holds, across restarts, for the DeadLetters condition."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline_runtime.events import Cell, ChangeEvent, Op, Position, SourcePosition
from pipeline_runtime.sinks.deadletter import DeadLetter, JsonlDeadLetters


def letter(i: int) -> DeadLetter:
    source = SourcePosition("cassandra-0", Position(4, 100 + i))
    event = ChangeEvent(Op.UPSERT, "ks", "t", {"id": i}, source, {}, {"v": Cell("x", 1)})
    return DeadLetter("pg", "PostgreSQL 22021: invalid byte sequence", event)


async def test_count_includes_letters_written_before_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "letters" / "shop.jsonl"
    first = JsonlDeadLetters(path)
    assert first.count == 0
    await first.write([letter(1), letter(2)])
    assert first.count == 2
    restarted = JsonlDeadLetters(path)
    assert restarted.count == 2
    await restarted.write([letter(3)])
    assert restarted.count == 3
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["table"], r["offset"], r["sink"]) for r in records] == [
        ("t", 101, "pg"),
        ("t", 102, "pg"),
        ("t", 103, "pg"),
    ]
