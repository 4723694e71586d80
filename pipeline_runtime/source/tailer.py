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
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from pipeline_runtime.cql.schema import TableSchema
from pipeline_runtime.events import ChangeEvent, Position, SourcePosition
from pipeline_runtime.source.cdc_index import IndexState, read_index
from pipeline_runtime.source.commitlog.descriptor import SEGMENT_NAME, SegmentName
from pipeline_runtime.source.commitlog.fast import Decoder, mutation_decoder
from pipeline_runtime.source.commitlog.mutation import DecodeStats
from pipeline_runtime.source.commitlog.segment import Entry, ReaderState, SegmentReader
from pipeline_runtime.source.errors import DecodeError, IndexFileError, MutationDecodeError, SchemaError, SegmentError
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
    #: Wall-clock time (s since the epoch) at which this batch's data became durable in the commitlog.
    durable_at: float | None = None


@dataclass(slots=True)
class _Current:
    name: SegmentName
    reader: SegmentReader
    decoder: Decoder | None = None
    entries: Iterator[Entry] | None = None
    limit: int = 0
    phase: SegmentPhase = SegmentPhase.FOLLOWING


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
    ) -> None:
        self.cdc_raw = cdc_raw
        self.node = node
        self.registry = registry
        self.start = start or Position(0, 0)
        self.settings = settings or TailerSettings()
        self.stats = DecodeStats()
        self._current: _Current | None = None
        #: Last segment fully read; lower ids are never looked at again.
        self._done_below = self.start.segment_id

    # -- discovery ------------------------------------------------------------------------

    def segments(self) -> list[SegmentName]:
        """cdc_raw segments not yet finished, in id order."""
        found: list[SegmentName] = []
        try:
            names = [p.name for p in self.cdc_raw.iterdir()]
        except FileNotFoundError:
            return found
        for name in names:
            match = SEGMENT_NAME.match(name)
            if match:
                segment = SegmentName(int(match.group(1)), int(match.group(2)))
                if segment.segment_id >= self._done_below:
                    found.append(segment)
        found.sort(key=lambda s: s.segment_id)
        return found

    def _index(self, segment: SegmentName) -> IndexState | None:
        return read_index(self.cdc_raw / segment.index_name)

    # -- stepping -------------------------------------------------------------------------

    def poll(self) -> SourceBatch | None:
        """One bounded step; None when nothing new is durable yet."""
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
            if state.offset > current.limit and current.reader.state is not ReaderState.ENDED:
                current.limit = state.offset
                current.phase = SegmentPhase.DRAINING if state.completed else SegmentPhase.FOLLOWING
                current.entries = current.reader.read(current.limit)
                continue
            if state.completed:
                return self._finish(current)
            return None

    def _open_next(self) -> _Current | None:
        segments = self.segments()
        for i, segment in enumerate(segments):
            if self._index(segment) is None:
                if any((self.cdc_raw / s.index_name).exists() for s in segments[i + 1 :]):
                    # No CDC data was ever synced in it and Cassandra has moved on: nothing to read.
                    self._done_below = segment.segment_id + 1
                    continue
                return None
            reader = SegmentReader(self.cdc_raw / segment.log_name)
            header = reader.read_header()
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
                    except SchemaError:
                        # Retryable (the schema may catch up): this entry is read again next time.
                        current.entries = itertools.chain((entry,), entries)
                        if count == 0:
                            raise
                        return SourceBatch(events, Position(current.name.segment_id, last_end), count)
                    except DecodeError as exc:
                        raise MutationDecodeError(current.reader.name, entry.start, str(exc)) from exc
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
        if count == 0:
            return None
        return SourceBatch(events, Position(current.name.segment_id, last_end), count)


class _Failing:
    """An entry iterator that raises ``error``: the damage found after a delivered batch."""

    def __init__(self, error: SegmentError) -> None:
        self.error = error

    def __iter__(self) -> _Failing:
        return self

    def __next__(self) -> Entry:
        raise self.error


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    """One cdc_raw segment as cleanup and backlog reporting see it."""

    segment_id: int
    log: Path
    index: Path
    #: Durable offset from the idx file (0 when it has none yet).
    durable_offset: int
    completed: bool
    size: int


class CdcRawSource:
    """One node's change stream: async batches read from cdc_raw after a committed position.

    Decoding runs in a worker thread (``asyncio.to_thread``), one bounded
    step at a time, so the event loop is never starved. When idle it yields
    an empty batch every ``idle_heartbeat`` seconds so partial batches
    downstream still flush on time.
    """

    def __init__(
        self,
        cdc_raw: Path,
        node: str,
        registry: SchemaRegistry,
        settings: TailerSettings | None = None,
        idle_heartbeat: float = 1.0,
    ) -> None:
        self.cdc_raw = cdc_raw
        self.node = node
        self.registry = registry
        self.settings = settings or TailerSettings()
        self.idle_heartbeat = idle_heartbeat
        self.tailer: CdcRawTailer | None = None

    async def read(self, start: Position | None) -> AsyncIterator[SourceBatch]:
        """Batches of events of entries ending after ``start``, forever."""
        tailer = CdcRawTailer(self.cdc_raw, self.node, self.registry, start, self.settings)
        self.tailer = tailer
        last = start
        idle_since = asyncio.get_running_loop().time()
        while True:
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
        """The segments now in cdc_raw, in id order, with their idx state."""
        found: list[SegmentInfo] = []
        try:
            paths = list(self.cdc_raw.iterdir())
        except FileNotFoundError:
            return found
        for path in paths:
            match = SEGMENT_NAME.match(path.name)
            if not match:
                continue
            name = SegmentName(int(match.group(1)), int(match.group(2)))
            index = self.cdc_raw / name.index_name
            try:
                state = read_index(index)
                size = path.stat().st_size
            except (FileNotFoundError, IndexFileError):
                continue
            found.append(
                SegmentInfo(
                    name.segment_id,
                    path,
                    index,
                    state.offset if state else 0,
                    bool(state and state.completed),
                    size + (index.stat().st_size if state else 0),
                )
            )
        found.sort(key=lambda s: s.segment_id)
        return found
