"""What only the TimescaleDB sink does: hypertables on the configured time column.

Against TimescaleDB itself (PGlite built with the extension, ``devservices/timescaledb.py``);
everything it shares with the PostgreSQL sink also runs in the contract, crash and type suites
under the ``timescaledb`` kind.
"""

from __future__ import annotations

import datetime as dt

import pytest

from pipeline_runtime.errors import ConfigError
from pipeline_runtime.events import Cell, ChangeEvent, Liveness, Op, Position, SourcePosition
from pipeline_runtime.sinks.base import Batch, Checkpoint
from pipeline_runtime.sinks.timescale import TimescaleSink
from tests.integration.sinks.conftest import Harness
from tests.integration.sinks.workload import column, contract_schema, plain_schema

pytestmark = pytest.mark.postgres


@pytest.mark.parametrize("harness", ["timescaledb"], indirect=True)
async def test_row_tables_become_hypertables_chunked_on_the_time_column(harness: Harness) -> None:
    schema = plain_schema("readings")
    sink = harness.make()
    await sink.open()
    await sink.ensure_table(schema)
    events = [
        ChangeEvent(
            Op.UPSERT,
            "ks",
            "readings",
            {"pk": "p"},
            SourcePosition("n", Position(1, ck)),
            {"ck": ck, "ck2": "x"},
            {"a": Cell(ck * 10, 1_000)},
            Liveness(1_000),
        )
        for ck in range(4)
    ]
    await sink.write(Batch(events, Checkpoint("ts", "n", Position(1, 3))))
    async with harness.connection() as conn:
        dimensions = await conn.fetch(
            "SELECT column_name, integer_interval FROM timescaledb_information.dimensions "
            "WHERE hypertable_schema = $1 AND hypertable_name = 'readings__rows'",
            harness.namespace,
        )
        chunks = await conn.fetchval(
            "SELECT count(*) FROM timescaledb_information.chunks "
            "WHERE hypertable_schema = $1 AND hypertable_name = 'readings__rows'",
            harness.namespace,
        )
        values = await conn.fetch(f'SELECT ck, a FROM "{harness.namespace}"."readings" ORDER BY ck')
    await sink.close()
    assert [(d["column_name"], d["integer_interval"]) for d in dimensions] == [("ck", 2)]
    assert chunks == 2  # ck 0..3 in chunks of 2
    assert [(v["ck"], v["a"]) for v in values] == [(0, 0), (1, 10), (2, 20), (3, 30)]


@pytest.mark.parametrize("harness", ["timescaledb"], indirect=True)
@pytest.mark.time_column("at")
async def test_a_timestamp_time_column_takes_an_interval(harness: Harness) -> None:
    base = plain_schema("timed")
    schema = base.__class__(
        base.keyspace,
        base.name,
        base.id,
        (*base.primary_key, column("at", "timestamp", base.primary_key[1].kind, 2), *base.regulars),
    )
    sink = harness.make()
    await sink.open()
    await sink.ensure_table(schema)
    async with harness.connection() as conn:
        interval = await conn.fetchval(
            "SELECT time_interval FROM timescaledb_information.dimensions "
            "WHERE hypertable_schema = $1 AND hypertable_name = 'timed__rows' AND column_name = 'at'",
            harness.namespace,
        )
    await sink.close()
    assert interval == dt.timedelta(days=30)


@pytest.mark.parametrize(
    ("time_column", "interval", "expected"),
    [
        ("nope", "7 days", "has no primary-key column 'nope'"),
        ("ck2", "7 days", "column ck2 is text; a hypertable partitions by a timestamp, date or integer column"),
        ("ck", "7 days", "column ck is an integer, so timescale.chunkInterval must be a whole number"),
    ],
)
async def test_an_unusable_time_column_is_a_config_error_naming_it(
    time_column: str, interval: str, expected: str
) -> None:
    sink = TimescaleSink("tsdb", "postgresql://unused", time_column, chunk_interval=interval)
    with pytest.raises(ConfigError) as caught:
        await sink.ensure_table(contract_schema())  # refused before any connection is needed
    assert expected in str(caught.value)
    assert "ks.t" in str(caught.value)
