"""Writes batches through a sink with timeouts, retries, bisection and dead letters.

Every attempt is bounded by ``Backoff.call_timeout``. Retryable errors
(connection loss, timeouts, serialization failures, deadlocks, too many parts)
are retried with capped, jittered backoff, and each failed attempt is reported
to ``on_failure`` as it happens, so metrics and readiness show an outage while
it lasts, not after it.

Only a row-level rejection (``RowRejectedError``: a data exception from the
server, or a ``ValueEncodingError`` naming the column a value cannot be stored
in) bisects the batch: halves are written without the checkpoint (writes are
idempotent, so that is safe), down to the single events that fail; those go to
the dead-letter store, and only then is the checkpoint committed with an empty
batch. Bisecting costs O(bad rows x log batch size) writes. Anything else (a
fatal ``SinkError``, a bug) fails the batch and keeps the position.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from pipeline_runtime.errors import HeadraceError, RowRejectedError
from pipeline_runtime.events import ChangeEvent
from pipeline_runtime.sinks.base import Batch, Sink
from pipeline_runtime.sinks.deadletter import DeadLetter, DeadLetterStore
from pipeline_runtime.sinks.retry import Backoff, bounded, retrying

log = logging.getLogger(__name__)

#: Told of every failed attempt that will be retried: the error and the events the attempt carried.
FailureObserver = Callable[[HeadraceError, Sequence[ChangeEvent]], None]


def _ignore(error: HeadraceError, events: Sequence[ChangeEvent]) -> None:
    pass


class BatchWriter:
    """The runtime's way into a sink; never loses an event without a dead letter."""

    def __init__(
        self,
        sink: Sink,
        dead_letters: DeadLetterStore,
        policy: Backoff | None = None,
        on_failure: FailureObserver = _ignore,
    ) -> None:
        self.sink = sink
        self.dead_letters = dead_letters
        self.policy = policy or Backoff()
        self.on_failure = on_failure

    async def write(self, batch: Batch) -> list[DeadLetter]:
        """Write the batch and its checkpoint; returns the events that were dead-lettered."""
        try:
            await self._attempt(batch)
            return []
        except RowRejectedError as error:
            log.warning("sink %s rejected a batch of %d events; bisecting", self.sink.name, len(batch.events))
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
                extra={"sink": self.sink.name, "table": letter.event.qualified_table},
            )
        await self._attempt(Batch((), batch.checkpoint))
        return letters

    async def _attempt(self, batch: Batch) -> None:
        async def once() -> None:
            try:
                await bounded(lambda: self.sink.write(batch), self.policy.call_timeout, f"sink {self.sink.name}: write")
            except HeadraceError as error:
                if error.retryable:
                    self.on_failure(error, batch.events)
                raise

        await retrying(once, self.policy)

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
