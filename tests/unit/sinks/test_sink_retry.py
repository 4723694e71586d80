"""Backoff is capped and jittered; only retryable errors are retried."""

from __future__ import annotations

import random

import pytest

from pipeline_runtime.errors import SinkError, SinkUnavailableError
from pipeline_runtime.sinks.retry import Backoff, retrying


def test_delays_are_capped_and_jittered() -> None:
    policy = Backoff(initial=0.5, maximum=2.0, multiplier=2.0, attempts=10)
    delays = list(policy.delays(random.Random(1)))
    assert len(delays) == 9
    assert all(0 <= d <= 2.0 for d in delays)
    assert len(set(delays)) == len(delays)
    assert delays[0] <= 0.5


async def test_retries_retryable_then_succeeds() -> None:
    calls, slept = [], []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise SinkUnavailableError("down")
        return "ok"

    async def sleep(delay: float) -> None:
        slept.append(delay)

    assert await retrying(flaky, Backoff(attempts=5), sleep=sleep) == "ok"
    assert len(calls) == 3 and len(slept) == 2


async def test_fatal_errors_and_exhaustion_raise() -> None:
    async def fatal() -> None:
        raise SinkError("bad")

    async def down() -> None:
        raise SinkUnavailableError("down")

    async def sleep(_: float) -> None:
        return None

    with pytest.raises(SinkError):
        await retrying(fatal, Backoff(attempts=5), sleep=sleep)
    with pytest.raises(SinkUnavailableError):
        await retrying(down, Backoff(attempts=3), sleep=sleep)
