"""A pre-loaded table read as a snapshot equals Cassandra's ``SELECT *`` in every sink kind."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from devservices.cassandra import CassandraNode
from pipeline_runtime.events import Op, Position
from pipeline_runtime.source.snapshot import snapshot_node
from tests.integration.sinks.conftest import Harness
from tests.integration.snapshot.support import NODE, assert_equal, preload, registry_schema, snapshot, write

pytestmark = pytest.mark.cassandra


async def test_snapshot_of_every_column_kind_equals_cassandra(
    node: CassandraNode, keyspace: str, make_harness: Callable[[], Harness]
) -> None:
    preload(node.session(keyspace))
    _, schema = registry_schema(node, keyspace)
    events = snapshot(node, schema)
    assert {e.op for e in events} == {Op.UPSERT}
    assert [e.source.position for e in events] == [Position(0, n) for n in range(1, len(events) + 1)]
    harness = make_harness()
    batches = [events[i : i + 10] for i in range(0, len(events), 10)]
    committed = await write(harness, schema, batches, lambda: assert_equal(harness, node, keyspace, schema))
    # the snapshot's checkpoint is its own node's: a commitlog node's checkpoint stays untouched
    assert committed == {snapshot_node(NODE): Position(0, len(events))}
