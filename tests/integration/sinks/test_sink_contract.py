"""The correctness oracle (docs/sinks.md, 'Why writes are exactly-once in effect') against every sink.

Each event is delivered twice, in shuffled order, in batches of random sizes;
the sink's view must equal what Cassandra's SELECT * would show.
"""

from __future__ import annotations

import random

import pytest

from pipeline_runtime.events import Bound, Cell, ChangeEvent, Deletion, Op, Position, SourcePosition
from pipeline_runtime.sinks.base import Batch, Checkpoint, Sink
from tests.integration.sinks.conftest import Harness
from tests.integration.sinks.oracle import Oracle
from tests.integration.sinks.workload import (
    Workload,
    actual_rows,
    contract_schema,
    expected_rows,
    plain_schema,
)

pytestmark = [pytest.mark.postgres, pytest.mark.clickhouse]


async def deliver(
    sink: Sink, events: list, seed: int, pipeline: str = "p", max_batch: int = 60, *, copies: int = 2
) -> None:
    rng = random.Random(seed)
    doubled = events * copies
    rng.shuffle(doubled)
    start = 0
    while start < len(doubled):
        size = rng.randrange(1, max_batch)
        chunk = doubled[start : start + size]
        start += size
        last = max(e.source.position for e in chunk)
        await sink.write(Batch(chunk, Checkpoint(pipeline, "node-1", last)))


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_view_equals_cassandra_after_shuffled_duplicate_delivery(
    harness: Harness, opened: Sink, seed: int
) -> None:
    schema = contract_schema()
    await opened.ensure_table(schema)
    workload = Workload(schema, seed)
    events = workload.events(400)
    oracle = Oracle(schema)
    for event in events:
        oracle.apply(event)

    await deliver(opened, events, seed)

    expected = expected_rows(schema, oracle.select(workload.now))
    actual = actual_rows(schema, await harness.rows(schema))
    assert expected, "the workload should leave some rows"
    for k in sorted(set(actual) | set(expected)):
        if actual.get(k) != expected.get(k):
            print("DIFF", k, "\n actual  ", actual.get(k), "\n expected", expected.get(k))
    assert actual == expected
    positions = await opened.committed_positions("p")
    assert positions == {"node-1": max(e.source.position for e in events)}
    assert opened.health().rows_written == 2 * len(events)


@pytest.mark.parametrize("seed", [6, 7])
async def test_view_equals_cassandra_after_one_shuffled_delivery(harness: Harness, opened: Sink, seed: int) -> None:
    """Each change once, out of writetime order (as one runtime writes with replicaDedup on)."""
    schema = contract_schema()
    await opened.ensure_table(schema)
    workload = Workload(schema, seed)
    events = workload.events(400)
    oracle = Oracle(schema)
    for event in events:
        oracle.apply(event)

    await deliver(opened, events, seed, copies=1)

    expected = expected_rows(schema, oracle.select(workload.now))
    assert expected, "the workload should leave some rows"
    assert actual_rows(schema, await harness.rows(schema)) == expected


async def test_the_newer_of_two_deletions_in_one_batch_wins_whatever_their_order(
    harness: Harness, opened: Sink
) -> None:
    """A hint or another replica's change read later puts an older deletion after a newer one in a batch.

    Found by the replica-dedup stress test: the PostgreSQL sink applied the last of two deletions of one
    partition to its rows, not the newest, and nothing later touched the partition to repair it.
    """
    schema = contract_schema()
    await opened.ensure_table(schema)
    pk, row = {"pk": "p"}, {"ck": 1, "ck2": "a"}

    def at(offset: int) -> SourcePosition:
        return SourcePosition("node-1", Position(1, offset))

    await opened.write(Batch([ChangeEvent(Op.UPSERT, "ks", "t", pk, at(1), row, {"a": Cell(1, 200)})]))
    deletions = [
        ChangeEvent(Op.DELETE_PARTITION, "ks", "t", pk, at(2), deletion=Deletion(300, 1)),
        ChangeEvent(Op.DELETE_PARTITION, "ks", "t", pk, at(3), deletion=Deletion(100, 1)),
        ChangeEvent(Op.DELETE_RANGE, "ks", "t", pk, at(4), deletion=Deletion(300, 1), range_start=Bound((1,), True)),
        ChangeEvent(Op.DELETE_RANGE, "ks", "t", pk, at(5), deletion=Deletion(100, 1), range_start=Bound((1,), True)),
    ]
    await opened.write(Batch(deletions, Checkpoint("p", "node-1", Position(1, 5))))
    assert await harness.rows(schema) == []


@pytest.mark.parametrize("seed", [4, 5])
async def test_plain_upserts_equal_cassandra_after_shuffled_duplicate_delivery(
    harness: Harness, opened: Sink, seed: int
) -> None:
    """The same oracle for a table the fast paths take (no statics, no collections).

    Mostly plain upserts with partial columns, TTLs, cell tombstones and a few
    row deletes, so batches go through the fast paths and, when a row delete or
    a repeated row lands in one, through the general path: the two must agree.
    A range delete arrives last, so the general path then merges over states
    the fast path wrote.
    """
    schema = plain_schema()
    await opened.ensure_table(schema)
    workload = Workload(schema, seed)
    workload.partitions = 20  # with small batches, most repeat no row: the fast paths take those
    events = workload.events(600, plain=True)
    events.append(workload._delete_range())
    events += workload.events(100, plain=True)
    oracle = Oracle(schema)
    for event in events:
        oracle.apply(event)

    await deliver(opened, events, seed, max_batch=16)

    expected = expected_rows(schema, oracle.select(workload.now))
    actual = actual_rows(schema, await harness.rows(schema))
    assert expected, "the workload should leave some rows"
    assert actual == expected


async def test_checkpoint_never_moves_back(opened: Sink) -> None:
    schema = contract_schema()
    await opened.ensure_table(schema)
    events = Workload(schema, 7).events(5)
    await opened.write(Batch(events, Checkpoint("p2", "n", Position(5, 500))))
    await opened.write(Batch(events, Checkpoint("p2", "n", Position(4, 900))))
    assert await opened.committed_positions("p2") == {"n": Position(5, 500)}
