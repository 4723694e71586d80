"""Pure logic of the wiring: batching, checkpoint order, stall and retry, cleanup rule.

The source and sink here are in-memory stand-ins: what is tested is the
runner's own bookkeeping. The same runner against real Cassandra, PostgreSQL
and ClickHouse is tested in tests/integration/pipeline.
"""

from __future__ import annotations

import asyncio
import dataclasses
import tempfile
import time
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import pytest

from pipeline_runtime.cql.schema import Column, ColumnKind, TableSchema
from pipeline_runtime.cql.types import CqlType, Kind
from pipeline_runtime.errors import IndexFileError, RowRejectedError, SchemaDriftError, SinkUnavailableError
from pipeline_runtime.events import Cell, ChangeEvent, Op, Position, SourcePosition
from pipeline_runtime.observability.metrics import create_metrics
from pipeline_runtime.pipeline.cleanup import consumed, delete_segments
from pipeline_runtime.pipeline.lifecycle import Lifecycle, RuntimeState
from pipeline_runtime.pipeline.runner import STUCK_AFTER_SECONDS, BatchPolicy, Runner
from pipeline_runtime.sinks.base import Batch, SinkHealth, SinkState
from pipeline_runtime.sinks.deadletter import JsonlDeadLetters
from pipeline_runtime.sinks.retry import Backoff
from pipeline_runtime.source.commitlog.segment import SegmentReader
from pipeline_runtime.source.errors import SegmentCorruptError
from pipeline_runtime.source.tailer import CdcRawSource, SegmentInfo, TailerSettings
from tests.unit.source.fixture_data import SourceBatch, copy_recording, registry
from tests.waiting import wait_until

SCHEMA = TableSchema(
    "ks",
    "t",
    __import__("uuid").uuid4(),
    (Column("id", CqlType(Kind.INT), ColumnKind.PARTITION_KEY, 0), Column("v", CqlType(Kind.TEXT), ColumnKind.REGULAR)),
)


def event(i: int, segment: int = 1) -> ChangeEvent:
    return ChangeEvent(
        op=Op.UPSERT,
        keyspace="ks",
        table="t",
        partition_key={"id": i},
        source=SourcePosition("n0", Position(segment, 100 + i)),
        cells={"v": Cell(f"v{i}", 1_000_000 + i)},
    )


class ListSource:
    def __init__(self, chunks: list[SourceBatch], segments: list[SegmentInfo] | None = None) -> None:
        self.chunks = chunks
        self.started_from: list[Position | None] = []
        self.segments = segments or []
        self.drained = asyncio.Event()
        #: When the oldest durable entry the source has not yet returned became durable.
        self.unread: float | None = None
        self.forks: list[ListSource] = []

    async def read(self, start: Position | None) -> AsyncIterator[SourceBatch]:
        self.started_from.append(start)
        for chunk in self.chunks:
            if start is not None and chunk.position is not None and chunk.position <= start:
                continue
            yield chunk
        self.drained.set()
        while True:
            await asyncio.sleep(0.01)
            yield SourceBatch([], None)

    def schema(self, keyspace: str, table: str) -> TableSchema:
        return SCHEMA

    def backlog(self) -> list[SegmentInfo]:
        return [s for s in self.segments if s.log.exists()]

    def unread_durable_at(self) -> float | None:
        return self.unread

    def fork(self) -> ListSource:
        """A reader of its own over the same chunks (a lane catching up)."""
        forked = ListSource(self.chunks, self.segments)
        self.forks.append(forked)
        return forked


class Identity:
    def table(self, schema: TableSchema) -> TableSchema | None:
        return schema

    def events(self, events: Iterable[ChangeEvent]) -> list[ChangeEvent]:
        return [e for e in events if e.partition_key["id"] >= 0]


class MemorySink:
    def __init__(self, name: str, failures: int = 0, committed: Position | None = None) -> None:
        self.name = name
        self.failures = failures
        self.rows: dict[int, str] = {}
        self.checkpoint: Position | None = committed
        self.batches: list[Batch] = []
        self.tables: list[str] = []
        self._health = SinkHealth(name)

    async def open(self) -> None:
        self._health.state = SinkState.OPEN

    async def close(self) -> None:
        self._health.state = SinkState.CLOSED

    async def ensure_table(self, schema: TableSchema) -> None:
        self.tables.append(schema.qualified_name)

    async def write(self, batch: Batch) -> None:
        if self.failures:
            self.failures -= 1
            raise SinkUnavailableError(f"{self.name} is down")
        for e in batch.events:
            cell = e.cells["v"]
            assert isinstance(cell, Cell)
            self.rows[e.partition_key["id"]] = cell.value
        if batch.checkpoint is not None:  # bisected halves carry none
            self.checkpoint = batch.checkpoint.position
            self.batches.append(batch)

    async def committed_positions(self, pipeline: str) -> dict[str, Position]:
        return {"n0": self.checkpoint} if self.checkpoint else {}

    def health(self) -> SinkHealth:
        return self._health


