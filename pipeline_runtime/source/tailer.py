"""Following one node's cdc_raw directory: segments in id order, up to what each idx says is durable.

``CdcRawTailer.poll`` does one bounded step synchronously (list the folder,
read idx files, read and decode at most ``max_entries`` entries) so the
caller can run it in a worker thread; ``CdcRawSource`` wraps it as an async
iterator of batches. Nothing here deletes a file: cleanup belongs to the
checkpoint, which learns from ``SourceBatch.completed_segment`` when a
segment has been read to its end.

Delivery is at least once: a restart from a committed position re-reads
the entries after it (entries ending at or before it are skipped).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from enum import Enum, StrEnum
from pathlib import Path

from pipeline_runtime.cql.schema import TableSchema
from pipeline_runtime.events import ChangeEvent, Position, SourcePosition
from pipeline_runtime.source.cdc_index import IndexPending, IndexState, probe_index
from pipeline_runtime.source.claim import CdcRawClaim
from pipeline_runtime.source.commitlog.descriptor import SEGMENT_NAME, SegmentName
from pipeline_runtime.source.commitlog.fast import Decoder, mutation_decoder
from pipeline_runtime.source.commitlog.mutation import DecodeStats
from pipeline_runtime.source.commitlog.segment import Entry, ReaderState, SegmentReader
from pipeline_runtime.source.errors import (
    CdcRawUnavailableError,
    DecodeError,
    IndexFileError,
    MutationDecodeError,
    SchemaError,
    SegmentError,
    SourceError,
)
from pipeline_runtime.source.orphans import SETTLE_SECONDS, OrphanFacts, holds_no_entries, may_reclaim
from pipeline_runtime.source.schema.registry import SchemaRegistry


class SegmentPhase(Enum):
    """Where the tailer is with its current segment."""

    FOLLOWING = "following"  # idx not COMPLETED: more may come
    DRAINING = "draining"  # idx COMPLETED: read to its offset, then move on


@dataclass(slots=True)
class SourceBatch:
    """Events of consecutive entries, and the position after the last of them.

    ``position`` is what the pipeline commits once the events are written;
    ``completed_segment`` is set on the batch that finishes a COMPLETED
    segment, whose files may be deleted once every sink committed past it.
    """

    events: list[ChangeEvent]
    #: End offset of the last entry read (None only before anything was read).
    position: Position | None
    entries: int = 0
    completed_segment: SegmentName | None = None
    #: Wall-clock time (seconds since the epoch) at which these entries were durable in the commitlog:
    #: the modification time of the segment's ``_cdc.idx`` at the read whose offset first covered them
    #: (Cassandra rewrites the idx at each sync). None for batches without entries (heartbeats, ends of segments).
    durable_at: float | None = None


@dataclass
class SourceCounters:
    """What the source passed over or waited on, cumulative over the process; the runner exports them as metrics."""

    #: idx reads that found the file empty or half-written: the last offset was kept, read again at the next poll.
    index_not_ready: int = 0
    #: Segments passed over unread because they have no idx while a later one has: no CDC data was synced in them.
    segments_without_cdc: int = 0


@dataclass(slots=True)
class _Current:
    name: SegmentName
    reader: SegmentReader
    decoder: Decoder | None = None
    entries: Iterator[Entry] | None = None
    limit: int = 0
    phase: SegmentPhase = SegmentPhase.FOLLOWING
    #: idx mtime of the read that set ``limit``: when the entries up to it became durable.
    durable_at: float | None = None


@dataclass
class TailerSettings:
    """Bounds of one poll step."""

    #: Entries read and decoded per poll: bounds memory and the time a step holds a worker.
    max_entries: int = 2000
    #: Seconds between polls when nothing new is durable (Cassandra's sync period is the floor of latency).
    poll_interval: float = 0.05


class CdcRawTailer:
    """Reads one node's cdc_raw from a committed position onwards."""

    def __init__(
        self,
        cdc_raw: Path,
        node: str,
        registry: SchemaRegistry,
        start: Position | None = None,
        settings: TailerSettings | None = None,
        *,
        stats: DecodeStats | None = None,
        counters: SourceCounters | None = None,
    ) -> None:
        self.cdc_raw = cdc_raw
        self.node = node
        self.registry = registry
        self.start = start or Position(0, 0)
        self.settings = settings or TailerSettings()
        self.stats = stats if stats is not None else DecodeStats()
        self.counters = counters if counters is not None else SourceCounters()
        self._current: _Current | None = None
        #: Last segment fully read; lower ids are never looked at again.
        self._done_below = self.start.segment_id

    # -- discovery ------------------------------------------------------------------------

    def segments(self) -> list[SegmentName]:
        """cdc_raw segments not yet finished, in id order."""
        found: list[SegmentName] = []
        for name in _list(self.cdc_raw):
            match = SEGMENT_NAME.match(name)
            if match:
                segment = SegmentName(int(match.group(1)), int(match.group(2)))
                if segment.segment_id >= self._done_below:
                    found.append(segment)
        found.sort(key=lambda s: s.segment_id)
        return found

    def _index(self, segment: SegmentName) -> IndexState | IndexPending | None:
        """One read of the segment's idx; an empty or half-written one is ``IndexPending``, never an error."""
        path = self.cdc_raw / segment.index_name
        try:
            return probe_index(path)
        except OSError as exc:
            raise IndexFileError(f"{path}: cannot read: {exc}") from exc

    # -- stepping -------------------------------------------------------------------------

    def poll(self) -> SourceBatch | None:
        """One bounded step; None when nothing new is durable yet (or the idx is caught mid-rewrite)."""
        while True:
            current = self._current or self._open_next()
            if current is None:
                return None
            if current.entries is not None:
                batch = self._drain(current)
                if batch is not None:
                    return batch
            state = self._index(current.name)
            if state is None:
                # The files were removed under us (by an operator): nothing more can come from it.
                return self._finish(current)
            if isinstance(state, IndexPending):
                # Cassandra is rewriting it: the last offset read stays valid; look again at the next poll.
                self.counters.index_not_ready += 1
                return None
            if state.offset > current.limit and current.reader.state is not ReaderState.ENDED:
                current.limit = state.offset
                current.durable_at = state.mtime
                current.phase = SegmentPhase.DRAINING if state.completed else SegmentPhase.FOLLOWING
                current.entries = current.reader.read(current.limit)
                continue
            if state.completed:
                return self._finish(current)
            return None

    def unread_durable_at(self) -> float | None:
        """When the oldest entry that is durable but not yet returned by ``poll`` became durable (None: none known).

        The idx mtime of the read that covered the entries still queued in the
        current segment, else of the first segment whose idx goes beyond what
        was read. A cheap estimate for lag while a backlog drains: one listing
        and a few idx reads, nothing decoded.
        """
        current = self._current
        if current is not None and current.entries is not None:
            return current.durable_at
        try:
            segments = self.segments()
        except CdcRawUnavailableError:
            return None
        for segment in segments:
            try:
                state = self._index(segment)
            except IndexFileError:
                continue
            if not isinstance(state, IndexState):
                continue
            read_to = current.limit if current is not None and current.name == segment else 0
            if state.offset > read_to:
                return state.mtime
        return None

    def _open_next(self) -> _Current | None:
        segments = self.segments()
        for i, segment in enumerate(segments):
            if not (self.cdc_raw / segment.index_name).exists():
                if any((self.cdc_raw / s.index_name).exists() for s in segments[i + 1 :]):
                    # No CDC data was ever synced in it and Cassandra has moved on: nothing to read.
                    self._done_below = segment.segment_id + 1
                    self.counters.segments_without_cdc += 1
                    continue
                return None
            reader = SegmentReader(self.cdc_raw / segment.log_name)
            try:
                header = reader.read_header()
            except FileNotFoundError:
                # Deleted under us (by an operator) after the listing: the next poll lists again.
                return None
            except OSError as exc:
                raise CdcRawUnavailableError(f"{reader.path}: cannot read: {exc}") from exc
            decoder = mutation_decoder(self.registry.plan, header.messaging_version, self.stats)
            self._current = _Current(segment, reader, decoder)
            return self._current
        return None

    def _finish(self, current: _Current) -> SourceBatch:
        """The segment is read to its COMPLETED offset: report it, and never look below it again."""
        self._done_below = current.name.segment_id + 1
        self._current = None
        end = max(current.reader.position, current.limit)
        return SourceBatch([], Position(current.name.segment_id, end), 0, completed_segment=current.name)

    def _drain(self, current: _Current) -> SourceBatch | None:
        decoder = current.decoder
        entries = current.entries
        assert decoder is not None and entries is not None
        events: list[ChangeEvent] = []
        count = 0
        last_end = -1
        skip_until = self.start.offset if current.name.segment_id == self.start.segment_id else -1
        try:
            for entry in entries:
                if entry.end > skip_until:
                    source = SourcePosition(self.node, Position(entry.segment_id, entry.end))
                    try:
                        decoded = decoder.decode(entry.body, source)
                    except DecodeError as exc:
                        raise MutationDecodeError(current.reader.name, entry.start, str(exc)) from exc
                    except SourceError:
                        # SchemaError (the schema may catch up), SchemaUnavailableError (system_schema
                        # unreachable): this entry is read again next time, never skipped.
                        current.entries = itertools.chain((entry,), entries)
                        if count == 0:
                            raise
                        return SourceBatch(
                            events, Position(current.name.segment_id, last_end), count, durable_at=current.durable_at
                        )
                    events.extend(decoded)
                last_end = entry.end
                count += 1
                if count >= self.settings.max_entries:
                    break
            else:
                current.entries = None
        except SegmentError as exc:
            if count == 0:
                raise
            # Deliver what came before the damage first; the error comes on the next poll.
            current.entries = _Failing(exc)
        except OSError as exc:
            if count == 0:
                raise CdcRawUnavailableError(f"{current.reader.path}: cannot read: {exc}") from exc
            current.entries = _Failing(CdcRawUnavailableError(f"{current.reader.path}: cannot read: {exc}"))
        if count == 0:
            return None
        return SourceBatch(events, Position(current.name.segment_id, last_end), count, durable_at=current.durable_at)


