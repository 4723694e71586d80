"""Three replicas' runtimes merging the same rows in lockstep must not lose each other's cells.

With RF=3 every mutation reaches three runtimes at nearly the same moment. Here three sinks (one
per runtime) each write a different column of the same keys in the same instant, round after
round; every column must end with its last round's value. In ClickHouse each runtime reads the
stored state, merges its cells and inserts a whole row, so two concurrent merges each insert a state
lacking the other's cell and ``FINAL`` keeps one of them; the sink's settling read joins them again
(docs/sinks.md, Replicas). Background merges are stopped on the table here: a merge that drops a state
between another runtime's insert and its settling read is the window that remains (documented there).
"""

from __future__ import annotations

import asyncio
import uuid

import clickhouse_connect
import pytest

from pipeline_runtime.cql.schema import ColumnKind, TableSchema
from pipeline_runtime.events import Cell, ChangeEvent, Op, Position, SourcePosition
from pipeline_runtime.sinks.base import Batch
from tests.integration.sinks.conftest import Harness
from tests.integration.sinks.workload import column

pytestmark = [pytest.mark.postgres, pytest.mark.clickhouse]

RUNTIMES = 3
KEYS = 20
ROUNDS = 25
BASE_TS = 1_700_000_000_000_000


def schema() -> TableSchema:
    columns = [column("id", "int", ColumnKind.PARTITION_KEY, 0)]
    columns += [column(f"c{n}", "bigint") for n in range(RUNTIMES)]
    return TableSchema("ks", "race", uuid.uuid4(), tuple(columns))


def batch(runtime: int, round_: int) -> Batch:
    """Runtime ``runtime``'s cell of every key for this round (a later round has a later writetime)."""
    events = [
        ChangeEvent(
            Op.UPSERT,
            "ks",
            "race",
            {"id": key},
            SourcePosition(f"node-{runtime}", Position(1, round_ * KEYS + key)),
            {},
            {f"c{runtime}": Cell(round_, BASE_TS + round_ * 10 + runtime)},
        )
        for key in range(KEYS)
    ]
    return Batch(events, None)


@pytest.mark.parametrize("harness", ["postgres", "clickhouse", "clickhouse-python"], indirect=True)
async def test_replicas_writing_the_same_rows_in_lockstep_lose_no_cell(harness: Harness) -> None:
    table = schema()
    sinks = [harness.make(f"replica-{n}") for n in range(RUNTIMES)]
    await asyncio.gather(*(s.open() for s in sinks))
    try:
        await asyncio.gather(*(s.ensure_table(table) for s in sinks))
        if harness.kind.startswith("clickhouse"):
            client = clickhouse_connect.get_client(dsn=harness.dsn)
            client.command(f"SYSTEM STOP MERGES `{harness.namespace}`.`race__state`")
        for round_ in range(ROUNDS):
            await asyncio.gather(*(sink.write(batch(n, round_)) for n, sink in enumerate(sinks)))
            rows = {r["id"]: r for r in await harness.rows(table)}
            lost = {
                (key, f"c{n}"): rows.get(key, {}).get(f"c{n}")
                for key in range(KEYS)
                for n in range(RUNTIMES)
                if rows.get(key, {}).get(f"c{n}") != round_
            }
            assert not lost, f"round {round_}: {len(lost)} cells behind this round, e.g. {list(lost.items())[:5]}"
        if harness.kind.startswith("clickhouse"):
            # The race did happen (states inserted concurrently were joined), and was settled.
            assert sum(sink.settled for sink in sinks) > 0  # type: ignore[attr-defined]
    finally:
        await asyncio.gather(*(s.close() for s in sinks))