def runner(source: ListSource, sinks: list[MemorySink], max_events: int = 3) -> Runner:
    return Runner(
        pipeline="p",
        node="n0",
        source=source,
        transform=Identity(),
        sinks=sinks,  # type: ignore[arg-type]
        metrics=create_metrics(),
        batching=BatchPolicy(max_events=max_events, max_wait=0.05),
        backoff=Backoff(initial=0.001, maximum=0.01, attempts=3),
        dead_letters=JsonlDeadLetters(Path(tempfile.mkdtemp()) / "dead.jsonl"),
    )


async def run_until_drained(r: Runner, source: ListSource, settle: float = 0.2) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(r.run(stop))
    await asyncio.wait_for(source.drained.wait(), 5)
    await asyncio.sleep(settle)
    stop.set()
    await asyncio.wait_for(task, 5)


def chunks(n: int) -> list[SourceBatch]:
    return [SourceBatch([event(i)], Position(1, 100 + i)) for i in range(n)]


async def test_every_event_reaches_every_sink_and_checkpoint_follows_data() -> None:
    source = ListSource(chunks(10))
    a, b = MemorySink("a"), MemorySink("b")
    r = runner(source, [a, b])
    await run_until_drained(r, source)
    assert a.rows == b.rows == {i: f"v{i}" for i in range(10)}
    assert a.checkpoint == b.checkpoint == Position(1, 109)
    assert [len(x.events) for x in a.batches][:3] == [3, 3, 3]
    assert a.tables == ["ks.t"]  # created once
    assert r.lifecycle.state is RuntimeState.STOPPED
    assert r.progress.events_committed == 10


async def test_a_sink_outage_stalls_and_retries_without_dropping() -> None:
    source = ListSource(chunks(7))
    flaky = MemorySink("flaky", failures=4)
    r = runner(source, [flaky])
    await run_until_drained(r, source)
    assert flaky.rows == {i: f"v{i}" for i in range(7)}
    # Three attempts per round, the round runs out and the runtime stalls; the next round's first
    # attempt fails once more, its retry succeeds: four failed attempts, each counted as it failed,
    # each carrying the first batch's three events (written in the end).
    assert r.metrics.retries.labels(pipeline="p", node="n0", sink="flaky")._value.get() == 4
    assert r.metrics.events_failed.labels(pipeline="p", node="n0", table="ks.t", sink="flaky")._value.get() == 12
    assert r.progress.last_error is None


async def test_restart_begins_at_the_lowest_committed_position_over_sinks() -> None:
    source = ListSource(chunks(6))
    ahead, behind = MemorySink("ahead", committed=Position(1, 104)), MemorySink("behind", committed=Position(1, 102))
    r = runner(source, [ahead, behind])
    await run_until_drained(r, source)
    assert source.started_from == [Position(1, 102)]
    assert sorted(behind.rows) == [3, 4, 5]
    assert ahead.checkpoint == behind.checkpoint == Position(1, 105)


async def test_unselected_events_still_move_the_checkpoint() -> None:
    source = ListSource([SourceBatch([event(-1)], Position(2, 50)), SourceBatch([event(-2)], Position(2, 90))])
    sink = MemorySink("s")
    r = runner(source, [sink])
    await run_until_drained(r, source)
    assert sink.rows == {}
    assert sink.checkpoint == Position(2, 90)


async def test_schema_drift_is_fatal_and_reported() -> None:
    class DriftSink(MemorySink):
        async def ensure_table(self, schema: TableSchema) -> None:
            raise SchemaDriftError("ks.t", "v", "type changed from text to int")

    source = ListSource(chunks(1))
    r = runner(source, [DriftSink("d")])
    with pytest.raises(SchemaDriftError):
        await asyncio.wait_for(r.run(asyncio.Event()), 5)
    assert r.lifecycle.state is RuntimeState.FAILED
    assert "type changed from text to int" in (r.progress.last_error or "")


def segment(tmp: Path, seg_id: int, durable: int, completed: bool) -> SegmentInfo:
    log, idx = tmp / f"CommitLog-7-{seg_id}.log", tmp / f"CommitLog-7-{seg_id}_cdc.idx"
    log.write_bytes(b"x" * durable)
    idx.write_text(f"{durable}\nCOMPLETED" if completed else str(durable))
    return SegmentInfo(seg_id, log, idx, durable, completed, durable)


