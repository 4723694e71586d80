"""The data path of one runtime: source -> transforms -> batches -> sinks -> checkpoint -> cleanup.

One runtime serves one Cassandra node. It restarts from the lowest position
committed over its sinks, so a crash anywhere re-delivers (the sinks make
that harmless) and never skips. Sinks advance in lockstep: a batch is
written to every sink before the next one is read, so one sink's outage
stalls the pipeline, which retries with backoff, stops deleting segments and
reports the growing backlog; nothing is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from opentelemetry import trace

from pipeline_runtime.cql.schema import TableSchema
from pipeline_runtime.errors import HeadraceError, SinkError, SourceError
from pipeline_runtime.events import ChangeEvent, Position
from pipeline_runtime.observability.metrics import Metrics
from pipeline_runtime.pipeline.cleanup import consumed, delete_segments
from pipeline_runtime.pipeline.lifecycle import Lifecycle, RuntimeState
from pipeline_runtime.pipeline.protocols import ChangeSource, EventTransform
from pipeline_runtime.sinks.base import Batch, Checkpoint, Sink
from pipeline_runtime.sinks.deadletter import DeadLetterStore
from pipeline_runtime.sinks.retry import Backoff, retrying
from pipeline_runtime.sinks.writer import BatchWriter

log = logging.getLogger(__name__)
tracer = trace.get_tracer("headrace.pipeline")
T = TypeVar("T")
DEFAULT_BACKOFF = Backoff()


@dataclass(frozen=True)
class BatchPolicy:
    """When a batch is written: ``max_events`` reached or ``max_wait`` seconds since its first event."""

    max_events: int = 1000
    max_wait: float = 1.0


@dataclass
class Progress:
    """What the runtime knows of its own progress, for status reports and /readyz."""

    committed: Position | None = None
    last_commit_monotonic: float | None = None
    #: Writetime (µs) of the oldest event read but not yet committed.
    oldest_pending_writetime: int | None = None
    events_committed: int = 0
    last_error: str | None = None
    rate_window: list[tuple[float, int]] = field(default_factory=list)

    def events_per_second(self, now: float) -> float:
        """Committed events per second over the last minute."""
        self.rate_window = [(t, n) for t, n in self.rate_window if now - t <= 60]
        if len(self.rate_window) < 2:
            return 0.0
        (t0, n0), (t1, n1) = self.rate_window[0], self.rate_window[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0

    def lag_seconds(self) -> float:
        """Age of the oldest change not yet in every sink (0 when caught up)."""
        if self.oldest_pending_writetime is None:
            return 0.0
        return max(0.0, time.time() - self.oldest_pending_writetime / 1e6)


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
    ) -> None:
        self.pipeline = pipeline
        self.node = node
        self.source = source
        self.transform = transform
        self.sinks = list(sinks)
        self.metrics = metrics
        self.batching = batching
        self.backoff = backoff
        self.writers = {sink.name: BatchWriter(sink, dead_letters, backoff) for sink in self.sinks}
        self._retries_seen: dict[str, int] = {}
        #: Per table: the source schema last seen, its sink-side form and column shape.
        self._sink_schemas: dict[
            tuple[str, str], tuple[TableSchema, TableSchema | None, tuple[tuple[str, str], ...]]
        ] = {}
        #: Sinks that failed their last operation, with why: the runtime is not ready while any is here.
        self.sink_errors: dict[str, str] = {}
        self.lifecycle = Lifecycle()
        self.progress = Progress()
        self._tables_ready: set[tuple[str, str, tuple[tuple[str, str], ...]]] = set()
        self._labels = {"pipeline": pipeline, "node": node}

    # -- lifecycle -------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Replicate until ``stop`` is set; raises on a fatal error after recording it."""
        try:
            await self._until_stopped(self._open_sinks(), stop)
            if stop.is_set():
                return
            start = await self._start_position()
            self.progress.committed = start
            self.lifecycle.move(RuntimeState.RUNNING)
            log.info("replicating", extra={"start": str(start) if start else "beginning"})
            await self._until_stopped(self._replicate(start), stop)
        except HeadraceError as exc:
            self.progress.last_error = str(exc)
            self.lifecycle.move(RuntimeState.FAILED, str(exc))
            log.error("pipeline failed", extra={"error": str(exc)})
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
            await self._with_retry(sink, "open", functools.partial(self._retrying, sink, sink.open))

    async def _start_position(self) -> Position | None:
        """The lowest position committed for this node over all sinks (None: from the start)."""
        positions: list[Position | None] = []
        for sink in self.sinks:
            read = functools.partial(sink.committed_positions, self.pipeline)
            committed = await self._with_retry(sink, "read checkpoint", functools.partial(self._retrying, sink, read))
            positions.append(committed.get(self.node))
        if any(p is None for p in positions):
            return None
        return min(p for p in positions if p is not None)

    # -- data path -------------------------------------------------------------------------------

    async def _replicate(self, start: Position | None) -> None:
        pending: list[ChangeEvent] = []
        pending_position: Position | None = None
        dirty_since: float | None = None  # when the first uncommitted event or position move arrived
        try:
            async for chunk in self.source.read(start):
                now = time.monotonic()
                for event in chunk.events:
                    self.metrics.events_decoded.labels(**self._labels, table=event.qualified_table, op=event.op).inc()
                    selected = self.transform.event(event)
                    if selected is None:
                        continue
                    pending.append(selected)
                    stamp = selected.max_timestamp
                    if self.progress.oldest_pending_writetime is None or stamp < self.progress.oldest_pending_writetime:
                        self.progress.oldest_pending_writetime = stamp
                if chunk.position is not None and chunk.position != self.progress.committed:
                    pending_position = chunk.position
                    dirty_since = now if dirty_since is None else dirty_since
                if pending_position is None or dirty_since is None:
                    continue
                if len(pending) >= self.batching.max_events or now - dirty_since >= self.batching.max_wait:
                    await self._commit(pending, pending_position)
                    pending, pending_position, dirty_since = [], None, None
        except SourceError as exc:
            # Everything read before the damage is valid: deliver it, then stop at the damage.
            self.metrics.decode_errors.labels(**self._labels, kind=type(exc).__name__).inc()
            if pending_position is not None:
                await self._commit(pending, pending_position)
            raise

    async def _commit(self, events: list[ChangeEvent], position: Position) -> None:
        with tracer.start_as_current_span("headrace.batch") as span:
            span.set_attribute("headrace.events", len(events))
            await self._ensure_tables(events)
            checkpoint = Checkpoint(self.pipeline, self.node, position)
            for sink in self.sinks:
                started = time.monotonic()
                with tracer.start_as_current_span("headrace.write") as write_span:
                    write_span.set_attribute("headrace.sink", sink.name)
                    batch = Batch(events, checkpoint)
                    dead = await self._with_retry(
                        sink, "write", functools.partial(self.writers[sink.name].write, batch), events
                    )
                if dead:
                    self.metrics.events_dead_lettered.labels(**self._labels, table="*", sink=sink.name).inc(dead)
                self.metrics.batch_seconds.labels(**self._labels, sink=sink.name).observe(time.monotonic() - started)
                self.metrics.batches.labels(**self._labels, sink=sink.name).inc()
                for event in events:
                    self.metrics.events_written.labels(
                        **self._labels, table=event.qualified_table, sink=sink.name, op=event.op
                    ).inc()
        now = time.monotonic()
        self.progress.committed = position
        self.progress.last_commit_monotonic = now
        self.progress.oldest_pending_writetime = None
        self.progress.events_committed += len(events)
        self.progress.rate_window.append((now, self.progress.events_committed))
        self.progress.last_error = None
        self.metrics.committed_segment.labels(**self._labels).set(position.segment_id)
        self.metrics.committed_offset.labels(**self._labels).set(position.offset)
        self.metrics.lag_seconds.labels(**self._labels).set(0)
        self._cleanup(position)

    async def _ensure_tables(self, events: list[ChangeEvent]) -> None:
        """Create each batch table in each sink, again whenever its columns changed (ADD COLUMN)."""
        for keyspace, table in sorted({(e.keyspace, e.table) for e in events}):
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
            for sink in self.sinks:
                key = (sink.name, schema.qualified_name, shape)
                if key in self._tables_ready:
                    continue
                create = functools.partial(sink.ensure_table, schema)
                await self._with_retry(sink, "create table", functools.partial(self._retrying, sink, create))
                self._tables_ready.add(key)

    def _cleanup(self, committed: Position) -> None:
        removed = delete_segments(consumed(self.source.backlog(), {s.name: committed for s in self.sinks}))
        if removed:
            self.metrics.segments_deleted.labels(**self._labels).inc(removed)

    # -- failures --------------------------------------------------------------------------------

    async def _retrying(self, sink: Sink, call: Callable[[], Awaitable[T]]) -> T:
        """One round of the sink's own capped, jittered retries."""
        return await retrying(call, self.backoff, on_retry=lambda error, delay: self._count_retry(sink))

    def _count_retry(self, sink: Sink) -> None:
        self.metrics.retries.labels(**self._labels, sink=sink.name).inc()

    async def _with_retry(
        self, sink: Sink, what: str, call: Callable[[], Awaitable[T]], events: Sequence[ChangeEvent] = ()
    ) -> T:
        """Await ``call()`` (which retries a while by itself) until it succeeds: a sink outage stalls, never drops.

        Each time a round of retries runs out, the runtime is STALLED, reports why, waits the
        backoff's longest delay and starts another round. Fatal errors propagate. The ``events``
        of a failed write round count in ``headrace_events_failed`` (they are written later).
        """
        while True:
            try:
                result = await call()
            except SinkError as exc:
                if not exc.retryable:
                    raise
                self.progress.last_error = f"sink {sink.name}: {what} failed: {exc}"
                self.sink_errors[sink.name] = self.progress.last_error
                for event in events:
                    self.metrics.events_failed.labels(**self._labels, table=event.qualified_table, sink=sink.name).inc()
                if self.lifecycle.state is RuntimeState.RUNNING:
                    self.lifecycle.move(RuntimeState.STALLED, self.progress.last_error)
                log.warning(
                    "sink unavailable, stalled",
                    extra={"sink": sink.name, "operation": what, "error": str(exc), "retry_in": self.backoff.maximum},
                )
                await asyncio.sleep(self.backoff.maximum)
                continue
            finally:
                self._sync_write_retries(sink)
            self.sink_errors.pop(sink.name, None)
            if self.lifecycle.state is RuntimeState.STALLED and not self.sink_errors:
                self.lifecycle.move(RuntimeState.RUNNING)
            return result

    def _sync_write_retries(self, sink: Sink) -> None:
        """Writes retry inside ``BatchWriter``, which counts on the sink's health: mirror that in metrics."""
        seen = self._retries_seen.get(sink.name, 0)
        now = sink.health().retries
        if now > seen:
            self.metrics.retries.labels(**self._labels, sink=sink.name).inc(now - seen)
            self._retries_seen[sink.name] = now
