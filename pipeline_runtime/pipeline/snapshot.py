"""The initial snapshot beside live capture: each table's token ranges, page by page, resumable.

Each page read through CQL becomes one batch of upserts carrying Cassandra's
own writetimes (``pipeline_runtime.source.snapshot``), written to every sink
with a *progress mark* as its checkpoint, in the same transaction where the
sink has one. A mark is an ordinary checkpoint whose node key names the
snapshot, the table and the token range (``range_key``) and whose position
says how far the range is written:

* ``Position(IN_PROGRESS, token)``: every partition with a token up to
  ``token`` is in the sink; a restart reads on from ``token > token``;
* ``Position(DONE, end)``: the whole range is in the sink.

Marks only grow, like checkpoints (an in-progress mark is below any done one),
so a replayed page never moves one back. When every range of a table is done
its table mark (``table_key``) is written, and the table is never read again
for the same ``generation``: ``initial`` for the first snapshot, the
``source.snapshot.request`` value for one asked for later.

The merge rule that makes snapshot pages and live changes commute, and the
cases it cannot cover, are in docs/snapshot.md.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from pipeline_runtime.checkpoint.positions import lowest_committed
from pipeline_runtime.config.status import TableSnapshotStatus
from pipeline_runtime.cql.schema import TableSchema
from pipeline_runtime.errors import SourceError
from pipeline_runtime.events import ChangeEvent, Position
from pipeline_runtime.observability.metrics import Metrics
from pipeline_runtime.pipeline.protocols import EventTransform
from pipeline_runtime.sinks.base import Checkpoint
from pipeline_runtime.sinks.retry import Backoff
from pipeline_runtime.source.snapshot import SnapshotPage, TokenRange

log = logging.getLogger(__name__)

#: ``Position.segment_id`` of a mark: the range is partly written, up to the token in ``offset``.
IN_PROGRESS = 0
#: ``Position.segment_id`` of a mark: the range (or, in a table mark, the table) is written.
DONE = 1
#: Generation of the first snapshot; a later one is named by ``source.snapshot.request``.
INITIAL = "initial"
#: Token ranges of one table read at the same time. Cassandra serves one page request on one thread,
#: so with one range at a time its share of the page is a wait nothing else fills; two keep a
#: request in flight while the other's page is converted and written (docs/snapshot.md, Speed).
RANGES_AT_ONCE = 2


def table_key(generation: str, node: str, table: str) -> str:
    """Checkpoint node key of a table's snapshot on one node."""
    return f"snapshot:{generation}:{node}:{table}"


def range_key(generation: str, node: str, table: str, token_range: TokenRange) -> str:
    """Checkpoint node key of one token range of that snapshot."""
    return f"{table_key(generation, node, table)}:{token_range.start}:{token_range.end}"


def resume_after(mark: Position | None, token_range: TokenRange) -> int | None:
    """Where a range's reading starts again: after the mark's token (None: from its start; DONE: never)."""
    if mark is None:
        return token_range.start
    if mark.segment_id >= DONE:
        return None
    return max(token_range.start, mark.offset)


class TableReader(Protocol):
    """Pages of one table's token ranges (``pipeline_runtime.source.snapshot.SnapshotReader``)."""

    def ranges(self) -> tuple[TokenRange, ...]:
        """The ranges this node reads."""
        ...

    def page(self, token_range: TokenRange, after: int | None, paging_state: bytes | None) -> SnapshotPage:
        """One page (blocking)."""
        ...

    def close(self) -> None:
        """Release the reader."""
        ...


#: Writes a page's events with its mark to every sink (the runner's one delivery path).
Deliver = Callable[[list[ChangeEvent], Checkpoint], Awaitable[None]]
#: Per sink: committed positions by node key, as the sinks hold them now.
ReadMarks = Callable[[], Awaitable[Mapping[str, Mapping[str, Position]]]]


@dataclass(frozen=True)
class SnapshotSettings:
    """``source.snapshot`` as the runner needs it."""

    generation: str = INITIAL
    rows_per_second: int = 0
    #: Pause between attempts of a table whose reading failed.
    backoff: Backoff = field(default_factory=lambda: Backoff(initial=1.0, maximum=60.0, attempts=2**31))