class _Failing:
    """An entry iterator that raises ``error``: the damage found after a delivered batch."""

    def __init__(self, error: SegmentError | CdcRawUnavailableError) -> None:
        self.error = error

    def __iter__(self) -> _Failing:
        return self

    def __next__(self) -> Entry:
        raise self.error


def _list(cdc_raw: Path) -> list[str]:
    """File names in cdc_raw; none when it does not exist (yet); other failures are retryable source errors."""
    try:
        return os.listdir(cdc_raw)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise CdcRawUnavailableError(f"cdc_raw {cdc_raw}: cannot list: {exc}") from exc


class IndexStatus(StrEnum):
    """How a segment's ``_cdc.idx`` read when the backlog was taken."""

    READ = "read"
    #: No idx file: no CDC data synced in the segment yet (or ever).
    MISSING = "missing"
    #: The file exists but held no offset at this read (mid-rewrite) or could not be read: state unknown.
    UNREADABLE = "unreadable"


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    """One cdc_raw segment as cleanup and backlog reporting see it."""

    segment_id: int
    log: Path
    index: Path
    #: Durable offset from the idx file (0 when it has none, or it could not be read).
    durable_offset: int
    completed: bool
    #: Bytes the segment holds in cdc_raw: its log and, when there is one, its idx.
    size: int
    index_status: IndexStatus = IndexStatus.READ
    #: Provably empty and no longer written by Cassandra (``orphans``): deletable without any commit.
    reclaimable: bool = False
    #: mtime of the idx at this read: when Cassandra last synced the segment (None without an idx state).
    durable_at: float | None = None


