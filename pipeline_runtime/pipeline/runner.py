"""The data path of one runtime: source -> transforms -> batches -> sinks -> checkpoint -> cleanup.

One runtime serves one Cassandra node. It reads from the lowest position
committed over its sinks, so a crash anywhere re-delivers (the sinks make
that harmless) and never skips. The source decodes ahead (``ReadAhead``);
each chunk is transformed once and offered to every sink's ``Lane``
(``pipeline/lanes.py``), which cuts its own batches, commits its own
checkpoint and skips what its sink already holds. A sink that is down or
stalled falls behind and re-reads from its own checkpoint later, without
holding the others; segments stay until every sink committed past them. A
sink outage retries with backoff and drops nothing. A transient problem (a
sink outage, a sink call past its timeout, a half-rewritten ``_cdc.idx``)
never ends the process; only damage, drift and bugs do, with the position
kept.

Lag is the age of the oldest change that is durable in the commitlog but not
yet committed in every sink: now minus the time Cassandra synced the segment
data it was read from (``SourceBatch.durable_at``). It does not depend on the
writetimes clients chose, and it keeps growing while a backlog drains or a
sink is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import operator
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from opentelemetry import trace

from pipeline_runtime.checkpoint.positions import lowest, lowest_committed
from pipeline_runtime.cql.schema import TableSchema
from pipeline_runtime.errors import HeadraceError, SinkError, SourceError
from pipeline_runtime.events import ChangeEvent, Position
from pipeline_runtime.observability.metrics import Metrics
from pipeline_runtime.pipeline.cleanup import consumed, delete_segments
from pipeline_runtime.pipeline.lanes import Lane, Piece
from pipeline_runtime.pipeline.lifecycle import Lifecycle, RuntimeState
from pipeline_runtime.pipeline.protocols import ChangeSource, EventTransform
from pipeline_runtime.pipeline.readahead import ReadAhead
from pipeline_runtime.pipeline.replicas import ReplicaRouter, watermark_key, watermarks
from pipeline_runtime.pipeline.snapshot import Deliver, ReadMarks, SnapshotRun
from pipeline_runtime.sinks.base import Batch, Checkpoint, Sink
from pipeline_runtime.sinks.deadletter import DeadLetter, DeadLetterStore
from pipeline_runtime.sinks.retry import Backoff, bounded, retrying
from pipeline_runtime.sinks.writer import BatchWriter

log = logging.getLogger(__name__)
tracer = trace.get_tracer("headrace.pipeline")
T = TypeVar("T")
DEFAULT_BACKOFF = Backoff()
#: Builds the snapshot on the runner's delivery path and its reading of committed marks.
SnapshotFactory = Callable[[Deliver, ReadMarks], SnapshotRun]
#: How often replica dedup publishes this runtime's watermark and reads the others'.
REPLICA_TICK_SECONDS = 1.0
#: A sink call running longer than this makes /readyz name the sink, before its timeout ends it.
STUCK_AFTER_SECONDS = 30.0


#: An event's table and op, and its table, as tuples built in C (the counts and table sets of a chunk).
_TABLE_AND_OP = operator.attrgetter("keyspace", "table", "op")
_TABLE = operator.attrgetter("keyspace", "table")


def _age_of_oldest(times: Sequence[float | None], now: float | None) -> float:
    """Seconds from the oldest of ``times`` (None: nothing there) to ``now``; 0 when none is known."""
    known = [t for t in times if t is not None]
    return max(0.0, (time.time() if now is None else now) - min(known)) if known else 0.0


def _entry_end(event: ChangeEvent) -> Position:
    return event.source.position


@dataclass(frozen=True)
class BatchPolicy:
    """When a batch is written: ``max_events`` reached or ``max_wait`` seconds since its first event.

    ``max_events`` is a maximum: a batch is cut before the entry that would overflow it.
    The events of one commitlog entry (one mutation) are never split over two batches,
    since a position is the end of an entry; a single mutation with more rows than
    ``max_events`` is written as one batch of its own.
    """

    max_events: int = 1000
    max_wait: float = 1.0


@dataclass
class Progress:
    """What the runtime knows of its own progress, for status reports and /readyz."""

    committed: Position | None = None
    last_commit_monotonic: float | None = None
    #: Wall-clock time (s) at which the oldest change read but not yet committed became durable.
    oldest_pending_durable: float | None = None
    events_committed: int = 0
    events_dead_lettered: int = 0
    last_error: str | None = None
    rate_window: list[tuple[float, int]] = field(default_factory=list)

    def events_per_second(self, now: float) -> float:
        """Committed events per second over the last minute."""
        self.rate_window = [(t, n) for t, n in self.rate_window if now - t <= 60]
        if len(self.rate_window) < 2:
            return 0.0
        (t0, n0), (t1, n1) = self.rate_window[0], self.rate_window[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0

    def pending_since(self, durable_at: float) -> None:
        """Note that changes durable since ``durable_at`` were read and wait for a commit."""
        if self.oldest_pending_durable is None or durable_at < self.oldest_pending_durable:
            self.oldest_pending_durable = durable_at


class Runner:
    """Runs one node's pipeline until stopped."""

    def __init__(
        self,
        *,
        pipeline: str,
        node: str,
        source: ChangeSource,
        transform: EventTransform,
        sinks: Sequence[Sink],
        metrics: Metrics,
        dead_letters: DeadLetterStore,
        batching: BatchPolicy = BatchPolicy(),
        backoff: Backoff = DEFAULT_BACKOFF,
        snapshot: SnapshotFactory | None = None,
        replicas: ReplicaRouter | None = None,
        receives: Mapping[str, Callable[[str, str], bool]] | None = None,
        sink_batching: Mapping[str, BatchPolicy] | None = None,
    ) -> None:
        self.pipeline = pipeline
        #: Per sink name, whether it receives a (keyspace, table) (``sinks[].tables``); absent: every table.
        self.receives = dict(receives or {})
        self.node = node
        self.source = source
        self.transform = transform
        self.sinks = list(sinks)
        self.metrics = metrics
        self.batching = batching
        #: Per sink name, its own batch size and flush interval (absent: ``batching``).
        self.sink_batching = dict(sink_batching or {})
        self.backoff = backoff
        self.writers = {
            sink.name: BatchWriter(
                sink, dead_letters, backoff, on_failure=functools.partial(self._failed_attempt, sink, "write")
            )
            for sink in self.sinks
        }
        #: Per table: the source schema last seen, its sink-side form and column shape.
        self._sink_schemas: dict[
            tuple[str, str], tuple[TableSchema, TableSchema | None, tuple[tuple[str, str], ...]]
        ] = {}
        #: Sinks whose last call failed, with why: the runtime is not ready while any is here.
        self.sink_errors: dict[str, str] = {}
        #: Sink calls under way: sink name -> (operation, monotonic start).
        self.in_flight: dict[str, tuple[str, float]] = {}
        self.lifecycle = Lifecycle()
        self.progress = Progress()
        self._tables_ready: set[tuple[str, str, tuple[tuple[str, str], ...]]] = set()
        self._labels = {"pipeline": pipeline, "node": node}
        #: One batch at a time per sink: live batches and snapshot pages take turns.
        self._sink_locks = {sink.name: asyncio.Lock() for sink in self.sinks}
        #: Each sink's lane while live capture runs (``pipeline/lanes.py``).
        self.lanes: dict[str, Lane] = {}
        #: The initial snapshot beside live capture, built on this runner's delivery path.
        self.snapshot: SnapshotRun | None = snapshot(self.deliver, self.committed_marks) if snapshot else None
        #: Replica dedup (``source.replicaDedup``): which changes this runtime writes, holds or drops.
        self.replicas = replicas
        #: The end of what was read and delivered; the checkpoint stays behind it while changes are held.
        self._through: Position | None = None
        self._replica_tick_at = 0.0
        self._replica_counted: dict[str, int] = {}
        #: The chunks decoded ahead of the sinks while live capture runs.
        self._read_ahead: ReadAhead | None = None
        # Read at every scrape, so the figure is never older than the scrape.
        metrics.lag_seconds.labels(**self._labels).set_function(self.lag_seconds)

    # -- lifecycle -------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, *, live: bool = True) -> None:
        """Replicate until ``stop`` is set; raises on a fatal error after recording it.

        ``live=False`` runs only the snapshot and returns when it is done (``headrace snapshot``).
        """
        try:
            await self._until_stopped(self._open_sinks(), stop)
            if stop.is_set():
                return
            if not live:
                if self.snapshot is not None:
                    self.lifecycle.move(RuntimeState.RUNNING)
                    await self._until_stopped(self.snapshot.run(), stop)
                return
            marks = await self.committed_marks()
            start = lowest_committed(marks, [self.node])[self.node]
            self.progress.committed = self._through = start
            self._make_lanes({name: positions.get(self.node) for name, positions in marks.items()})
            self.lifecycle.move(RuntimeState.RUNNING)
            log.info("replicating", extra={"start": str(start) if start else "beginning"})
            await self._until_stopped(self._replicate_and_snapshot(start), stop)
        except HeadraceError as exc:
            self.progress.last_error = str(exc)
            self.lifecycle.move(RuntimeState.FAILED, str(exc))
            log.error("pipeline failed", extra={"error": str(exc)})
            raise
        except Exception as exc:
            # A bug: say where, with the traceback, rather than leave a bare exception to the caller.
            self.progress.last_error = f"internal error: {type(exc).__name__}: {exc}"
            self.lifecycle.move(RuntimeState.FAILED, self.progress.last_error)
            log.exception("pipeline failed on an internal error")
            raise
        finally:
            if self.lifecycle.state is not RuntimeState.FAILED:
                self.lifecycle.move(RuntimeState.STOPPING)
            for sink in self.sinks:
                with contextlib.suppress(Exception):
                    await sink.close()
            if self.lifecycle.state is RuntimeState.STOPPING:
                self.lifecycle.move(RuntimeState.STOPPED)

    @staticmethod
    async def _until_stopped(work: Coroutine[Any, Any, None], stop: asyncio.Event) -> None:
        task = asyncio.ensure_future(work)
        stopper = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pending in (task, stopper):
                if not pending.done():
                    pending.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await pending
        if task.done() and not task.cancelled():
            task.result()

    async def _open_sinks(self) -> None:
        for sink in self.sinks:
            await self._call(sink, "open", sink.open)

    def _make_lanes(self, committed: Mapping[str, Position | None]) -> None:
        """One lane per sink, from that sink's own checkpoint, with its own batch size."""
        for sink in self.sinks:
            policy = self.sink_batching.get(sink.name, self.batching)
            self.lanes[sink.name] = Lane(
                sink,
                functools.partial(Checkpoint, self.pipeline, self.node),
                max_events=policy.max_events,
                max_wait=policy.max_wait,
                limit=policy.max_events,
                committed=committed.get(sink.name),
                write=self._write_lane,
                catch_up=functools.partial(self._catch_up, sink.name),
                failing=functools.partial(self.sink_errors.__contains__, sink.name),
            )
            lag = functools.partial(self.sink_lag_seconds, sink.name)
            self.metrics.sink_lag_seconds.labels(**self._labels, sink=sink.name).set_function(lag)

    async def committed_marks(self) -> dict[str, dict[str, Position]]:
        """Per sink, every position committed for this pipeline (checkpoints and snapshot marks)."""
        marks = {}
        for sink in self.sinks:
            read = functools.partial(sink.committed_positions, self.pipeline)
            marks[sink.name] = await self._call(sink, "read checkpoint", read)
        return marks

    # -- data path -------------------------------------------------------------------------------

    async def _replicate_and_snapshot(self, start: Position | None) -> None:
        """Live capture and, beside it, the snapshot; live capture runs on after the snapshot ends."""
        if self.snapshot is None:
            await self._replicate(start)
            return
        tasks = {asyncio.ensure_future(self._replicate(start)), asyncio.ensure_future(self.snapshot.run())}
        try:
            # Returns when either fails (the other is cancelled below) or live capture ends.
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()
        finally:
            for task in tasks:
                if not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task

    async def _replicate(self, start: Position | None) -> None:
        """The lanes' tasks and the reader; returns or raises when any of them does."""
        lanes = {asyncio.ensure_future(lane.run()) for lane in self.lanes.values()}
        reader = asyncio.ensure_future(self._read(start))
        tasks: set[asyncio.Future[Any]] = {reader, *lanes}
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            if reader in done and isinstance(reader.exception(), SourceError):
                # Everything read before the error is valid: the lanes write it, then the error stands.
                drains = asyncio.ensure_future(asyncio.gather(*(lane.drain() for lane in self.lanes.values())))
                tasks.add(drains)
                waiting: set[asyncio.Future[Any]] = {drains, *lanes}
                await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                done = {task for task in tasks if task.done()}
            for task in sorted(done, key=lambda t: t is reader):  # a lane's own failure first
                task.result()
        finally:
            for task in tasks:
                if not task.done():
                    task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _read(self, start: Position | None) -> None:
        """Follow the source from ``start``; a retryable source error re-reads from what the lanes hold."""
        delays = Backoff(initial=self.backoff.initial, maximum=self.backoff.maximum, attempts=2**31).delays()
        position = start
        while True:
            try:
                await self._follow(position)
                return
            except SourceError as exc:
                self.metrics.decode_errors.labels(**self._labels, kind=type(exc).__name__).inc()
                if not exc.retryable:
                    raise
                delay = next(delays)
                self.progress.last_error = f"source: {exc}"
                log.warning("source unavailable, reading again", extra={"error": str(exc), "retry_in": delay})
                await asyncio.sleep(delay)
                position = self._reread_from()

    async def _follow(self, start: Position | None) -> None:
        limit = self.batching.max_events
        self._through = start
        if self.replicas is not None:
            self.replicas.held.clear()  # read again from the checkpoint: held changes come back
            self.replicas.refresh(self.replicas.marks)  # the ring before the first change is routed
        # The source decodes the next chunks while this batch is written: one batch ahead at most.
        async with ReadAhead(self.source.read(start), limit) as chunks:
            self._read_ahead = chunks
            try:
                await self._follow_chunks(chunks, start)
            finally:
                self._read_ahead = None

    async def _follow_chunks(self, chunks: ReadAhead, start: Position | None) -> None:
        entry_start = start or Position(0, 0)  # where to read again to see the current entry
        replicas = self.replicas
        async for chunk in chunks:
            events = chunk.events
            durable_at = chunk.durable_at or time.time()
            selected: list[ChangeEvent] = []
            if events:
                self._count(self.metrics.events_decoded, events)
                self.progress.pending_since(durable_at)
                if replicas is None:
                    selected = self.transform.events(events)
                else:
                    # The events of one entry are consecutive and share its end position.
                    for end, entry in itertools.groupby(events, key=_entry_end):
                        chosen = self.transform.events(entry)
                        if chosen:
                            selected += replicas.route(chosen, durable_at, entry_start)
                        entry_start = end
            position = chunk.position or self._through
            moved = position != self._through
            now = time.monotonic()
            if replicas is not None and now - self._replica_tick_at >= REPLICA_TICK_SECONDS:
                self._replica_tick_at = now
                held_from = replicas.hold_from()
                taken = await self._replica_tick()
                # Written after all, or dropped as covered: the checkpoint may move on.
                moved = moved or bool(taken) or replicas.hold_from() != held_from
                selected = taken + selected
            if selected or moved:
                cap = replicas.hold_from() if replicas is not None else None
                await self._offer(Piece(selected, position, cap, durable_at))
                self._through = position
            if chunk.position is not None:
                entry_start = chunk.position  # the next entry starts where this chunk ends
            self.progress.oldest_pending_durable = None

    async def _offer(self, piece: Piece) -> None:
        """Hand ``piece`` to every lane (a full one makes this wait, a failing one falls behind)."""
        for lane in self.lanes.values():
            await lane.offer(piece)

    def _reread_from(self) -> Position | None:
        """Where the reader starts again after a source error: the lowest position a lane accepted."""
        offered = [lane.offered for lane in self.lanes.values() if lane.attached]
        return lowest(offered) if offered else self._through

    async def _catch_up(self, sink: str, start: Position | None) -> AsyncIterator[Piece]:
        """A lane's own reader, from its own checkpoint: every selected change (replica dedup aside)."""
        source = self.source.fork()
        self.lanes[sink].watch_unread(source.unread_durable_at)
        reading = source.read(start)
        try:
            async for chunk in reading:
                selected = self.transform.events(chunk.events)
                yield Piece(selected, chunk.position, None, chunk.durable_at)
        finally:
            aclose = getattr(reading, "aclose", None)
            if aclose is not None:
                await aclose()

    async def _write_lane(self, lane: Lane, events: list[ChangeEvent], checkpoint: Checkpoint) -> None:
        """Write one lane's batch (or a watermark), then note the commit: progress, metrics, cleanup."""
        async with self._sink_locks[lane.name]:
            with tracer.start_as_current_span("headrace.batch") as span:
                span.set_attribute("headrace.events", len(events))
                await self._ensure_tables(events, [lane.sink])
                await self._write(lane.sink, events, checkpoint)
        if checkpoint.node == self.node:
            self._committed(lane, checkpoint.position, len(events))

    async def deliver(self, events: list[ChangeEvent], checkpoint: Checkpoint) -> None:
        """Write ``events`` with ``checkpoint`` to every sink (the snapshot's pages); stalls while a sink is down.

        The sinks write the batch at the same time, and it is delivered when every one of them
        holds it. A fatal error in one sink cancels the others' writes (their transactions roll
        back; a write that completes anyway is harmless, the sinks being idempotent).
        """
        with tracer.start_as_current_span("headrace.batch") as span:
            span.set_attribute("headrace.events", len(events))
            if len(self.sinks) == 1:
                await self._deliver_to(self.sinks[0], events, checkpoint)
                return
            writes = [asyncio.ensure_future(self._deliver_to(sink, events, checkpoint)) for sink in self.sinks]
            try:
                await asyncio.gather(*writes)
            finally:
                for write in writes:
                    if not write.done():
                        write.cancel()
                await asyncio.gather(*writes, return_exceptions=True)

    async def _deliver_to(self, sink: Sink, events: list[ChangeEvent], checkpoint: Checkpoint) -> None:
        async with self._sink_locks[sink.name]:
            await self._ensure_tables(events, [sink])
            await self._write(sink, events, checkpoint)

    async def _write(self, sink: Sink, events: list[ChangeEvent], checkpoint: Checkpoint) -> None:
        """Write one sink's share of a batch, retrying (stalled) until it holds it."""
        started = time.monotonic()
        own = self._for_sink(sink.name, events)
        with tracer.start_as_current_span("headrace.write") as write_span:
            write_span.set_attribute("headrace.sink", sink.name)
            write = functools.partial(self.writers[sink.name].write, Batch(own, checkpoint))
            letters = await self._stalling(sink, "write", write)
        elapsed = time.monotonic() - started
        self.metrics.batch_seconds.labels(**self._labels, sink=sink.name).observe(elapsed)
        self.metrics.batches.labels(**self._labels, sink=sink.name).inc()
        self._count_written(sink, own, letters)

    def _for_sink(self, sink: str, events: list[ChangeEvent]) -> list[ChangeEvent]:
        """The events of the tables ``sink`` receives (all of them without ``sinks[].tables``)."""
        receives = self.receives.get(sink)
        if receives is None or not events:
            return events
        tables = {(e.keyspace, e.table) for e in events}
        wanted = {t for t in tables if receives(*t)}
        if len(wanted) == len(tables):
            return events
        return [e for e in events if (e.keyspace, e.table) in wanted]

    def _committed(self, lane: Lane, position: Position, events: int) -> None:
        """A lane committed ``position``: the runtime's position is the lowest over its lanes."""
        now = time.monotonic()
        committed_by = {name: other.committed for name, other in self.lanes.items()}
        committed_by[lane.name] = position  # the lane notes it once this returns
        lowest_position = lowest(committed_by.values())
        self.progress.committed = lowest_position
        self.progress.last_commit_monotonic = now
        committed = max(other.events_committed + (events if other is lane else 0) for other in self.lanes.values())
        if committed != self.progress.events_committed:
            self.progress.events_committed = committed
            self.progress.rate_window.append((now, committed))
        if not self.sink_errors:
            self.progress.last_error = None
        self.metrics.sink_committed_offset.labels(**self._labels, sink=lane.name).set(position.offset)
        self.metrics.sink_committed_segment.labels(**self._labels, sink=lane.name).set(position.segment_id)
        if lowest_position is not None:
            self.metrics.committed_segment.labels(**self._labels).set(lowest_position.segment_id)
            self.metrics.committed_offset.labels(**self._labels).set(lowest_position.offset)
        self._cleanup(committed_by)

    async def _replica_tick(self) -> list[ChangeEvent]:
        """Publish this runtime's watermark, read the others', and settle the held changes they cover."""
        replicas = self.replicas
        assert replicas is not None
        replicas.refresh(watermarks(await self._working_marks()))
        own = replicas.own_watermark(self.lag_seconds())
        if own is not None:
            host, mark = own
            # After the data before it, in each sink: a watermark never vouches for what a sink lacks.
            await self._offer(
                Piece((), None, None, None, Checkpoint(self.pipeline, watermark_key(host), mark.position()))
            )
        taken = replicas.resolve()
        counts = replicas.counts
        for disposition in ("written", "taken_over", "held", "covered"):
            series = self.metrics.replica_events.labels(**self._labels, disposition=disposition)
            series.inc(counts[disposition] - self._replica_counted.get(disposition, 0))
            self._replica_counted[disposition] = counts[disposition]
        self.metrics.replica_held.labels(**self._labels).set(len(replicas.held))
        return taken

    async def _working_marks(self) -> dict[str, dict[str, Position]]:
        """Committed marks of the sinks that are working and keep pace, one bounded call each.

        A sink that is down or fell behind is left out rather than waited for: its lane re-reads
        every change from its own checkpoint (replica dedup aside), so it misses nothing.
        """
        marks = {}
        for sink in self.sinks:
            lane = self.lanes.get(sink.name)
            if sink.name in self.sink_errors or (lane is not None and not lane.attached):
                continue
            read = functools.partial(sink.committed_positions, self.pipeline)
            try:
                marks[sink.name] = await bounded(read, self.backoff.call_timeout, f"sink {sink.name}: read marks")
            except HeadraceError as error:
                if not error.retryable:
                    raise
                self._failed_attempt(sink, "read marks", error, ())
        return marks

    def _count(self, counter: Any, events: Sequence[ChangeEvent], **labels: str) -> None:
        """Add ``events`` to a per-table, per-op counter: one increment per series, not per event."""
        for (keyspace, table, op), n in Counter(map(_TABLE_AND_OP, events)).items():
            counter.labels(**self._labels, **labels, table=f"{keyspace}.{table}", op=op).inc(n)

    def _count_written(self, sink: Sink, events: Sequence[ChangeEvent], letters: Sequence[DeadLetter]) -> None:
        """Written counts only what the sink holds; dead letters count apart, per table."""
        if not letters:
            self._count(self.metrics.events_written, events, sink=sink.name)
            return
        rejected = {id(letter.event) for letter in letters}
        self._count(self.metrics.events_written, [e for e in events if id(e) not in rejected], sink=sink.name)
        for table, n in Counter(letter.event.qualified_table for letter in letters).items():
            self.metrics.events_dead_lettered.labels(**self._labels, table=table, sink=sink.name).inc(n)
        self.progress.events_dead_lettered += len(letters)

    async def _ensure_tables(self, events: list[ChangeEvent], sinks: Sequence[Sink]) -> None:
        """Create each batch table in ``sinks``, again whenever its columns changed (ADD COLUMN)."""
        for keyspace, table in sorted(set(map(_TABLE, events))):
            source_schema = self.source.schema(keyspace, table)
            cached = self._sink_schemas.get((keyspace, table))
            if cached is None or cached[0] is not source_schema:
                # A new schema object means the registry refreshed it: transform it (once) again.
                transformed = self.transform.table(source_schema)
                shape = tuple((c.name, c.type.cql()) for c in transformed.columns) if transformed else ()
                cached = (source_schema, transformed, shape)
                self._sink_schemas[(keyspace, table)] = cached
            _, schema, shape = cached
            if schema is None:
                continue
            for sink in sinks:
                key = (sink.name, schema.qualified_name, shape)
                if key in self._tables_ready:
                    continue
                receives = self.receives.get(sink.name)
                if receives is not None and not receives(keyspace, table):
                    continue
                await self._call(sink, "create table", functools.partial(sink.ensure_table, schema))
                self._tables_ready.add(key)

    def _cleanup(self, committed: Mapping[str, Position | None]) -> None:
        chosen = consumed(self.source.backlog(), committed)
        removed = delete_segments(chosen)
        if removed:
            self.metrics.segments_deleted.labels(**self._labels).inc(removed)
        reclaimed = sum(1 for segment in chosen if segment.reclaimable and not segment.log.exists())
        if reclaimed:
            # Left behind by a graceful Cassandra stop, proved empty (docs/commitlog.md).
            self.metrics.segments_reclaimed.labels(**self._labels).inc(reclaimed)

    def lag_seconds(self, now: float | None = None) -> float:
        """Age of the oldest change durable in the commitlog but not yet committed in every sink (0: caught up).

        The oldest change is either read and waiting for its batch to commit, decoded ahead and
        waiting for its turn, or not read yet (a backlog the source has not reached); all count,
        so lag keeps growing during a drain.
        """
        times = [self._unread_durable_at(), *(lane.oldest_durable_at() for lane in self.lanes.values())]
        return _age_of_oldest(times, now)

    def sink_lag_seconds(self, sink: str, now: float | None = None) -> float:
        """Lag as one sink sees it: the oldest change durable in the commitlog and not committed in it."""
        lane = self.lanes.get(sink)
        return _age_of_oldest([self._unread_durable_at(), lane.oldest_durable_at() if lane is not None else None], now)

    def _unread_durable_at(self) -> float | None:
        """The oldest change the reader has not handed to the lanes: being offered, decoded ahead, unread."""
        ahead = self._read_ahead.oldest_durable_at() if self._read_ahead is not None else None
        known = [t for t in (self.progress.oldest_pending_durable, ahead, self.source.unread_durable_at()) if t]
        return min(known) if known else None

    # -- failures --------------------------------------------------------------------------------

    def stuck_sinks(self, now: float | None = None) -> list[str]:
        """Why sinks are not ready: their last failure, or a call running past ``STUCK_AFTER_SECONDS``."""
        now = time.monotonic() if now is None else now
        reasons = []
        for sink in self.sinks:
            if sink.name in self.in_flight:
                what, since = self.in_flight[sink.name]
                if now - since >= STUCK_AFTER_SECONDS:
                    reasons.append(
                        f"sink {sink.name}: {what} running for {now - since:.0f} s "
                        f"(timeout {self.backoff.call_timeout:g} s)"
                    )
                    continue
            if sink.name in self.sink_errors:
                reasons.append(self.sink_errors[sink.name])
        return reasons

    def _failed_attempt(self, sink: Sink, what: str, error: HeadraceError, events: Sequence[ChangeEvent]) -> None:
        """Report a failed attempt that will be retried, as it happens: metrics, readiness, log with the cause."""
        self.metrics.retries.labels(**self._labels, sink=sink.name).inc()
        for table, n in Counter(e.qualified_table for e in events).items():
            self.metrics.events_failed.labels(**self._labels, table=table, sink=sink.name).inc(n)
        health = sink.health()
        health.retries += 1
        health.last_error = type(error).__name__
        self.progress.last_error = self.sink_errors[sink.name] = f"sink {sink.name}: {what} failed: {error}"
        log.warning(
            "sink call failed, retrying",
            extra={"sink": sink.name, "operation": what, "error": str(error), "events": len(events)},
        )

    async def _call(self, sink: Sink, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """A sink call other than a write: each attempt bounded and reported, retried until it succeeds."""

        async def once() -> T:
            try:
                return await bounded(call, self.backoff.call_timeout, f"sink {sink.name}: {what}")
            except HeadraceError as error:
                if error.retryable:
                    self._failed_attempt(sink, what, error, ())
                raise

        return await self._stalling(sink, what, lambda: retrying(once, self.backoff))

    async def _stalling(self, sink: Sink, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """Await ``call()`` (which retries a while by itself) until it succeeds: a sink outage stalls, never drops.

        Each time a round of retries runs out, the runtime is STALLED, waits the backoff's
        longest delay and starts another round. Fatal errors propagate.
        """
        while True:
            self.in_flight[sink.name] = (what, time.monotonic())
            try:
                result = await call()
            except SinkError as exc:
                if not exc.retryable:
                    raise
                self.progress.last_error = self.sink_errors[sink.name] = f"sink {sink.name}: {what} failed: {exc}"
                if self.lifecycle.state is RuntimeState.RUNNING:
                    self.lifecycle.move(RuntimeState.STALLED, self.progress.last_error)
                log.warning(
                    "sink unavailable, stalled",
                    extra={"sink": sink.name, "operation": what, "error": str(exc), "retry_in": self.backoff.maximum},
                )
                self.in_flight.pop(sink.name, None)
                await asyncio.sleep(self.backoff.maximum)
                continue
            finally:
                self.in_flight.pop(sink.name, None)
            self.sink_errors.pop(sink.name, None)
            if self.lifecycle.state is RuntimeState.STALLED and not self.sink_errors:
                self.lifecycle.move(RuntimeState.RUNNING)
            return result
