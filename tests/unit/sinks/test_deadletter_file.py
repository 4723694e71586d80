"""The dead-letter file counts what it holds, across restarts, for the DeadLetters condition."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from pipeline_runtime.errors import DeadLettersFullError
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


async def test_the_bound_refuses_letters_that_would_pass_it_and_an_empty_file_takes_a_batch_whole(
    tmp_path: Path,
) -> None:
    path = tmp_path / "shop.jsonl"
    one = len(json.dumps(letter(1).record(), sort_keys=True)) + 1
    store = JsonlDeadLetters(path, max_bytes=one)  # smaller than two letters
    await store.write([letter(1), letter(2), letter(3)])  # an empty file takes one batch whole
    assert store.count == 3
    with pytest.raises(DeadLettersFullError, match="dead letters full: 1 rejected events"):
        await store.write([letter(4)])
    assert store.count == 3 and len(path.read_text().splitlines()) == 3  # nothing half-written

    path.rename(tmp_path / "handled.jsonl")  # the user handled them
    assert store.count == 0
    await store.write([letter(5)])
    assert store.count == 1


async def test_sinks_writing_at_once_never_pass_the_bound_together(tmp_path: Path) -> None:
    path = tmp_path / "shop.jsonl"
    path.write_text("{}\n")
    one = len(json.dumps(letter(1).record(), sort_keys=True)) + 1
    store = JsonlDeadLetters(path, max_bytes=3 + one)  # room for one more letter, not two
    outcomes = await asyncio.gather(store.write([letter(1)]), store.write([letter(2)]), return_exceptions=True)
    assert sorted(type(o).__name__ for o in outcomes) == ["DeadLettersFullError", "NoneType"]
    assert path.stat().st_size <= 3 + one and store.count == 2


def test_a_count_follows_a_file_emptied_by_hand(tmp_path: Path) -> None:
    path = tmp_path / "shop.jsonl"
    path.write_text("{}\n{}\n")
    store = JsonlDeadLetters(path)
    assert store.count == 2
    path.write_text("")
    assert store.count == 0
