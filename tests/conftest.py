"""Session fixtures for the real services every integration test talks to.

Cassandra, PostgreSQL and the ClickHouse engine are started by the project's
own code (``devservices``), once per test session, on free loopback ports,
and always stopped. A missing tool skips the tests that need it with a reason
naming the tool, except under CI (``CI=true``), where it fails the run.
"""

from __future__ import annotations

import itertools
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from devservices.cassandra import COMPAT_MODES, CassandraNode, running_cassandra
from devservices.clickhouse import chdb_dsn as engine_dsn
from devservices.clickhouse_http import ClickHouseFront, running_clickhouse_front
from devservices.postgres import PostgresServer, running_postgres
from devservices.pytest_require import require_module, require_tool

#: The envtest control plane (kube-apiserver + etcd) fixtures: control_plane, kube_namespace ...
pytest_plugins = ["devservices.pytest_envtest"]


class CassandraPool:
    """At most one running node per commitlog compatibility mode, for the whole session."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.nodes: dict[str, CassandraNode] = {}
        self.stack: list[object] = []

    def get(self, mode: str) -> CassandraNode:
        if mode not in self.nodes:
            require_tool("java", "Cassandra 5.0 runs on Java 17")
            context = running_cassandra(self.base / mode.lower(), mode)
            self.nodes[mode] = context.__enter__()
            self.stack.append(context)
        return self.nodes[mode]

    def close(self) -> None:
        while self.stack:
            context = self.stack.pop()
            context.__exit__(None, None, None)  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def cassandra_pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CassandraPool]:
    pool = CassandraPool(tmp_path_factory.mktemp("cassandra"))
    yield pool
    pool.close()


@pytest.fixture(scope="session", params=COMPAT_MODES, ids=["v7", "v8"])
def cassandra(request: pytest.FixtureRequest, cassandra_pool: CassandraPool) -> CassandraNode:
    """A running Cassandra 5.0 with CDC on, once per commitlog format (v7 and v8)."""
    return cassandra_pool.get(request.param)


@pytest.fixture(scope="session")
def cassandra_v7(cassandra_pool: CassandraPool) -> CassandraNode:
    """Cassandra with storage_compatibility_mode CASSANDRA_4 (commitlog v7)."""
    return cassandra_pool.get("CASSANDRA_4")


@pytest.fixture(scope="session")
def cassandra_v8(cassandra_pool: CassandraPool) -> CassandraNode:
    """Cassandra with storage_compatibility_mode NONE (commitlog v8)."""
    return cassandra_pool.get("NONE")


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL server for the session."""
    require_tool("psql", "PostgreSQL's client and server come from Debian's postgresql package")
    # The server may run as the postgres user: its folder must not sit under root's private tmp.
    workdir = Path(tempfile.mkdtemp(prefix="headrace-pg-"))
    try:
        with running_postgres(workdir, durable=False) as server:  # fast: tests never crash the machine
            yield server
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


_database_numbers = itertools.count(1)


@pytest.fixture
def postgres_dsn(postgres: PostgresServer, request: pytest.FixtureRequest) -> str:
    """DSN of a fresh, empty database for one test."""
    stem = re.sub(r"[^a-z0-9]+", "_", request.node.name.lower())[:40]
    return postgres.create_database(f"t{next(_database_numbers)}_{stem}")


@pytest.fixture(scope="session")
def chdb_dsn() -> str:
    """DSN of the in-process ClickHouse engine; chdb holds one data path per process, shared by all tests."""
    require_module("chdb", "the in-process ClickHouse engine comes from PyPI (`make dev`)")
    return engine_dsn()


@pytest.fixture(scope="session")
def clickhouse_front() -> Iterator[ClickHouseFront]:
    """ClickHouse's HTTP interface over the engine, in its own process: the sink's network path."""
    require_module("chdb", "the ClickHouse front serves the chdb engine (`make dev`)")
    folder = Path(tempfile.mkdtemp(prefix="headrace-chfront-"))
    try:
        with running_clickhouse_front(folder) as front:
            yield front
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def clickhouse_http_dsn(clickhouse_front: ClickHouseFront) -> str:
    """An http:// DSN of the ClickHouse front, with its user's password."""
    return clickhouse_front.dsn
