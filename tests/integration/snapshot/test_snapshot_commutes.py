"""Snapshot events and the CDC events of changes made after the snapshot read merge to Cassandra's state in any order.

The table has CDC on from its creation, so the CDC stream also carries the
writes the snapshot already holds (as a runtime that starts on a node with
cdc_raw still full sees them): replays of older writes must not beat the
snapshot, and the snapshot must not beat the newer changes.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from devservices.cassandra import CassandraNode
from pipeline_runtime.events import ChangeEvent
from pipeline_runtime.source.snapshot import snapshot_node
from tests.integration.sinks.conftest import Harness
from tests.integration.snapshot.support import (
    NODE,
    PAST,
    assert_equal,
    follow_cdc,
    preload,
    registry_schema,
    snapshot,
    write,
)

pytestmark = pytest.mark.cassandra

CHANGES = (
    "UPDATE t SET a = 'new', b = null WHERE k = 0 AND ck = 0",  # partial update and a cell deletion
    "UPDATE t SET s = s - {1}, m = m - {'p'} WHERE k = 0 AND ck = 0",  # set element and map key removed
    "UPDATE t SET l = ['over'] WHERE k = 1 AND ck = 0",  # list overwritten
    "UPDATE t SET l = l + ['later'], s = s + {77} WHERE k = 2 AND ck = 0",  # list and set appended
    "DELETE FROM t WHERE k = 3 AND ck = 0",  # row
    "DELETE FROM t WHERE k = 4 AND ck > 0",  # range
    "DELETE FROM t WHERE k = 5",  # partition
    "UPDATE t SET st = 'new static' WHERE k = 6",
    "DELETE a, fl FROM t WHERE k = 7 AND ck = 0",
    "UPDATE t SET ud.street = 'changed', fu = {street: 'f', zip: 1} WHERE k = 8 AND ck = 0",
    "INSERT INTO t (k, ck, a, l) VALUES (9, 9, 'new row', ['n'])",
    f"UPDATE t USING TIMESTAMP {PAST - 1} SET a = 'too old' WHERE k = 0 AND ck = 1",  # older than the row: loses
    f"DELETE FROM t USING TIMESTAMP {PAST - 1} WHERE k = 10 AND ck = 1",  # older than the row: no effect
    "DELETE FROM t WHERE k = 100 AND ck = 0",  # a key-only row deleted
    "UPDATE t SET st = null WHERE k = 200",  # a static-only partition emptied
    "UPDATE t USING TTL 3600 SET a = 'expiring now' WHERE k = 11 AND ck = 0",
)


def batches(events: list[ChangeEvent], size: int = 10) -> list[list[ChangeEvent]]:
    return [events[i : i + size] for i in range(0, len(events), size)]


async def test_snapshot_and_cdc_commute_in_every_order(
    node: CassandraNode, keyspace: str, make_harness: Callable[[], Harness]
) -> None:
    session = node.session(keyspace)
    preload(session)
    session.execute("CREATE TABLE done (k int PRIMARY KEY) WITH cdc = true")
    registry, schema = registry_schema(node, keyspace)
    snap = snapshot(node, schema)
    for change in CHANGES:
        session.execute(change)
    session.execute("INSERT INTO done (k) VALUES (1)")
    cdc = [e for e in follow_cdc(node, registry, keyspace, "done") if e.table == "t"]
    assert len(cdc) > len(CHANGES)  # the pre-load's writes as well as the changes

    interleaved = snap + cdc
    random.Random(12).shuffle(interleaved)
    orders = {
        "cdc, then snapshot": batches(cdc) + batches(snap),
        "snapshot, then cdc": batches(snap) + batches(cdc),
        "interleaved": batches(interleaved, 7),
        "every event twice, reversed": batches(list(reversed(cdc + snap)) + snap + cdc, 13),
    }
    for name, order in orders.items():
        harness = make_harness()

        async def check(harness: Harness = harness, name: str = name) -> None:
            try:
                await assert_equal(harness, node, keyspace, schema)
            except AssertionError as exc:
                raise AssertionError(f"order {name}: {exc}") from exc

        committed = await write(harness, schema, order, check)
        assert snapshot_node(NODE) in committed, name