def unread_bytes(backlog: Sequence[SegmentInfo], committed: Position | None) -> int:
    """Bytes of CDC data in cdc_raw past ``committed`` (what the sinks still have to take).

    A segment without an idx holds no CDC data Cassandra synced (it may get
    some while Cassandra runs, which the next count sees); one whose idx
    could not be read counts whole. Zero means a node whose Cassandra is gone
    is drained, even when Cassandra left segments without CDC data behind (a
    clean shutdown keeps its last segments, hard links included).
    """
    total = 0
    for segment in backlog:
        if segment.index_status is IndexStatus.MISSING:
            continue
        if segment.index_status is IndexStatus.UNREADABLE:
            total += segment.size
            continue
        if committed is None or segment.segment_id > committed.segment_id:
            done = 0
        elif segment.segment_id == committed.segment_id:
            done = committed.offset
        else:
            done = segment.durable_offset
        total += max(0, segment.durable_offset - done)
    return total


class CdcRawSource:
    """One node's change stream: async batches read from cdc_raw after a committed position.

    Decoding runs in a worker thread (``asyncio.to_thread``), one bounded
    step at a time, so the event loop is never starved. When idle it yields
    an empty batch every ``idle_heartbeat`` seconds so partial batches
    downstream still flush on time.

    An empty or half-written ``_cdc.idx`` never ends ``read``: the tailer keeps
    the last offset and looks again at the next poll. ``read`` raises only
    ``SourceError``: those with ``retryable`` True (``IndexFileError``,
    ``CdcRawUnavailableError``) may be retried by calling ``read`` again from
    the committed position; the others (segment damage, decode and schema
    errors, cdc_raw claimed by another runtime) are fatal. With a ``claim``,
    nothing is read before this runtime holds cdc_raw alone (``claim``).
    """

    def __init__(
        self,
        cdc_raw: Path,
        node: str,
        registry: SchemaRegistry,
        settings: TailerSettings | None = None,
        idle_heartbeat: float = 1.0,
        *,
        settle_seconds: float = SETTLE_SECONDS,
        claim: CdcRawClaim | None = None,
    ) -> None:
        self.cdc_raw = cdc_raw
        #: This runtime's exclusive claim on cdc_raw, taken before anything is read (None: not claimed).
        self.claim = claim
        self.node = node
        self.registry = registry
        self.settings = settings or TailerSettings()
        self.idle_heartbeat = idle_heartbeat
        #: A segment is reclaimable only once its link count has not changed for this long (orphans rule 5).
        self.settle_seconds = settle_seconds
        self.tailer: CdcRawTailer | None = None
        #: Decoder counts (skipped counter/view updates by reason), cumulative over every ``read``.
        self.decode_stats = DecodeStats()
        #: Source counts (idx reads caught mid-rewrite, segments passed over), cumulative over every ``read``.
        self.counters = SourceCounters()
        #: Rule-4 verdicts by (segment id, inode, size, mtime): a closed segment is read for it once.
        self._empty_verdicts: dict[tuple[int, int, int, int], bool] = {}

    async def read(self, start: Position | None) -> AsyncIterator[SourceBatch]:
        """Batches of events of entries ending after ``start``, forever."""
        tailer = CdcRawTailer(
            self.cdc_raw,
            self.node,
            self.registry,
            start,
            self.settings,
            stats=self.decode_stats,
            counters=self.counters,
        )
        self.tailer = tailer
        last = start
        idle_since = asyncio.get_running_loop().time()
        while True:
            if self.claim is not None and not self.claim.held:
                self.claim.take()  # raises when another runtime holds cdc_raw; False until it exists
            batch = await asyncio.to_thread(tailer.poll)
            now = asyncio.get_running_loop().time()
            if batch is not None:
                last = batch.position or last
                idle_since = now
                yield batch
                continue
            if now - idle_since >= self.idle_heartbeat:
                idle_since = now
                yield SourceBatch([], last)
            await asyncio.sleep(self.settings.poll_interval)

    def fork(self) -> CdcRawSource:
        """Another reader of this cdc_raw, with its own position and counts (a sink catching up).

        It shares the schema registry and takes no claim: it reads under this runtime's claim.
        """
        return CdcRawSource(
            self.cdc_raw,
            self.node,
            self.registry,
            self.settings,
            self.idle_heartbeat,
            settle_seconds=self.settle_seconds,
        )

    def unread_durable_at(self) -> float | None:
        """When the oldest durable entry not yet yielded by ``read`` became durable (seconds since the epoch).

        None when everything durable was yielded (or nothing is being read).
        With the runner's oldest uncommitted ``durable_at`` this gives lag
        while a backlog drains: now minus the older of the two.
        """
        tailer = self.tailer
        return tailer.unread_durable_at() if tailer is not None else None

    def schema(self, keyspace: str, table: str) -> TableSchema:
        """The table's current schema; refreshes once when it is unknown."""
        for attempt in range(2):
            for schema in self.registry.schemas.values():
                if schema.keyspace == keyspace and schema.name == table:
                    return schema
            if attempt == 0:
                self.registry.refresh()
        raise SchemaError(f"table {keyspace}.{table} is not in system_schema")

    def backlog(self) -> list[SegmentInfo]:
        """The segments now in cdc_raw, in id order, with their idx state; never raises.

        Every segment counts, whatever its idx says: one without an idx, or
        whose idx is caught mid-rewrite or unreadable, still holds its bytes.
        """
        try:
            names = _list(self.cdc_raw)
        except CdcRawUnavailableError:
            return []
        segments = sorted(
            (SegmentName(int(m.group(1)), int(m.group(2))) for m in map(SEGMENT_NAME.match, names) if m),
            key=lambda s: s.segment_id,
        )
        indexed = [s.segment_id for s in segments if (self.cdc_raw / s.index_name).exists()]
        newest_indexed = max(indexed) if indexed else None
        now = time.time()
        found: list[SegmentInfo] = []
        seen: set[tuple[int, int, int, int]] = set()
        for name in segments:
            path = self.cdc_raw / name.log_name
            index = self.cdc_raw / name.index_name
            try:
                stat = path.stat()
            except OSError:
                continue  # gone since the listing
            state: IndexState | IndexPending | None
            try:
                state = probe_index(index)
            except OSError:
                state = IndexPending()
            index_size = 0
            if state is not None:
                try:
                    index_size = index.stat().st_size
                except OSError:
                    index_size = 0
            facts = OrphanFacts(
                has_index=state is not None,
                links=stat.st_nlink,
                newer_segment=newest_indexed is not None and name.segment_id < newest_indexed,
                settled=now - stat.st_ctime >= self.settle_seconds,
            )
            key = (name.segment_id, stat.st_ino, stat.st_size, stat.st_mtime_ns)
            seen.add(key)

            def empty(path: Path = path, name: SegmentName = name, key: tuple[int, int, int, int] = key) -> bool:
                if key not in self._empty_verdicts:
                    self._empty_verdicts[key] = holds_no_entries(path, name.segment_id)
                return self._empty_verdicts[key]

            if isinstance(state, IndexState):
                status, offset, completed, durable_at = IndexStatus.READ, state.offset, state.completed, state.mtime
            else:
                status = IndexStatus.MISSING if state is None else IndexStatus.UNREADABLE
                offset, completed, durable_at = 0, False, None
            found.append(
                SegmentInfo(
                    name.segment_id,
                    path,
                    index,
                    offset,
                    completed,
                    stat.st_size + index_size,
                    status,
                    may_reclaim(facts, empty),
                    durable_at,
                )
            )
        for key in set(self._empty_verdicts) - seen:
            del self._empty_verdicts[key]
        return found