@dataclass
class TableProgress:
    """One table's snapshot in this runtime, for status, metrics and logs."""

    state: str = "pending"
    rows_read: int = 0
    ranges_done: int = 0
    ranges_total: int = 0
    started: float | None = None
    #: When the first page arrived: the read rate counts from there, as the throttle does.
    reading_since: float | None = None
    finished: float | None = None
    last_error: str | None = None

    def status(self, now: float) -> TableSnapshotStatus:
        elapsed = ((self.finished or now) - self.started) if self.started is not None else 0.0
        since = self.reading_since if self.reading_since is not None else self.started
        reading = ((self.finished or now) - since) if since is not None else 0.0
        rate = self.rows_read / reading if reading > 0 else 0.0
        eta = None
        if self.state == "done":
            eta = 0.0
        elif self.ranges_done and elapsed > 0:
            eta = elapsed * (self.ranges_total - self.ranges_done) / self.ranges_done
        return TableSnapshotStatus(
            state=self.state,
            rows_read=self.rows_read,
            ranges_done=self.ranges_done,
            ranges_total=self.ranges_total,
            rows_per_second=round(rate, 1),
            eta_seconds=None if eta is None else round(eta, 1),
            last_error=self.last_error,
        )


class Throttle:
    """Keeps rows read per second at most ``rate`` (0: no limit), measured from the first row."""

    def __init__(self, rate: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.clock = clock
        self.started: float | None = None
        self.rows = 0

    def wait_for(self, rows: int) -> float:
        """Seconds to wait after reading ``rows`` more rows."""
        now = self.clock()
        if self.started is None:
            self.started = now
        self.rows += rows
        if self.rate <= 0:
            return 0.0
        return max(0.0, self.started + self.rows / self.rate - now)


class SnapshotRun:
    """Snapshots the selected tables of one node, one table after another, beside live capture."""

    def __init__(
        self,
        *,
        pipeline: str,
        node: str,
        tables: Sequence[TableSchema],
        open_reader: Callable[[TableSchema], TableReader],
        transform: EventTransform,
        deliver: Deliver,
        read_marks: ReadMarks,
        metrics: Metrics,
        settings: SnapshotSettings = SnapshotSettings(),
    ) -> None:
        self.pipeline = pipeline
        self.node = node
        self.tables = sorted(tables, key=lambda t: t.qualified_name)
        self.open_reader = open_reader
        self.transform = transform
        self.deliver = deliver
        self.read_marks = read_marks
        self.metrics = metrics
        self.settings = settings
        self.throttle = Throttle(settings.rows_per_second)
        self.progress = {t.qualified_name: TableProgress() for t in self.tables}
        self._labels = {"pipeline": pipeline, "node": node}
        #: Pages of ranges read at the same time are written one at a time, each with its range's mark.
        self._delivering = asyncio.Lock()

    def status(self) -> dict[str, TableSnapshotStatus]:
        now = time.monotonic()
        return {name: p.status(now) for name, p in self.progress.items()}

    @property
    def running(self) -> bool:
        return any(p.state in ("pending", "running", "failed") for p in self.progress.values())

    async def run(self) -> None:
        """Snapshot every table not yet done for this generation; a failed table is retried with backoff."""
        for schema in self.tables:
            delays = self.settings.backoff.delays()
            while True:
                try:
                    await self._table(schema)
                    break
                except SourceError as exc:
                    # Cassandra down, a timeout storm, a table dropped: retried; sink errors are the runner's.
                    delay = next(delays)
                    progress = self.progress[schema.qualified_name]
                    progress.state, progress.last_error = "failed", str(exc)
                    log.warning(
                        "snapshot failed, retrying",
                        extra={"table": schema.qualified_name, "error": str(exc), "retry_in": delay},
                    )
                    await asyncio.sleep(delay)

    async def _table(self, schema: TableSchema) -> None:
        name = schema.qualified_name
        progress = self.progress[name]
        key = table_key(self.settings.generation, self.node, name)
        marks = lowest_committed(await self.read_marks())
        if (marks.get(key) or Position(IN_PROGRESS, 0)).segment_id >= DONE:
            progress.state = "done"
            log.info("snapshot already done", extra={"table": name, "generation": self.settings.generation})
            return
        reader = await asyncio.to_thread(self.open_reader, schema)
        try:
            ranges = reader.ranges()
            progress.ranges_total = len(ranges)
            keys = {r: range_key(self.settings.generation, self.node, name, r) for r in ranges}
            progress.ranges_done = sum(1 for r in ranges if resume_after(marks.get(keys[r]), r) is None)
            progress.state, progress.last_error = "running", None
            progress.started = progress.started or time.monotonic()
            self._export(name, progress)
            log.info(
                "snapshot started",
                extra={"table": name, "ranges": len(ranges), "ranges_done": progress.ranges_done},
            )
            left = [(r, after) for r in ranges if (after := resume_after(marks.get(keys[r]), r)) is not None]
            await self._ranges(reader, schema, left, keys, progress)
            async with self._delivering:
                await self.deliver([], Checkpoint(self.pipeline, key, Position(DONE, 0)))
        finally:
            await asyncio.to_thread(reader.close)
        progress.state, progress.finished = "done", time.monotonic()
        self._export(name, progress)
        log.info(
            "snapshot done",
            extra={
                "table": name,
                "rows": progress.rows_read,
                "seconds": round(progress.finished - (progress.started or 0), 1),
            },
        )

    async def _ranges(
        self,
        reader: TableReader,
        schema: TableSchema,
        left: list[tuple[TokenRange, int]],
        keys: Mapping[TokenRange, str],
        progress: TableProgress,
    ) -> None:
        """Read ``left`` (ranges and where each resumes), ``RANGES_AT_ONCE`` at a time; the first failure
        stops the others."""
        queue = iter(left)

        async def worker() -> None:
            for token_range, after in queue:  # shared: each worker takes the next range
                await self._range(reader, schema, token_range, after, keys[token_range], progress)

        workers = [asyncio.ensure_future(worker()) for _ in range(min(RANGES_AT_ONCE, len(left)))]
        try:
            await asyncio.gather(*workers)
        finally:
            for task in workers:
                if not task.done():
                    task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    async def _range(  # noqa: PLR0917 - one call site
        self,
        reader: TableReader,
        schema: TableSchema,
        token_range: TokenRange,
        after: int,
        key: str,
        progress: TableProgress,
    ) -> None:
        """Read one range page by page; the next page is fetched while this one is written."""
        name = schema.qualified_name
        fetch = asyncio.ensure_future(asyncio.to_thread(reader.page, token_range, after, None))
        mark = Position(IN_PROGRESS, after)
        try:
            while True:
                page = await fetch
                if progress.reading_since is None:
                    progress.reading_since = time.monotonic()
                if not page.last:
                    fetch = asyncio.ensure_future(asyncio.to_thread(reader.page, token_range, after, page.paging_state))
                if page.last:
                    mark = Position(DONE, token_range.end)
                elif page.complete_through is not None:
                    mark = Position(IN_PROGRESS, page.complete_through)
                events = self.transform.events(page.events)
                async with self._delivering:
                    await self.deliver(events, Checkpoint(self.pipeline, key, mark))
                progress.rows_read += page.rows
                self.metrics.snapshot_rows.labels(**self._labels, table=name).inc(page.rows)
                pause = self.throttle.wait_for(page.rows)
                if pause:
                    await asyncio.sleep(pause)
                if page.last:
                    progress.ranges_done += 1
                    self._export(name, progress)
                    self._log_progress(name, progress)
                    return
                self._export(name, progress)
        finally:
            if not fetch.done():
                fetch.cancel()

    def _log_progress(self, table: str, progress: TableProgress) -> None:
        """One line per range written: how far, how fast, how long still."""
        status = progress.status(time.monotonic())
        log.info(
            "snapshot progress",
            extra={
                "table": table,
                "ranges_done": status.ranges_done,
                "ranges_total": status.ranges_total,
                "rows": status.rows_read,
                "rows_per_second": status.rows_per_second,
                "eta_seconds": status.eta_seconds,
            },
        )

    def _export(self, table: str, progress: TableProgress) -> None:
        labels = {**self._labels, "table": table}
        self.metrics.snapshot_ranges.labels(**labels, state="done").set(progress.ranges_done)
        self.metrics.snapshot_ranges.labels(**labels, state="total").set(progress.ranges_total)
        if progress.started is not None:
            self.metrics.snapshot_seconds.labels(**labels).set(
                (progress.finished or time.monotonic()) - progress.started
            )
