"""Each sink's lane: own batch size, own checkpoint, and a sink that is down never holds the others.

In-memory source and sinks as in test_runner_logic (the runner's bookkeeping is what is tested);
the same behaviour against real Cassandra, PostgreSQL and ClickHouse is in
tests/integration/pipeline/test_end_to_end.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

from pipeline_runtime.events import ChangeEvent, Position
from pipeline_runtime.pipeline.lanes import Lane, Piece
from pipeline_runtime.pipeline.runner import BatchPolicy
from pipeline_runtime.sinks.base import Checkpoint
from tests.unit.pipeline.test_runner_logic import (
    ListSource,
    MemorySink,
    chunks,
    event,
    run_until_drained,
    runner,
    segment,
)
from tests.waiting import wait_until


async def test_each_sink_cuts_batches_of_its_own_size() -> None:
    source = ListSource(chunks(12))
    small, large = MemorySink("small"), MemorySink("large")
    r = runner(source, [small, large])
    r.sink_batching = {
        "small": BatchPolicy(max_events=2, max_wait=0.05),
        "large": BatchPolicy(max_events=6, max_wait=0.05),
    }
    await run_until_drained(r, source)
    assert small.rows == large.rows == {i: f"v{i}" for i in range(12)}
    assert max(len(b.events) for b in small.batches) == 2
    assert max(len(b.events) for b in large.batches) == 6
    assert len(small.batches) > len(large.batches)
    assert small.checkpoint == large.checkpoint == Position(1, 111)


async def test_restart_resumes_each_sink_from_its_own_checkpoint() -> None:
    source = ListSource(chunks(6))
    ahead, behind = MemorySink("ahead", committed=Position(1, 104)), MemorySink("behind", committed=Position(1, 102))
    r = runner(source, [ahead, behind])
    await run_until_drained(r, source)
    assert source.started_from == [Position(1, 102)]  # one reader, from the lowest
    assert sorted(behind.rows) == [3, 4, 5]
    assert sorted(ahead.rows) == [5]  # what it held already is not written again
    assert ahead.checkpoint == behind.checkpoint == Position(1, 105)


async def test_a_sink_that_is_down_falls_behind_without_holding_the_other_and_catches_up_from_its_checkpoint(
    tmp_path: Path,
) -> None:
    old = segment(tmp_path, 1, 109, True)  # every chunk lies in segment 1, COMPLETED at its end
    source = ListSource(chunks(10), segments=[old])
    up, down = MemorySink("up"), MemorySink("down", failures=10**9)
    r = runner(source, [up, down])
    stop = asyncio.Event()
    task = asyncio.create_task(r.run(stop))
    try:
        # The other sink gets everything and commits its own checkpoint while this one is down.
        await wait_until(lambda: asyncio.sleep(0, up.checkpoint == Position(1, 109)), 5, "the working sink done")
        assert up.rows == {i: f"v{i}" for i in range(10)}
        assert down.rows == {} and down.checkpoint is None
        assert not r.lanes["down"].attached and r.lanes["down"].detached_times == 1
        assert r.progress.committed is None  # the runtime's position is the lowest over its sinks
        assert old.log.exists()  # kept: the down sink has not committed past it
        now = time.time()
        assert r.sink_lag_seconds("up", now) == 0.0
        assert r.lag_seconds(now) == r.sink_lag_seconds("down", now) > 0.0
        up_batches = len(up.batches)

        # Back: it commits the batch it was retrying (ids 0-2, through offset 102), then reads cdc_raw
        # again from that checkpoint, its own, on a reader of its own.
        down.failures = 0
        await wait_until(lambda: asyncio.sleep(0, down.checkpoint == Position(1, 109)), 5, "the late sink caught up")
        assert down.rows == up.rows
        assert len(source.forks) == 1 and source.forks[0].started_from == [Position(1, 102)]
        await wait_until(lambda: asyncio.sleep(0, not old.log.exists()), 5, "the segment deleted once both hold it")
        assert r.progress.committed == Position(1, 109)
        assert len(up.batches) == up_batches  # the working sink wrote nothing again
        await wait_until(lambda: asyncio.sleep(0, r.lanes["down"].attached), 5, "the late sink back on the reader")
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


async def test_a_slow_sink_that_keeps_making_room_is_waited_for_not_dropped() -> None:
    class SlowSink(MemorySink):
        async def write(self, batch: object) -> None:
            await asyncio.sleep(0.05)
            await super().write(batch)  # type: ignore[arg-type]

    source = ListSource(chunks(20))
    fast, slow = MemorySink("fast"), SlowSink("slow")
    r = runner(source, [fast, slow])
    await run_until_drained(r, source, settle=1.0)
    assert slow.rows == fast.rows == {i: f"v{i}" for i in range(20)}
    assert r.lanes["slow"].detached_times == 0 and source.forks == []


async def test_a_piece_whose_checkpoint_lies_behind_what_the_lane_accepted_keeps_the_position() -> None:
    """Replica dedup can cap a piece's checkpoint below what the lane already took; its events are
    still written, with the checkpoint the lane had (it never moves back, never goes missing)."""
    written: list[tuple[list[int], Position]] = []

    async def write(lane: Lane, events: list[ChangeEvent], checkpoint: Checkpoint) -> None:
        written.append(([int(e.partition_key["id"]) for e in events], checkpoint.position))

    async def no_catch_up(start: Position | None) -> AsyncIterator[Piece]:
        raise AssertionError("never detached here")
        yield  # pragma: no cover

    lane = Lane(
        MemorySink("s"),  # type: ignore[arg-type]
        lambda p: Checkpoint("p", "n", p),
        max_events=10,
        max_wait=0.05,
        limit=10,
        committed=None,
        write=write,
        catch_up=no_catch_up,
        failing=lambda: False,
    )
    task = asyncio.create_task(lane.run())
    try:
        await lane.offer(Piece([event(1)], Position(1, 200)))
        await wait_until(lambda: asyncio.sleep(0, len(written) == 1), 5, "the first batch committed")
        await lane.offer(Piece([event(150)], Position(1, 260), cap=Position(1, 150)))  # event at offset 250
        await wait_until(lambda: asyncio.sleep(0, len(written) == 2), 5, "the second batch committed")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert written == [([1], Position(1, 200)), ([150], Position(1, 200))]
    assert lane.committed == Position(1, 200)
    assert lane.offered == Position(1, 200)
