"""Reading ahead of the sinks: the source decodes the next chunks while a batch is being written.

The source decodes in a worker thread; without read-ahead it sits idle while
the sinks write (and the sinks sit idle while it decodes). ``ReadAhead`` runs
the source's iterator in a task of its own and hands its chunks over in
order through a buffer bounded by events, so memory stays flat whatever the
backlog: the task waits while the buffer holds ``limit`` events or more (one
chunk is always let in, however large, so a big chunk cannot wedge it).

A source error reaches the consumer after every chunk read before it, as it
would without read-ahead. Chunks waiting in the buffer were read but not yet
taken: ``oldest_durable_at`` lets lag count them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator
from types import TracebackType

from pipeline_runtime.source.tailer import SourceBatch


class ReadAhead:
    """Iterates ``chunks`` in a task of its own, at most ``limit`` events ahead of the consumer."""

    def __init__(self, chunks: AsyncIterator[SourceBatch], limit: int) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        self.limit = limit
        self._chunks = chunks
        self._buffer: deque[SourceBatch] = deque()
        self._events = 0
        self._error: BaseException | None = None
        self._ended = False
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    @property
    def buffered_events(self) -> int:
        """Events read and waiting for the consumer."""
        return self._events

    def oldest_durable_at(self) -> float | None:
        """When the oldest change waiting in the buffer became durable (None: none waits)."""
        return next((c.durable_at for c in self._buffer if c.durable_at is not None), None)

    async def __aenter__(self) -> ReadAhead:
        self._task = asyncio.ensure_future(self._fill())
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop reading ahead and drop what waits (it was never delivered: it will be read again)."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        aclose = getattr(self._chunks, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):
                await aclose()
        self._buffer.clear()
        self._events = 0

    async def _fill(self) -> None:
        try:
            async for chunk in self._chunks:
                async with self._changed:
                    await self._changed.wait_for(lambda: not self._buffer or self._events < self.limit)
                    self._buffer.append(chunk)
                    self._events += len(chunk.events)
                    self._changed.notify_all()
        except Exception as exc:  # handed to the consumer, after the chunks read before it
            self._error = exc
        finally:
            self._ended = True
            async with self._changed:
                self._changed.notify_all()

    def __aiter__(self) -> AsyncIterator[SourceBatch]:
        return self._take()

    async def _take(self) -> AsyncIterator[SourceBatch]:
        if self._task is None:
            raise RuntimeError("ReadAhead is iterated inside `async with`")
        while True:
            async with self._changed:
                await self._changed.wait_for(lambda: bool(self._buffer) or self._ended)
                if not self._buffer:
                    if self._error is not None:
                        raise self._error
                    return
                chunk = self._buffer.popleft()
                self._events -= len(chunk.events)
                self._changed.notify_all()
            yield chunk
