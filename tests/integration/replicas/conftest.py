"""A three-node Cassandra cluster (127.0.0.1-3, RF=3 keyspaces) for the replica tests, one per commitlog format."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devservices.cassandra import COMPAT_MODES, CassandraCluster, running_cluster
from devservices.pytest_require import require_tool


@pytest.fixture(scope="module", params=COMPAT_MODES, ids=["v7", "v8"])
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CassandraCluster]:
    """Three nodes with CDC on, started for this module's tests and always stopped (about 30 s to start)."""
    require_tool("java", "Cassandra 5.0 runs on Java 17")
    with running_cluster(tmp_path_factory.mktemp("cluster"), size=3, compat_mode=request.param) as running:
        yield running
