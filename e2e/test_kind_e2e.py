"""Headrace on a kind cluster: Cassandra StatefulSet -> operator -> runtime -> PostgreSQL."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def missing_tool() -> str | None:
    for tool in ("docker", "kind", "kubectl", "helm"):
        if shutil.which(tool) is None:
            return tool
    if subprocess.run(["docker", "info"], capture_output=True, check=False).returncode != 0:
        return "docker (a running Docker engine)"
    return None


pytestmark = pytest.mark.skipif(missing_tool() is not None, reason=f"needs {missing_tool()}")


def run(*args: str, timeout: float = 600) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True, timeout=timeout).stdout


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    name = f"headrace-e2e-{uuid.uuid4().hex[:6]}"
    run("kind", "create", "cluster", "--name", name, "--wait", "120s")
    try:
        run("docker", "build", "-t", "headrace:e2e", str(REPO))
        run("kind", "load", "docker-image", "headrace:e2e", "--name", name)
        yield f"kind-{name}"
    finally:
        run("kind", "delete", "cluster", "--name", name)


def wait_for(check: str, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if subprocess.run(["sh", "-c", check], capture_output=True, check=False).returncode == 0:
            return
        time.sleep(5)
    raise AssertionError(f"timed out waiting for: {check}")


def test_rows_written_to_cassandra_arrive_in_postgres(cluster: str) -> None:
    ctx = ["--context", cluster]
    run("kubectl", *ctx, "apply", "-f", str(HERE / "manifests" / "cassandra.yaml"))
    run(
        "kubectl",
        *ctx,
        "run",
        "postgres",
        "--image=postgres:16",
        "--env=POSTGRES_HOST_AUTH_METHOD=trust",
        "--port=5432",
        "--expose",
    )
    run(
        "helm",
        "--kube-context",
        cluster,
        "install",
        "headrace",
        str(REPO / "charts" / "headrace"),
        "--set",
        "image.repository=headrace",
        "--set",
        "image.tag=e2e",
        "--wait",
    )
    run(
        "kubectl",
        *ctx,
        "create",
        "secret",
        "generic",
        "shop-sinks",
        "--from-literal=postgres-dsn=postgresql://postgres@postgres:5432/postgres",
    )
    wait_for(f"kubectl --context {cluster} wait --for=condition=Ready pod/cassandra-0 --timeout=10s")
    cql = ["kubectl", *ctx, "exec", "cassandra-0", "--", "cqlsh", "-e"]
    run(*cql, "CREATE KEYSPACE shop WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}")
    run(*cql, "CREATE TABLE shop.orders (id int PRIMARY KEY, item text) WITH cdc = true")
    run("kubectl", *ctx, "apply", "-f", str(HERE / "manifests" / "pipeline.yaml"))
    for i in range(10):
        run(*cql, f"INSERT INTO shop.orders (id, item) VALUES ({i}, 'item {i}')")
    wait_for(f"kubectl --context {cluster} wait --for=condition=Ready cdcpipeline/shop --timeout=10s")
    psql = ["kubectl", *ctx, "exec", "postgres", "--", "psql", "-U", "postgres", "-At", "-c"]
    wait_for(" ".join(psql) + " 'SELECT count(*) FROM shop.orders' | grep -qx 10")
    assert run(*psql, "SELECT item FROM shop.orders WHERE id = 3").strip() == "item 3"
