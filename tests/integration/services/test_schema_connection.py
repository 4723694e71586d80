"""The runtime's schema connection speaks Cassandra 5.0's protocol at once: no downgrade warnings at start."""

from __future__ import annotations

import logging

import pytest

from devservices.cassandra import CassandraNode
from pipeline_runtime.config.model import CassandraSource
from pipeline_runtime.source.connect import connect

pytestmark = pytest.mark.cassandra


def test_connect_logs_no_protocol_downgrade(cassandra_v8: CassandraNode, caplog: pytest.LogCaptureFixture) -> None:
    source = CassandraSource.model_validate(
        {"podSelector": {"app": "cassandra"}, "contactPoint": cassandra_v8.host, "port": cassandra_v8.port}
    )
    with caplog.at_level(logging.DEBUG, logger="cassandra"):
        session = connect(source, lambda ref: "")
    try:
        assert session.execute("SELECT release_version FROM system.local").one()[0].startswith("5.0")
        assert session.cluster.protocol_version == 5
    finally:
        session.cluster.shutdown()
    downgrades = [r.getMessage() for r in caplog.records if "Downgrading" in r.getMessage()]
    assert downgrades == []
