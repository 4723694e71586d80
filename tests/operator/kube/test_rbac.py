"""The runtime's ServiceAccount may patch its own pipeline's status and nothing else."""

from __future__ import annotations

from typing import Any

import pytest
from kopf.testing import KopfRunner

from tests.operator.kube.cluster import Cluster, pipeline, wait_for
from tests.operator.kube.runtime import report, runtime_identity

pytestmark = pytest.mark.kube


def can_i(cluster: Cluster, *args: str, identity: str) -> bool:
    result = cluster.kubectl("auth", "can-i", *args, f"--as={identity}", check=False)
    answer = result.stdout.strip()
    assert answer in ("yes", "no"), result.stderr
    return answer == "yes"


def other_pipeline() -> dict[str, Any]:
    """A second pipeline in the namespace, on other Cassandra pods (one pipeline per pod: CdcRawShared)."""
    source = {"cassandra": {"podSelector": {"app": "other-cassandra"}}, "tables": [{"keyspace": "shop"}]}
    return pipeline("other", source=source)


def test_runtime_identity_is_limited_to_its_own_status(cassandra: Cluster, operator: KopfRunner) -> None:
    cassandra.apply(pipeline("shop"), other_pipeline())
    wait_for(lambda: cassandra.get("rolebinding", "shop-runtime"), "the runtime RoleBinding")
    me = runtime_identity(cassandra, "shop")
    assert can_i(cassandra, "patch", "cdcpipelines.headrace.io/shop", "--subresource=status", identity=me)
    assert can_i(cassandra, "get", "cdcpipelines.headrace.io/shop", "--subresource=status", identity=me)
    denied = [
        ("patch", "cdcpipelines.headrace.io/other", "--subresource=status"),
        ("patch", "cdcpipelines.headrace.io/shop"),
        ("update", "cdcpipelines.headrace.io/shop", "--subresource=status"),
        ("delete", "cdcpipelines.headrace.io/shop"),
        ("list", "cdcpipelines.headrace.io"),
        ("get", "secrets"),
        ("get", "secrets/shop-sinks"),
        ("list", "pods"),
        ("create", "deployments"),
        ("get", "configmaps/shop-config"),
    ]
    allowed = [args for args in denied if can_i(cassandra, *args, identity=me)]
    assert allowed == []


def test_runtime_identity_really_patches_only_its_node_entry(cassandra: Cluster, operator: KopfRunner) -> None:
    cassandra.apply(pipeline("shop"), other_pipeline())
    wait_for(lambda: cassandra.get("rolebinding", "shop-runtime"), "the runtime RoleBinding")
    wait_for(lambda: cassandra.get("configmap", "shop-config"), "the runtime ConfigMap")
    report(cassandra, "cassandra-0")  # as system:serviceaccount:<ns>:shop-runtime
    body = cassandra.get("cdcp", "shop")
    assert body is not None and body["status"]["nodes"]["cassandra-0"]["eventsPerSecond"] == 250.0
    forbidden = cassandra.kubectl(
        "patch",
        "cdcp",
        "other",
        "--subresource=status",
        "--type=merge",
        "-p",
        '{"status": {"phase": "Running"}}',
        f"--as={runtime_identity(cassandra, 'shop')}",
        check=False,
    )
    assert forbidden.returncode != 0 and "forbidden" in forbidden.stderr
