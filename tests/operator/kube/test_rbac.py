"""Each runtime's ServiceAccount may write its own report ConfigMap and nothing else."""

from __future__ import annotations

from typing import Any

import pytest
from cdc_operator import naming
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


def test_runtime_identity_is_limited_to_its_own_report(cassandra: Cluster, operator: KopfRunner) -> None:
    cassandra.apply(pipeline("shop"), other_pipeline())
    wait_for(lambda: cassandra.get("rolebinding", "shop-cassandra-1"), "the runtimes' RoleBindings")
    me = runtime_identity(cassandra, "cassandra-0", "shop")
    mine = f"configmaps/{naming.runtime_report('shop', 'cassandra-0')}"
    assert can_i(cassandra, "patch", mine, identity=me)
    assert can_i(cassandra, "get", mine, identity=me)
    denied = [
        ("patch", f"configmaps/{naming.runtime_report('shop', 'cassandra-1')}"),  # another node's report
        ("update", mine),
        ("delete", mine),
        ("create", "configmaps"),
        ("list", "configmaps"),
        ("patch", "cdcpipelines.headrace.io/shop", "--subresource=status"),
        ("patch", "cdcpipelines.headrace.io/other", "--subresource=status"),
        ("patch", "cdcpipelines.headrace.io/shop"),
        ("get", "cdcpipelines.headrace.io/shop"),
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


def test_a_runtime_really_writes_only_its_own_report(cassandra: Cluster, operator: KopfRunner) -> None:
    """Its report reaches status.nodes through the operator; a write to another node's report or to the
    pipeline's status is refused by the API server."""
    cassandra.apply(pipeline("shop"), other_pipeline())
    wait_for(lambda: cassandra.get("configmap", naming.runtime_report("shop", "cassandra-1")), "the report objects")
    report(cassandra, "cassandra-0")  # as system:serviceaccount:<ns>:shop-cassandra-0
    node = wait_for(
        lambda: ((cassandra.get("cdcp", "shop") or {}).get("status", {}).get("nodes") or {}).get("cassandra-0"),
        "cassandra-0's report in status.nodes",
    )
    assert node["eventsPerSecond"] == 250.0
    me = f"--as={runtime_identity(cassandra, 'cassandra-0', 'shop')}"
    attempts = [
        (
            "patch",
            "configmap",
            naming.runtime_report("shop", "cassandra-1"),
            "--type=merge",
            "-p",
            '{"data": {"x": "y"}}',
        ),
        ("patch", "cdcp", "shop", "--subresource=status", "--type=merge", "-p", '{"status": {"phase": "Running"}}'),
        ("patch", "cdcp", "other", "--subresource=status", "--type=merge", "-p", '{"status": {"phase": "Running"}}'),
    ]
    for attempt in attempts:
        refused = cassandra.kubectl(*attempt, me, check=False)
        assert refused.returncode != 0 and "forbidden" in refused.stderr, attempt
    assert "x" not in (
        (cassandra.get("configmap", naming.runtime_report("shop", "cassandra-1")) or {}).get("data") or {}
    )
