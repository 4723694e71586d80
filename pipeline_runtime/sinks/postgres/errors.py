"""The one place asyncpg's exceptions become Headrace errors.

SQLSTATE classes decide: connection problems (08), transaction rollbacks such
as serialization failures and deadlocks (40), resource limits (53), operator
intervention (57) and system errors (58) are worth retrying, and so is a
connection asyncpg itself reports unusable (``InternalClientError``); data exceptions
(22) and constraint violations (23) are caused by rows in the batch, so the
writer bisects the batch and dead-letters those rows. Everything else is a
plain, fatal ``SinkError``: a ``ValueError`` or ``TypeError`` raised inside the
sink is a bug, not a bad row (encoders that find a value the column cannot
hold raise ``ValueEncodingError``, which passes through as row-level).
"""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager

import asyncpg

from pipeline_runtime.errors import HeadraceError, RowRejectedError, SinkError, SinkUnavailableError
from pipeline_runtime.sinks.errors import internal_failure, translated

_RETRYABLE_CLASSES = ("08", "40", "53", "57", "58")
_ROW_CLASSES = ("22", "23")


def translate(exc: BaseException, sink: str) -> HeadraceError:
    """The Headrace error for an asyncpg (or socket) failure."""
    if isinstance(exc, HeadraceError):
        return exc
    if isinstance(exc, asyncpg.PostgresError):
        state = str(getattr(exc, "sqlstate", "") or "")
        message = f"sink {sink}: PostgreSQL {state}: {exc}"
        if state.startswith(_RETRYABLE_CLASSES):
            return SinkUnavailableError(message)
        if state.startswith(_ROW_CLASSES):
            return RowRejectedError(message)
        return SinkError(message)
    if isinstance(exc, (OSError, asyncio.TimeoutError, asyncpg.InterfaceError)):
        return SinkUnavailableError(f"sink {sink}: connection to PostgreSQL failed: {exc}")
    if isinstance(exc, asyncpg.exceptions.InternalClientError):
        # A pooled connection the server dropped (e.g. at its restart) can be handed out half-way
        # through consuming the error ("cannot switch to state ..."): the pool terminates it on
        # release, so a retry gets a fresh connection.
        return SinkUnavailableError(f"sink {sink}: PostgreSQL connection in an unusable state: {exc}")
    return SinkError(f"sink {sink}: {internal_failure(exc)}")


def boundary(sink: str) -> AbstractAsyncContextManager[None]:
    """Translate whatever asyncpg raises inside the block."""
    return translated(sink, translate)
