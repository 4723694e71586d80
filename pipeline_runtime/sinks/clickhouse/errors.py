"""The one place clickhouse-connect's (and chdb's) exceptions become Headrace errors.

ClickHouse error codes decide: network and overload conditions (too many
parts, memory limit, timeouts, table being altered) are retryable; value
and parsing errors the server reports are row-level, so the writer bisects the
batch. A ``ValueError`` or ``TypeError`` raised inside the sink is a bug, not a
bad row: it fails the batch and keeps the position.
"""

from __future__ import annotations

import asyncio
import re
from contextlib import AbstractAsyncContextManager

from clickhouse_connect.driver import exceptions as ch

from pipeline_runtime.errors import HeadraceError, RowRejectedError, SinkError, SinkUnavailableError
from pipeline_runtime.sinks.errors import internal_failure, translated

#: TOO_MANY_PARTS, MEMORY_LIMIT_EXCEEDED, TIMEOUT_EXCEEDED, SOCKET_TIMEOUT, NETWORK_ERROR,
#: TOO_MANY_SIMULTANEOUS_QUERIES, TABLE_IS_READ_ONLY, ALL_CONNECTION_TRIES_FAILED, KEEPER_EXCEPTION;
#: and a creation race another runtime won: DUPLICATE_COLUMN, TABLE_ALREADY_EXISTS, DATABASE_ALREADY_EXISTS
#: (the next attempt finds the object and goes on).
RETRYABLE_CODES = frozenset({252, 241, 159, 209, 210, 202, 242, 279, 999, 15, 57, 82})
#: CANNOT_PARSE_*, TYPE_MISMATCH, VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE, CANNOT_CONVERT_TYPE, INCORRECT_DATA
ROW_CODES = frozenset({6, 27, 38, 41, 53, 69, 70, 72, 117, 321})

_CODE = re.compile(r"Code:\s*(\d+)")


def error_code(exc: BaseException) -> int | None:
    code = getattr(exc, "code", None)
    if isinstance(code, int):
        return code
    match = _CODE.search(str(exc))
    return int(match.group(1)) if match else None


def translate(exc: BaseException, sink: str) -> HeadraceError:
    """The Headrace error for a clickhouse-connect failure."""
    if isinstance(exc, HeadraceError):
        return exc
    code = error_code(exc)
    message = f"sink {sink}: ClickHouse{f' code {code}' if code else ''}: {exc}"
    if isinstance(exc, (ch.OperationalError, OSError, asyncio.TimeoutError)) or code in RETRYABLE_CODES:
        return SinkUnavailableError(message)
    if isinstance(exc, ch.DataError) or code in ROW_CODES:
        return RowRejectedError(message)
    if code is None and not isinstance(exc, ch.ClickHouseError):
        return SinkError(f"sink {sink}: {internal_failure(exc)}")
    return SinkError(message)


def boundary(sink: str) -> AbstractAsyncContextManager[None]:
    """Translate whatever clickhouse-connect raises inside the block."""
    return translated(sink, translate)
