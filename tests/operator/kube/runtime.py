"""Simulated runtimes: status reports written the way pipeline_runtime.report writes them, as the runtime."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from cdc_operator import naming

from pipeline_runtime.config.status import NodeSinkStatus, NodeStatus, Position
from pipeline_runtime.report.kubernetes import report_patch
from tests.operator.kube.cluster import Cluster, wait_for


def runtime_identity(cluster: Cluster, node: str, pipeline: str = "shop") -> str:
    """The user name of the ServiceAccount of ``node``'s runtime."""
    return f"system:serviceaccount:{cluster.namespace}:{naming.runtime_deployment(pipeline, node)}"


def current_config_hash(cluster: Cluster, pipeline: str = "shop") -> str:
    config_map = cluster.get("configmap", naming.config_map(pipeline))
    assert config_map is not None
    return str(config_map["metadata"]["annotations"][naming.ANNOTATION_CONFIG_HASH])


def report(cluster: Cluster, node: str, pipeline: str = "shop", **fields: Any) -> None:
    """Write ``node``'s report as its runtime's ServiceAccount would (so RBAC is exercised too)."""
    values: dict[str, Any] = {
        "position": Position(segment_id=1700000000000, offset=4096),
        "lag_seconds": 0.8,
        "events_per_second": 250.0,
        "cdc_raw_bytes": 1024,
        "cdc_raw_share": 0.01,
        "last_report_time": datetime.now(UTC),
        "config_hash": current_config_hash(cluster, pipeline),
        "sinks": {"pg": NodeSinkStatus(healthy=True, rows_written=500, last_commit_time=datetime.now(UTC))},
    }
    values.update(fields)
    runtime = naming.runtime_deployment(pipeline, node)
    wait_for(lambda: cluster.get("rolebinding", runtime), f"the RoleBinding of {runtime}")
    wait_for(lambda: cluster.get("configmap", naming.runtime_report(pipeline, node)), f"the report of {runtime}")
    cluster.kubectl(
        "patch",
        "configmap",
        naming.runtime_report(pipeline, node),
        "--type=merge",
        "-p",
        json.dumps(report_patch(NodeStatus(**values))),
        f"--as={runtime_identity(cluster, node, pipeline)}",
    )
