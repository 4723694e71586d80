"""Where each sink's driver errors land in the tree: a bad row, an outage, or a bug that keeps the position."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from clickhouse_connect.driver import exceptions as ch

from pipeline_runtime.errors import (
    HeadraceError,
    RowRejectedError,
    SinkError,
    SinkTimeoutError,
    SinkUnavailableError,
    ValueEncodingError,
)
from pipeline_runtime.sinks.clickhouse.errors import translate as ch_translate
from pipeline_runtime.sinks.errors import Translate, translated
from pipeline_runtime.sinks.postgres.errors import translate as pg_translate
from pipeline_runtime.sinks.retry import bounded


@pytest.mark.parametrize("translate", [pg_translate, ch_translate], ids=["postgres", "clickhouse"])
@pytest.mark.parametrize("bug", [ValueError("bad"), TypeError("no"), OverflowError("big"), KeyError("k")])
def test_a_python_error_inside_a_sink_is_a_fatal_bug_not_a_bad_row(translate: object, bug: Exception) -> None:
    error = translate(bug, "s")  # type: ignore[operator]
    assert isinstance(error, SinkError)
    assert not isinstance(error, RowRejectedError)
    assert not error.retryable
    assert "internal error" in str(error) and type(bug).__name__ in str(error)


@pytest.mark.parametrize("translate", [pg_translate, ch_translate], ids=["postgres", "clickhouse"])
def test_a_typed_encoding_error_stays_row_level_and_names_column_and_type(translate: object) -> None:
    original = ValueEncodingError("ks.t", "at", "timestamp", "beyond DateTime64's range")
    error: HeadraceError = translate(original, "s")  # type: ignore[operator]
    assert error is original
    assert isinstance(error, RowRejectedError)
    assert str(error) == "table ks.t, column at (timestamp): beyond DateTime64's range"


def test_postgres_data_exceptions_are_row_level_and_connection_classes_retryable() -> None:
    data = asyncpg.exceptions.CharacterNotInRepertoireError("invalid byte sequence for encoding UTF8: 0x00")
    assert isinstance(pg_translate(data, "s"), RowRejectedError)
    assert isinstance(pg_translate(asyncpg.exceptions.SerializationError("retry"), "s"), SinkUnavailableError)
    assert isinstance(pg_translate(ConnectionResetError("reset"), "s"), SinkUnavailableError)
    # A pooled connection handed out while still consuming the error of a server restart (seen in CI).
    busy = asyncpg.exceptions.InternalClientError("cannot switch to state 15; another operation (2) is in progress")
    assert isinstance(pg_translate(busy, "s"), SinkUnavailableError)


def test_clickhouse_value_codes_are_row_level_and_network_retryable() -> None:
    assert isinstance(ch_translate(ch.DatabaseError("Code: 53. DB::Exception: Type mismatch"), "s"), RowRejectedError)
    assert isinstance(ch_translate(ch.OperationalError("connection refused"), "s"), SinkUnavailableError)
    assert isinstance(ch_translate(RuntimeError("Code: 252. Too many parts"), "s"), SinkUnavailableError)


@pytest.mark.parametrize("translate", [pg_translate, ch_translate], ids=["postgres", "clickhouse"])
async def test_a_cancelled_call_whose_clean_up_fails_stays_cancelled(translate: Translate) -> None:
    """asyncpg raises InternalClientError releasing a connection mid-cancel: the task must end cancelled."""
    entered = asyncio.Event()

    async def write() -> None:
        async with translated("s", translate):
            try:
                entered.set()
                await asyncio.sleep(3600)
            finally:
                raise asyncpg.exceptions.InternalClientError("cannot switch to state 15")

    task = asyncio.ensure_future(write())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()


@pytest.mark.parametrize("translate", [pg_translate, ch_translate], ids=["postgres", "clickhouse"])
async def test_a_timed_out_call_whose_clean_up_fails_is_a_retryable_timeout(translate: Translate) -> None:
    async def write() -> None:
        async with translated("s", translate):
            try:
                await asyncio.sleep(3600)
            finally:
                raise asyncpg.exceptions.InternalClientError("cannot switch to state 15")

    with pytest.raises(SinkTimeoutError) as caught:
        await bounded(write, 0.05, "sink s: write")
    assert caught.value.retryable
