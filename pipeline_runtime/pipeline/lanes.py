"""Each sink's lane: its own batches, checkpoint and pace, fed by one reader.

The runner reads, decodes and transforms each chunk once and offers it (a
``Piece``) to every sink's ``Lane``. A lane buffers pieces (bounded in events
and in pieces), cuts its own batches (its sink's ``batchSize`` and
``flushIntervalMs``) and commits its own checkpoint, so each sink writes at
its own pace and restarts from its own position.

A full buffer makes the reader wait (backpressure: a backlog drains at the
pace of the slowest sink that is working), but not for a sink that is
failing or makes no room for ``DETACH_AFTER`` seconds: that lane is
*detached*. It drops its buffer (nothing in it was committed) and re-reads
``cdc_raw`` from its own checkpoint through a reader of its own (``CatchUp``)
while the reader goes on without it; once the catch-up has read past
everything the reader offered meanwhile, the lane rejoins. The switch happens
between two awaits, so no piece falls between the two readers. Segments are
deleted only behind every lane's checkpoint (the runner's cleanup), so the
catch-up always finds its data on disk.

Positions: ``offered`` is the highest checkpoint position a lane accepted;
events at or before it are dropped when offered again (after a restart from
the lowest checkpoint, a re-read after a source error, a rejoin), so each
sink resumes from its own checkpoint and never moves it back.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

from pipeline_runtime.errors import SourceError
from pipeline_runtime.events import ChangeEvent, Position
from pipeline_runtime.sinks.base import Checkpoint, Sink

log = logging.getLogger(__name__)

#: How long the reader waits for room in a healthy sink's full buffer before detaching it.
DETACH_AFTER = 2.0
#: A lane's buffer holds at most this many pieces, whatever their events (idle heartbeats are merged).
MAX_PIECES = 4096


@dataclass(frozen=True, slots=True)
class Piece:
    """What the reader hands every lane: the selected events of whole entries, in position order."""

    events: Sequence[ChangeEvent]
    #: Where the reader is once these are written: a chunk's end (None: it did not move).
    position: Position | None
    #: Replica dedup's held changes: a checkpoint stays at or before this (None: nothing held).
    cap: Position | None = None
    #: When the data of this piece became durable in the commitlog (seconds since the epoch).
    durable_at: float | None = None
    #: A checkpoint of another key, committed after the events (replica dedup's watermark).
    mark: Checkpoint | None = None

    def checkpoint(self, end: Position | None = None) -> Position | None:
        """The checkpoint once this piece (or its events up to ``end``) is written."""
        position = end if end is not None else self.position
        if position is None or self.cap is None:
            return position
        return min(position, self.cap)


#: Writes a lane's batch with its checkpoint (events may be empty), retrying until the sink holds it.
WriteBatch = Callable[["Lane", list[ChangeEvent], Checkpoint], Awaitable[None]]
#: A reader of its own from a position on: pieces of every selected change after it, forever.
CatchUp = Callable[[Position | None], AsyncIterator[Piece]]


class Lane:
    """One sink's way through the pipeline; see the module docstring."""

    def __init__(
        self,
        sink: Sink,
        checkpoint: Callable[[Position], Checkpoint],
        *,
        max_events: int,
        max_wait: float,
        limit: int,
        committed: Position | None,
        write: WriteBatch,
        catch_up: CatchUp,
        failing: Callable[[], bool],
    ) -> None:
        self.sink = sink
        self.name = sink.name
        self.max_events = max_events
        self.max_wait = max_wait
        #: The buffer's bound in events (one piece is always let in, however large).
        self.limit = limit
        self.committed = committed
        self.offered = committed
        self.attached = True
        self.events_committed = 0
        self.detached_times = 0
        #: Serialises this sink's writes: live batches and snapshot pages take turns.
        self.lock = asyncio.Lock()
        self._checkpoint = checkpoint
        self._write = write
        self._catch_up = catch_up
        self._failing = failing
        self._queue: deque[tuple[float, Piece]] = deque()
        self._queued_events = 0
        #: Set when a piece is put (the lane's task waits on it) and when one is taken (the reader waits).
        self._data = asyncio.Event()
        self._room = asyncio.Event()
        #: While detached: the furthest position the reader offered and this lane dropped.
        self._missed: Position | None = None
        #: While detached: when the oldest change not committed here became durable.
        self._behind_since: float | None = None
        #: When the oldest change taken from the buffer but not committed yet became durable.
        self._taken_durable: float | None = None
        self._reading: asyncio.Task[None] | None = None
        #: A batch taken from the buffer and not committed yet.
        self._holding = False
        #: The reader stopped: write what is buffered without waiting for more.
        self._draining = False
        #: A fatal error of this lane's own reader, raised once what it read before is written.
        self._failure: SourceError | None = None
        self._catch_up_unread: Callable[[], float | None] = lambda: None

    # -- the reader's side -----------------------------------------------------------------------

    async def offer(self, piece: Piece) -> None:
        """Take ``piece`` into the buffer; waits while it is full, detaches a sink that makes no room."""
        if not self.attached:
            self._miss(piece)
            return
        waited_since = time.monotonic()
        while self._full(piece):
            if self._failing() or time.monotonic() - waited_since >= DETACH_AFTER:
                self._detach()
                self._miss(piece)
                return
            await self._wait_room()
        self._put(piece)

    def _full(self, piece: Piece) -> bool:
        if not self._queue:
            return False
        return self._queued_events + len(piece.events) > self.limit or len(self._queue) >= MAX_PIECES

    def _put(self, piece: Piece) -> None:
        """Append ``piece`` without the events this lane already accepted; merges idle pieces."""
        events = piece.events
        offered = self.offered
        if events and offered is not None and events[0].source.position <= offered:
            events = [e for e in events if e.source.position > offered]
        checkpoint = piece.checkpoint()
        if checkpoint is not None and offered is not None and checkpoint < offered:
            checkpoint = offered  # behind what this lane already accepted: the position does not move
        if not events and piece.mark is None and (checkpoint is None or checkpoint == offered):
            return
        if events is not piece.events or checkpoint != piece.checkpoint():
            piece = Piece(events, checkpoint, None, piece.durable_at, piece.mark)
        if checkpoint is not None:
            self.offered = checkpoint
        if self._queue and not events and piece.mark is None:
            arrived, last = self._queue[-1]
            if not last.events and last.mark is None:
                # Two moves of the position alone: keep one, the older time.
                self._queue[-1] = (arrived, Piece((), piece.position, piece.cap, last.durable_at or piece.durable_at))
                return
        self._queue.append((time.monotonic(), piece))
        self._queued_events += len(events)
        self._data.set()

    async def _wait_room(self) -> None:
        self._room.clear()
        await _wait(self._room, 0.1)

    def _detach(self) -> None:
        """Drop the buffer and read again from this lane's checkpoint, apart from the reader."""
        self.attached = False
        self.detached_times += 1
        self._behind_since = self.oldest_durable_at()
        self._missed = None
        for _, dropped in self._queue:
            self._miss(dropped)
        self._queue.clear()
        self._queued_events = 0
        log.warning(
            "sink falls behind: reading its changes again from its own checkpoint",
            extra={"sink": self.name, "from": str(self.committed) if self.committed else "beginning"},
        )
        self._room.set()
        self._data.set()

    def _miss(self, piece: Piece) -> None:
        if piece.position is not None and (self._missed is None or piece.position > self._missed):
            self._missed = piece.position
        for event in piece.events:  # replica dedup's released changes lie before the chunk's end
            if self._missed is None or event.source.position > self._missed:
                self._missed = event.source.position
        if piece.durable_at is not None and self._behind_since is None:
            self._behind_since = piece.durable_at

    # -- the lane's own task ---------------------------------------------------------------------

    async def run(self) -> None:
        """Write this sink's batches until cancelled; re-reads on its own while detached."""
        try:
            while True:
                if self._failure is not None and not self._queue:
                    raise self._failure
                if not self.attached and self._reading is None and self._failure is None:
                    self._reading = asyncio.ensure_future(self._read_again())
                taken = await self._take()
                if taken is None:
                    continue
                events, position, mark = taken
                try:
                    if events or (position is not None and position != self.committed):
                        assert position is not None
                        await self._commit(events, position)
                    if mark is not None:
                        await self._write(self, [], mark)
                finally:
                    self._holding = False
                    self._room.set()
        finally:
            if self._reading is not None:
                self._reading.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._reading

    async def _take(self) -> tuple[list[ChangeEvent], Position | None, Checkpoint | None] | None:
        """The next batch: up to ``max_events`` (whole entries), or what came within ``max_wait``."""
        events: list[ChangeEvent] = []
        position: Position | None = None
        first_at: float | None = None
        while True:
            if not self._queue:
                if first_at is not None and (self._draining or time.monotonic() - first_at >= self.max_wait):
                    return events, position, None
                timeout = 0.5 if first_at is None else max(0.0, first_at + self.max_wait - time.monotonic())
                self._data.clear()
                await _wait(self._data, timeout)
                if not self._queue and first_at is None:
                    return None
                continue
            arrived, piece = self._queue[0]
            room = self.max_events - len(events)
            if len(piece.events) > room:
                head = _entries_within(piece.events, room, at_least_one=not events)
                if head == 0:
                    return events, position, None  # the next entry would overflow: write what we have
                if head < len(piece.events):
                    end = piece.events[head - 1].source.position
                    rest = Piece(piece.events[head:], piece.position, piece.cap, piece.durable_at, piece.mark)
                    self._queue[0] = (arrived, rest)
                    self._queued_events -= head
                    self._took(piece.durable_at)
                    self._room.set()
                    return events + list(piece.events[:head]), piece.checkpoint(end), None
            self._queue.popleft()
            self._queued_events -= len(piece.events)
            self._took(piece.durable_at)
            self._room.set()
            events += piece.events
            position = piece.checkpoint() or position
            first_at = arrived if first_at is None else first_at
            if piece.mark is not None:
                return events, position, piece.mark
            if len(events) >= self.max_events:
                return events, position, None

    def _took(self, durable_at: float | None) -> None:
        self._holding = True
        if durable_at is not None and self._taken_durable is None:
            self._taken_durable = durable_at

    async def _commit(self, events: list[ChangeEvent], position: Position) -> None:
        if self.committed is not None and position < self.committed:
            position = self.committed  # a lane's checkpoint never moves back
        await self._write(self, events, self._checkpoint(position))
        self.committed = position
        self.events_committed += len(events)
        self._taken_durable = None
        if self.attached and self._reading is None:
            self._behind_since = None

    async def drain(self) -> None:
        """Write what is buffered now, without waiting for more (the reader stopped); returns once committed.

        A lane that fell behind has nothing buffered from the reader: it returns at once.
        """
        self._draining = True
        self._data.set()
        while self.attached and (self._queue or self._holding):
            await self._wait_room()

    async def _read_again(self) -> None:
        """While detached: feed this lane's buffer from its own reader until it passed what it missed.

        A retryable source error reads again from what was buffered; a fatal one is raised by the
        lane's task once everything read before it is written.
        """
        self.offered = self.committed
        delay = 0.5
        try:
            while True:
                try:
                    if await self._read_from(self.offered):
                        return
                except SourceError as exc:
                    if not exc.retryable:
                        self._failure = exc
                        self._data.set()
                        return
                    log.warning("sink's own reader: source unavailable, reading again", extra={"sink": self.name})
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 30.0)
        finally:
            self._reading = None

    async def _read_from(self, start: Position | None) -> bool:
        """Read from ``start`` into the buffer; True once rejoined."""
        reader = self._catch_up(start)
        try:
            async for piece in reader:
                while self._full(piece):
                    await self._wait_room()
                self._put(piece)
                self._behind_since = None
                if self._missed is None or (self.offered is not None and self.offered >= self._missed):
                    # Everything the reader dropped for this lane is in the buffer: rejoin it.
                    self.attached = True
                    self._missed = None
                    log.info("sink caught up: back on the shared reader", extra={"sink": self.name})
                    return True
            return False
        finally:
            aclose = getattr(reader, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()

    def watch_unread(self, unread: Callable[[], float | None]) -> None:
        """The catch-up reader's own unread time, for this lane's lag while it re-reads."""
        self._catch_up_unread = unread

    # -- what it tells ---------------------------------------------------------------------------

    @property
    def buffered_events(self) -> int:
        """Events offered to this lane and not yet taken into a batch."""
        return self._queued_events

    def oldest_durable_at(self) -> float | None:
        """When the oldest change this lane has not committed became durable (None: none it knows of).

        Changes the reader has not reached yet are the runner's to count; while detached, the
        lane counts what it dropped and what its own reader has not reached.
        """
        times = [self._taken_durable, self._behind_since]
        times.append(next((p.durable_at for _, p in self._queue if p.durable_at is not None), None))
        if not self.attached:
            times.append(self._catch_up_unread())
        known = [t for t in times if t is not None]
        return min(known) if known else None


async def _wait(event: asyncio.Event, seconds: float) -> None:
    """Wait for ``event`` at most ``seconds``. (Not ``asyncio.wait_for``: on Python 3.11 it can swallow
    a cancellation that arrives as the event is set, and the lane's task would never end.)"""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()


def _entries_within(events: Sequence[ChangeEvent], room: int, *, at_least_one: bool) -> int:
    """How many leading events make whole entries within ``room``; with ``at_least_one`` the first entry
    is taken whole however large (a mutation with more rows than a batch is a batch of its own)."""
    taken = 0
    for _, entry in itertools.groupby(events, key=lambda e: e.source.position):
        size = sum(1 for _ in entry)
        if taken + size > room:
            return size if taken == 0 and at_least_one else taken
        taken += size
    return taken