def test_cleanup_deletes_only_completed_segments_behind_every_sink(tmp_path: Path) -> None:
    s1, s2, s3 = segment(tmp_path, 1, 500, True), segment(tmp_path, 2, 800, True), segment(tmp_path, 3, 300, False)
    assert consumed([s1, s2, s3], {"a": None}) == []
    assert consumed([s1, s2, s3], {"a": Position(2, 799)}) == [s1]
    assert consumed([s1, s2, s3], {"a": Position(2, 800)}) == [s1, s2]
    assert consumed([s1, s2, s3], {"a": Position(2, 800), "b": Position(1, 10)}) == []  # b holds them
    assert consumed([s1, s2, s3], {"a": Position(3, 300)}) == [s1, s2]  # s3 not COMPLETED
    assert delete_segments([s1, s2]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["CommitLog-7-3.log", "CommitLog-7-3_cdc.idx"]


async def test_consumed_segments_are_deleted_after_commit(tmp_path: Path) -> None:
    s1 = segment(tmp_path, 1, 105, True)
    source = ListSource(chunks(6), segments=[s1])
    sink = MemorySink("s")
    await run_until_drained(runner(source, [sink]), source)
    assert not s1.log.exists()
    assert not s1.index.exists()


def test_lifecycle_rejects_illegal_moves() -> None:
    life = Lifecycle()
    life.move(RuntimeState.RUNNING)
    life.move(RuntimeState.STALLED, "sink down")
    assert life.reason == "sink down"
    life.move(RuntimeState.RUNNING)
    life.move(RuntimeState.STOPPING)
    life.move(RuntimeState.STOPPED)
    with pytest.raises(RuntimeError, match="cannot go from stopped to running"):
        life.move(RuntimeState.RUNNING)


async def test_a_damaged_segment_stops_the_runner_after_the_good_entries_and_keeps_the_file(tmp_path: Path) -> None:
    """A flipped byte in entry 140 of a recorded v7 segment: what came before reaches the sink, nothing after."""

    class EveryEvent:
        def table(self, schema: TableSchema) -> TableSchema | None:
            return schema

        def events(self, events: Iterable[ChangeEvent]) -> list[ChangeEvent]:
            return list(events)

    class CollectingSink(MemorySink):
        def __init__(self) -> None:
            super().__init__("collect")
            self.events: list[ChangeEvent] = []

        async def write(self, batch: Batch) -> None:
            self.events.extend(batch.events)
            assert batch.checkpoint is not None
            self.checkpoint = batch.checkpoint.position

    cdc_raw = copy_recording("v7", tmp_path / "cdc_raw")
    (segment,) = cdc_raw.glob("CommitLog-*.log")
    entries = [(e.start, e.end) for e in SegmentReader(segment).read()]
    damaged_start, _ = entries[140]  # the fx keyspace's writes are entries 129-154
    data = bytearray(segment.read_bytes())
    data[damaged_start + 20] ^= 0xFF
    segment.write_bytes(bytes(data))

    source = CdcRawSource(cdc_raw, "node-1", registry("v7"), TailerSettings(max_entries=7, poll_interval=0.01))
    sink = CollectingSink()
    r = Runner(
        pipeline="p",
        node="node-1",
        source=source,
        transform=EveryEvent(),
        sinks=[sink],
        metrics=create_metrics(),
        dead_letters=JsonlDeadLetters(tmp_path / "dead.jsonl"),
        batching=BatchPolicy(max_events=5, max_wait=0.01),
        backoff=Backoff(initial=0.001, maximum=0.01, attempts=2),
    )
    with pytest.raises(SegmentCorruptError) as caught:
        await asyncio.wait_for(r.run(asyncio.Event()), 30)
    assert caught.value.offset == damaged_start
    assert r.lifecycle.state is RuntimeState.FAILED
    assert sink.checkpoint == Position(int(segment.name.split("-")[2].split(".")[0]), entries[139][1])
    delivered = {e.source.position.offset for e in sink.events}
    assert delivered <= {end for _, end in entries[:140]}
    assert len(delivered) >= 8  # entries 129-139 hold fx writes
    assert segment.exists()  # never deleted: it was not consumed
    assert r.metrics.decode_errors.labels(pipeline="p", node="node-1", kind="SegmentCorruptError")._value.get() == 1


def metric(r: Runner, name: str, **labels: str) -> float:
    value = r.metrics.registry.get_sample_value(name, {"pipeline": "p", "node": "n0", **labels})
    return 0.0 if value is None else value


async def test_an_outage_shows_in_metrics_and_readiness_while_it_lasts() -> None:
    source = ListSource(chunks(4))
    down = MemorySink("down", failures=10**9)
    r = runner(source, [down])
    r.backoff = Backoff(initial=0.001, maximum=0.05, attempts=2)
    r.writers["down"].policy = r.backoff
    stop = asyncio.Event()
    task = asyncio.create_task(r.run(stop))
    await asyncio.sleep(0.5)
    # Read during the outage, not after it.
    assert metric(r, "headrace_retries_total", sink="down") >= 3
    assert metric(r, "headrace_events_failed_total", table="ks.t", sink="down") >= 9
    assert r.lifecycle.state is RuntimeState.STALLED
    assert any("sink down: write failed: down is down" in reason for reason in r.stuck_sinks())
    down.failures = 0
    await asyncio.wait_for(source.drained.wait(), 5)
    await asyncio.sleep(0.2)
    assert r.stuck_sinks() == []
    stop.set()
    await asyncio.wait_for(task, 5)
    assert down.rows == {i: f"v{i}" for i in range(4)}


async def test_a_hung_sink_call_times_out_is_retried_and_named_while_it_hangs() -> None:
    class HangingSink(MemorySink):
        hangs = 2
        all_written = asyncio.Event()

        async def write(self, batch: Batch) -> None:
            if self.hangs:
                self.hangs -= 1
                await asyncio.sleep(3600)
            await super().write(batch)
            if len(self.rows) == 3:
                self.all_written.set()

    source = ListSource(chunks(3))
    sink = HangingSink("slow")
    r = runner(source, [sink])
    r.backoff = Backoff(initial=0.001, maximum=0.01, attempts=3, call_timeout=0.3)
    r.writers["slow"].policy = r.backoff
    stop = asyncio.Event()
    task = asyncio.create_task(r.run(stop))
    await asyncio.sleep(0.15)
    hanging = r.stuck_sinks(now=time.monotonic() + STUCK_AFTER_SECONDS)
    assert hanging and hanging[0].startswith("sink slow: write running for"), hanging
    # The source is read ahead of the sink: wait for the writes, not for the source's end.
    await asyncio.wait_for(sink.all_written.wait(), 5)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert sink.rows == {i: f"v{i}" for i in range(3)}
    assert metric(r, "headrace_retries_total", sink="slow") == 2
    assert (sink.health().retries, sink.health().last_error) == (2, "SinkTimeoutError")


async def test_batch_size_is_a_maximum_and_never_splits_an_entry() -> None:
    # Chunks of 5 entries with 2 events each (one mutation, two rows): a 999-style overflow before.
    def entry_events(base: int) -> list[ChangeEvent]:
        return [
            dataclasses.replace(event(base * 10 + k), source=SourcePosition("n0", Position(1, 1000 + base)))
            for k in range(2)
        ]

    batches = [
        SourceBatch([e for b in range(c * 5, c * 5 + 5) for e in entry_events(b)], Position(1, 1000 + c * 5 + 4))
        for c in range(3)
    ]
    source = ListSource(batches)
    sink = MemorySink("s")
    await run_until_drained(runner(source, [sink], max_events=3), source)
    sizes = [len(b.events) for b in sink.batches if b.events]
    assert max(sizes) <= 3, sizes
    assert sum(sizes) == 30
    for b in sink.batches:
        assert b.checkpoint is not None
        # A batch's checkpoint is the end of its last entry: every event of that entry is in it.
        ends = {e.source.position for e in b.events}
        assert not b.events or max(ends) == b.checkpoint.position
    assert sink.checkpoint == Position(1, 1014)


async def test_a_single_entry_larger_than_the_batch_is_written_whole() -> None:
    big = [dataclasses.replace(event(i), source=SourcePosition("n0", Position(1, 500))) for i in range(7)]
    source = ListSource([SourceBatch(big, Position(1, 500))])
    sink = MemorySink("s")
    await run_until_drained(runner(source, [sink], max_events=3), source)
    assert [len(b.events) for b in sink.batches] == [7]


async def test_a_retryable_source_error_re_reads_from_the_last_commit_and_keeps_running() -> None:
    class FlakySource(ListSource):
        reads = 0

        async def read(self, start: Position | None) -> AsyncIterator[SourceBatch]:
            self.reads += 1
            self.started_from.append(start)
            for chunk in self.chunks:
                if start is not None and chunk.position is not None and chunk.position <= start:
                    continue
                if self.reads == 1 and chunk.position == Position(1, 103):
                    raise IndexFileError("CommitLog-7-1_cdc.idx is empty (being rewritten)")
                yield chunk
            self.drained.set()
            while True:
                await asyncio.sleep(0.01)
                yield SourceBatch([], None)

    source = FlakySource(chunks(6))
    sink = MemorySink("s")
    r = runner(source, [sink])
    await run_until_drained(r, source)
    assert r.lifecycle.state is RuntimeState.STOPPED
    assert sink.rows == {i: f"v{i}" for i in range(6)}
    assert source.started_from[0] is None and source.started_from[1] == Position(1, 102)
    assert metric(r, "headrace_decode_errors_total", kind="IndexFileError") == 1


class PickySink(MemorySink):
    """Rejects every batch holding the event of id 4, as a server rejects a bad row."""

    async def write(self, batch: Batch) -> None:
        if any(e.partition_key["id"] == 4 for e in batch.events):
            raise RowRejectedError("sink picky: PostgreSQL 22021: invalid byte sequence")
        await super().write(batch)


async def test_dead_letters_count_per_table_and_not_as_written(tmp_path: Path) -> None:
    source = ListSource(chunks(6))
    sink = PickySink("picky")
    r = runner(source, [sink])
    await run_until_drained(r, source)
    assert sorted(sink.rows) == [0, 1, 2, 3, 5]
    assert metric(r, "headrace_events_dead_lettered_total", table="ks.t", sink="picky") == 1
    assert metric(r, "headrace_events_written_total", table="ks.t", sink="picky", op="upsert") == 5
    assert r.progress.events_dead_lettered == 1
    assert sink.checkpoint == Position(1, 105)


async def test_lag_is_the_age_of_the_oldest_uncommitted_durable_change_not_its_writetime() -> None:
    # Writetimes 10,000 s in the past (USING TIMESTAMP), data durable 2 s ago, and a sink that is down.
    old = [dataclasses.replace(event(i), cells={"v": Cell("x", 1_000_000)}) for i in range(2)]
    source = ListSource([SourceBatch(old, Position(1, 200), durable_at=time.time() - 2.0)])
    down = MemorySink("down", failures=10**9)
    r = runner(source, [down])
    stop = asyncio.Event()
    task = asyncio.create_task(r.run(stop))
    await asyncio.sleep(0.3)
    lag = metric(r, "headrace_lag_seconds")
    assert 2.0 <= lag < 10.0, lag
    down.failures = 0
    await asyncio.wait_for(source.drained.wait(), 5)
    await asyncio.sleep(0.3)
    assert metric(r, "headrace_lag_seconds") == 0.0
    stop.set()
    await asyncio.wait_for(task, 5)


def test_lag_counts_a_backlog_not_read_yet() -> None:
    source = ListSource([])
    r = runner(source, [MemorySink("s")])
    now = time.time()
    assert r.lag_seconds(now) == 0.0
    source.unread = now - 40.0  # a segment synced 40 s ago, not reached yet
    assert r.lag_seconds(now) == 40.0
    r.progress.pending_since(now - 55.0)  # and a batch read, waiting for its commit
    assert r.lag_seconds(now) == 55.0


async def test_a_full_dead_letter_file_stalls_the_batch_until_it_is_moved_away(tmp_path: Path) -> None:
    dead = tmp_path / "dead.jsonl"
    dead.write_text('{"earlier": "%s"}\n' % ("x" * 600))
    store = JsonlDeadLetters(dead, max_bytes=1000)  # one letter (about 600 bytes) fits, but not beside the first
    source = ListSource(chunks(6))
    sink = PickySink("picky")
    r = runner(source, [sink])
    r.writers["picky"].dead_letters = store
    stop = asyncio.Event()
    task = asyncio.create_task(r.run(stop))
    try:
        await wait_until(lambda: asyncio.sleep(0, r.lifecycle.state is RuntimeState.STALLED), 5, "stalled")
        assert "sink picky: write failed: dead letters full" in (r.progress.last_error or "")
        assert "sink picky: write failed: dead letters full" in r.sink_errors["picky"]
        await asyncio.sleep(0.1)  # retried meanwhile: still nothing committed past the rejected row
        assert sink.checkpoint == Position(1, 102) and store.count == 1

        dead.rename(tmp_path / "handled.jsonl")  # the user handled the letters
        await wait_until(lambda: asyncio.sleep(0, sink.checkpoint == Position(1, 105)), 5, "committed past it")
        assert sorted(sink.rows) == [0, 1, 2, 3, 5] and store.count == 1 and r.progress.events_dead_lettered == 1
        assert r.lifecycle.state is RuntimeState.RUNNING and not r.sink_errors
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
