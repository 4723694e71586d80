"""Sink-specific errors, all inside pipeline_runtime.errors' tree.

SinkError
├── MissingExtensionError   the database lacks an extension the sink needs (fatal)
└── (SinkUnavailableError, SchemaDriftError, RowRejectedError from the shared tree)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from pipeline_runtime.errors import HeadraceError, SinkError

Translate = Callable[[BaseException, str], HeadraceError]


class MissingExtensionError(SinkError):
    """The target database has no ``extension``: nothing the runtime can fix by retrying."""

    def __init__(self, database: str, extension: str, hint: str) -> None:
        super().__init__(f"database {database!r} has no {extension} extension: {hint}")
        self.database = database
        self.extension = extension


def internal_failure(exc: BaseException) -> str:
    """How a non-driver exception raised inside a sink is reported: a bug that keeps the position, not a bad row."""
    return (
        f"internal error {type(exc).__name__}: {exc} (not a row-level rejection: the batch is not committed "
        "and the position is kept; please report it)"
    )


@asynccontextmanager
async def translated(sink: str, translate: Translate) -> AsyncIterator[None]:
    """Raise whatever the block raises as ``translate`` makes it a Headrace error (cancellation passes).

    A task being cancelled stays cancelled even when the driver raises something else on the
    way out (a stop or a call's timeout must never become a fatal "internal error").

    Each sink's ``errors.boundary`` is this with its driver's ``translate``: the one place where
    that driver's exceptions become Headrace errors.
    """
    try:
        yield
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        if _being_cancelled():
            # The driver's clean-up of a cancelled call failed (asyncpg cannot reset a connection whose
            # query is still being cancelled): that is the cancellation, not a sink error.
            raise asyncio.CancelledError from exc
        raise translate(exc, sink) from exc


def _being_cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
