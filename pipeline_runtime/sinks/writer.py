"""Writes batches through a sink with retries, bisection and dead letters.

Retryable errors (connection loss, serialization failures, deadlocks, too
many parts) are retried with capped, jittered backoff. A row-level rejection
bisects the batch: halves are written without the checkpoint (writes are
idempotent, so that is safe), down to the single events that fail; those go
to the dead-letter store, and only then is the checkpoint committed with an
empty batch. Bisecting costs O(bad rows x log batch size) writes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from pipeline_runtime.errors import HeadraceError, RowRejectedError
from pipeline_runtime.events import ChangeEvent
from pipeline_runtime.sinks.base import Batch, Sink
from pipeline_runtime.sinks.deadletter import DeadLetter, DeadLetterStore
from pipeline_runtime.sinks.retry import Backoff, retrying

log = logging.getLogger(__name__)


class BatchWriter:
    """The runtime's way into a sink; never loses an event without a dead letter."""

    def __init__(self, sink: Sink, dead_letters: DeadLetterStore, policy: Backoff | None = None) -> None:
        self.sink = sink
        self.dead_letters = dead_letters
        self.policy = policy or Backoff()

    async def write(self, batch: Batch) -> int:
        """Write the batch; returns how many events were dead-lettered."""
        try:
            await self._attempt(batch)
            return 0
        except RowRejectedError as error:
            log.warning(
                "sink %s rejected a batch of %d events; bisecting", self.sink.name, len(batch.events), exc_info=False
            )
            letters = await self._bisect(list(batch.events), error)
        await self.dead_letters.write(letters)
        for letter in letters:
            source = letter.event.source
            # Positions and table only: a reason could quote a value, and values never reach logs.
            log.error(
                "dead-lettered %s event of %s at %s:%s",
                letter.event.op,
                letter.event.qualified_table,
                source.node,
                source.position,
            )
        await self._attempt(Batch((), batch.checkpoint))
        return len(letters)

    async def _attempt(self, batch: Batch) -> None:
        await retrying(lambda: self.sink.write(batch), self.policy, on_retry=self._retried)

    def _retried(self, error: HeadraceError, delay: float) -> None:
        health = self.sink.health()
        health.retries += 1
        health.last_error = type(error).__name__
        log.warning("sink %s: retryable %s; retrying in %.2fs", self.sink.name, type(error).__name__, delay)

    async def _bisect(self, events: Sequence[ChangeEvent], error: RowRejectedError) -> list[DeadLetter]:
        if len(events) == 1:
            return [DeadLetter(self.sink.name, str(error), events[0])]
        middle = len(events) // 2
        letters: list[DeadLetter] = []
        for half in (events[:middle], events[middle:]):
            try:
                await self._attempt(Batch(half))
            except RowRejectedError as failure:
                letters += await self._bisect(half, failure)
        return letters
