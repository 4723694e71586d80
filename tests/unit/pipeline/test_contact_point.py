"""Which host a runtime reads the schema from."""

from __future__ import annotations

from pipeline_runtime.app import with_contact_point
from pipeline_runtime.config.model import CassandraSource


def test_the_pipelines_contact_point_wins() -> None:
    source = CassandraSource(contact_point="cassandra.data.svc")
    assert with_contact_point(source, "cassandra-0.cassandra.data.svc").contact_point == "cassandra.data.svc"


def test_unset_means_the_nodes_own_cassandra_else_localhost() -> None:
    source = CassandraSource()
    assert source.contact_point is None
    node = "cassandra-0.cassandra.data.svc"
    assert with_contact_point(source, node).contact_point == node
    assert with_contact_point(source, None).contact_point == "127.0.0.1"
