"""Fixtures for the snapshot suites: a keyspace per test, sink harnesses as the sink suites make them."""

from __future__ import annotations

import itertools
import uuid

import pytest

from devservices.cassandra import CassandraNode
from tests.integration.sinks.conftest import Harness, timescaledb_dsn, timescaledb_server

__all__ = ["timescaledb_dsn", "timescaledb_server"]

_numbers = itertools.count(1)


@pytest.fixture
def node(cassandra: CassandraNode) -> CassandraNode:
    """Cassandra 5.0 in both commitlog formats (the CDC half of the commuting test decodes both)."""
    return cassandra


@pytest.fixture
def keyspace(node: CassandraNode) -> str:
    name = f"snap_{next(_numbers)}_{uuid.uuid4().hex[:6]}"
    node.session().execute(
        f"CREATE KEYSPACE {name} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}"
    )
    return name


@pytest.fixture(params=["postgres", "clickhouse", "timescaledb"])
def sink_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_harness(request: pytest.FixtureRequest, sink_kind: str) -> object:
    """Builds a fresh harness (own namespace) of the test's sink kind at each call (one server per test)."""
    fixture = {"postgres": "postgres_dsn", "timescaledb": "timescaledb_dsn"}.get(sink_kind, "chdb_dsn")
    dsn = request.getfixturevalue(fixture)  # here, not in the test's running event loop

    def make() -> Harness:
        return Harness(sink_kind, dsn, f"snap{next(_numbers)}")

    return make
