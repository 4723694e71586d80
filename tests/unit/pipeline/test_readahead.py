"""Read-ahead: order kept, bounded by events, errors after the chunks read before them, lag sees the buffer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from pipeline_runtime.errors import IndexFileError
from pipeline_runtime.events import Position
from pipeline_runtime.pipeline.readahead import ReadAhead
from pipeline_runtime.source.tailer import SourceBatch
from tests.unit.pipeline.test_runner_logic import event


def chunk(first: int, size: int, durable_at: float | None = None) -> SourceBatch:
    events = [event(i) for i in range(first, first + size)]
    return SourceBatch(events, Position(1, 100 + first + size - 1), entries=size, durable_at=durable_at)


class Counting:
    """A source that counts how far it was read."""

    def __init__(self, chunks: list[SourceBatch], error: Exception | None = None) -> None:
        self.chunks = chunks
        self.error = error
        self.produced = 0

    async def __aiter__(self) -> AsyncIterator[SourceBatch]:
        for c in self.chunks:
            self.produced += 1
            yield c
        if self.error is not None:
            raise self.error


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_chunks_arrive_in_order_and_all_of_them() -> None:
    chunks = [chunk(i * 10, 10) for i in range(7)]
    async with ReadAhead(aiter(Counting(chunks)), limit=25) as ahead:
        got = [c async for c in ahead]
    assert [c.position for c in got] == [c.position for c in chunks]


async def test_reading_stops_at_the_bound_until_the_consumer_takes() -> None:
    source = Counting([chunk(i * 10, 10) for i in range(10)])
    async with ReadAhead(aiter(source), limit=25) as ahead:
        await settle()
        # 10 + 10 + 10 events: the third chunk is let in at 20 (< 25), the fourth waits.
        assert ahead.buffered_events == 30
        assert source.produced <= 4
        taken = ahead.__aiter__()
        first = await anext(taken)
        assert first.position == Position(1, 109)
        await settle()
        assert ahead.buffered_events == 30  # one taken, one more read
        assert source.produced <= 5


async def test_a_chunk_larger_than_the_bound_still_passes() -> None:
    async with ReadAhead(aiter(Counting([chunk(0, 50), chunk(50, 50)])), limit=10) as ahead:
        got = [c async for c in ahead]
    assert [len(c.events) for c in got] == [50, 50]


async def test_a_source_error_comes_after_every_chunk_read_before_it() -> None:
    error = IndexFileError("idx caught mid-rewrite")
    got = []
    async with ReadAhead(aiter(Counting([chunk(0, 5), chunk(5, 5)], error)), limit=100) as ahead:
        with pytest.raises(IndexFileError):
            async for c in ahead:
                got.append(c)
    assert [c.position for c in got] == [Position(1, 104), Position(1, 109)]


async def test_lag_sees_the_oldest_durable_chunk_waiting() -> None:
    chunks = [chunk(0, 5, None), chunk(5, 5, 1000.0), chunk(10, 5, 1005.0)]
    async with ReadAhead(aiter(Counting(chunks)), limit=100) as ahead:
        await settle()
        assert ahead.oldest_durable_at() == 1000.0
        taken = ahead.__aiter__()
        await anext(taken)
        await anext(taken)
        assert ahead.oldest_durable_at() == 1005.0
        await anext(taken)
        assert ahead.oldest_durable_at() is None


async def test_closing_drops_what_waits_and_stops_the_source() -> None:
    source = Counting([chunk(i * 10, 10) for i in range(100)])
    ahead = ReadAhead(aiter(source), limit=15)
    async with ahead:
        await settle()
    produced = source.produced
    await settle()
    assert source.produced == produced < 100
    assert ahead.buffered_events == 0


def test_the_bound_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        ReadAhead(aiter(Counting([])), limit=0)
