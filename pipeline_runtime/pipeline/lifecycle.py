"""The runtime's lifecycle as an explicit state machine.

    STARTING -> RUNNING <-> STALLED      (a sink is down: retrying, nothing dropped)
        |          |           |
        +------> STOPPING <----+  -> STOPPED
        +------> FAILED                  (a fatal error: needs a human)

Illegal transitions raise, so a bug shows up as an error instead of a
runtime that reports Running while it is stopped.
"""

from __future__ import annotations

from enum import StrEnum


class RuntimeState(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    STALLED = "stalled"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"


_ALLOWED: dict[RuntimeState, frozenset[RuntimeState]] = {
    RuntimeState.STARTING: frozenset({RuntimeState.RUNNING, RuntimeState.STOPPING, RuntimeState.FAILED}),
    RuntimeState.RUNNING: frozenset({RuntimeState.STALLED, RuntimeState.STOPPING, RuntimeState.FAILED}),
    RuntimeState.STALLED: frozenset({RuntimeState.RUNNING, RuntimeState.STOPPING, RuntimeState.FAILED}),
    RuntimeState.STOPPING: frozenset({RuntimeState.STOPPED, RuntimeState.FAILED}),
    RuntimeState.STOPPED: frozenset(),
    RuntimeState.FAILED: frozenset({RuntimeState.STOPPING, RuntimeState.STOPPED}),
}


class Lifecycle:
    """Holds the current state and the reason for it."""

    def __init__(self) -> None:
        self.state = RuntimeState.STARTING
        self.reason = ""

    def move(self, to: RuntimeState, reason: str = "") -> None:
        if to is self.state:
            self.reason = reason or self.reason
            return
        if to not in _ALLOWED[self.state]:
            raise RuntimeError(f"runtime cannot go from {self.state} to {to}")
        self.state = to
        self.reason = reason
