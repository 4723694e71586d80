"""Capped exponential backoff with full jitter, and a time bound on every sink call.

Full jitter (a uniform delay between 0 and the capped exponential) keeps the
runtimes of many Cassandra nodes from retrying against a recovering sink in
lockstep. Only ``HeadraceError``s with ``retryable = True`` are retried; the
last error is re-raised when the attempts run out. ``bounded`` turns a call
that hangs (a half-open connection, a server stuck on a lock) into a
retryable ``SinkTimeoutError`` instead of an invisible wait.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from pipeline_runtime.errors import HeadraceError, SinkTimeoutError

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Backoff:
    """Retry policy; times in seconds."""

    initial: float = 0.1
    """Cap of the first delay."""
    maximum: float = 30.0
    """No delay is longer than this."""
    multiplier: float = 2.0
    attempts: int = 8
    """Calls in total, the first one included."""
    call_timeout: float = 120.0
    """Seconds one sink call may take before it counts as failed (and is retried)."""

    def delays(self, rng: random.Random | None = None) -> Iterator[float]:
        """The delays before attempts 2..n."""
        rng = rng or random.Random()
        for retry in range(self.attempts - 1):
            yield rng.uniform(0, min(self.maximum, self.initial * self.multiplier**retry))


async def retrying(
    call: Callable[[], Awaitable[T]],
    policy: Backoff,
    *,
    on_retry: Callable[[HeadraceError, float], None] | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """Await ``call()``; on a retryable error wait and try again, up to ``policy.attempts``."""
    delays = policy.delays()
    while True:
        try:
            return await call()
        except HeadraceError as error:
            if not error.retryable:
                raise
            delay = next(delays, None)
            if delay is None:
                raise
            if on_retry is not None:
                on_retry(error, delay)
            await sleep(delay)


async def bounded(call: Callable[[], Awaitable[T]], seconds: float, what: str) -> T:
    """Await ``call()`` for at most ``seconds``; past that it is cancelled and a ``SinkTimeoutError`` names ``what``."""
    try:
        return await asyncio.wait_for(call(), seconds)
    except TimeoutError as exc:
        raise SinkTimeoutError(f"{what} did not finish within {seconds:g} s") from exc
