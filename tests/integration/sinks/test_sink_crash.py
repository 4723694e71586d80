"""A crash between the data write and the checkpoint loses nothing and duplicates nothing."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline_runtime.errors import SinkUnavailableError
from pipeline_runtime.events import Position
from pipeline_runtime.sinks.base import Batch, Checkpoint
from pipeline_runtime.sinks.clickhouse import ClickHouseSink
from pipeline_runtime.sinks.postgres import PostgresSink
from tests.integration.sinks.conftest import Harness
from tests.integration.sinks.oracle import Oracle
from tests.integration.sinks.workload import Workload, actual_rows, contract_schema, expected_rows


class SimulatedCrash(Exception):
    """The process 'dies' between the data insert and the checkpoint insert."""


async def test_crash_before_checkpoint_then_replay(harness: Harness) -> None:
    schema = contract_schema()
    workload = Workload(schema, 11)
    first, second = workload.events(150), workload.events(150)
    oracle = Oracle(schema)
    for event in first + second:
        oracle.apply(event)
    pipeline = f"crash-{harness.namespace}"  # ClickHouse keeps every test's checkpoints in one table
    done = Checkpoint(pipeline, "node-1", max(e.source.position for e in first))
    crashed = Checkpoint(pipeline, "node-1", max(e.source.position for e in second))

    sink = harness.make()
    await sink.open()
    await sink.ensure_table(schema)
    await sink.write(Batch(first, done))

    if isinstance(sink, PostgresSink):

        async def drop_connection(conn: Any) -> None:
            if harness.kind == "timescaledb":
                conn.terminate()  # PGlite has no backend process to kill: cut the session's socket
                return
            # The server ends this session mid-transaction, as a killed runtime's would.
            await conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")

        sink.before_checkpoint = drop_connection
        with pytest.raises(SinkUnavailableError):
            await sink.write(Batch(second, crashed))
    else:
        assert isinstance(sink, ClickHouseSink)

        async def die() -> None:
            raise SimulatedCrash

        sink.before_checkpoint = die
        with pytest.raises(SimulatedCrash):
            await sink.write(Batch(second, crashed))
    await sink.close()

    # Restart: read the committed position, replay everything after it.
    restarted = harness.make()
    await restarted.open()
    await restarted.ensure_table(schema)
    committed = await restarted.committed_positions(pipeline)
    assert committed == {"node-1": done.position}
    replay = [e for e in first + second if e.source.position > committed["node-1"]]
    assert replay == second
    await restarted.write(Batch(replay, crashed))

    rows = await harness.rows(schema)
    keys = [tuple(r[c.name] for c in schema.primary_key) for r in rows]
    assert len(keys) == len(set(keys)), "a key appears twice: the replay duplicated rows"
    assert actual_rows(schema, rows) == expected_rows(schema, oracle.select(workload.now))
    assert await restarted.committed_positions(pipeline) == {"node-1": crashed.position}
    assert crashed.position > Position(0, 0)
    await restarted.close()
