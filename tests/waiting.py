"""Waiting in async tests for a condition with a deadline, saying what was last seen when it is not met."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any


async def wait_until(check: Callable[[], Awaitable[Any]], deadline_s: float = 60.0, what: str = "condition") -> None:
    """Await ``check()`` every 0.25 s (or sooner at first) until it returns True; else fail with its last answer."""
    deadline = time.monotonic() + deadline_s
    last: Any = None
    pause = 0.01
    while time.monotonic() < deadline:
        last = await check()
        if last is True:
            return
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.25)
    raise AssertionError(f"{what} not met within {deadline_s:g}s; last: {last}")
