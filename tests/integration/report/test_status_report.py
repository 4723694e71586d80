"""The runtime reports its node's status onto its CDCPipeline on a real kube-apiserver."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kubernetes import client, config

from devservices.envtest import ControlPlane
from pipeline_runtime.config.status import NodeSinkStatus, NodeStatus, Position
from pipeline_runtime.report.kubernetes import KubernetesStatusReporter

pytestmark = pytest.mark.kube
REPO = Path(__file__).resolve().parents[3]

PIPELINE = {
    "apiVersion": "headrace.io/v1alpha1",
    "kind": "CDCPipeline",
    "metadata": {"name": "orders"},
    "spec": {
        "source": {"cassandra": {"podSelector": {"app": "cassandra"}}, "tables": [{"keyspace": "shop"}]},
        "sinks": [{"name": "pg", "type": "postgres", "connectionSecret": {"name": "pg", "key": "dsn"}}],
    },
}


@pytest.fixture
def pipeline(control_plane: ControlPlane, kube_namespace: str, tmp_path: Path) -> str:
    control_plane.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
    control_plane.wait_established("cdcpipelines.headrace.io", timeout=30)
    manifest = tmp_path / "pipeline.json"
    manifest.write_text(json.dumps(PIPELINE))
    control_plane.kubectl("apply", "-n", kube_namespace, "-f", str(manifest))
    return kube_namespace


def status_of(control_plane: ControlPlane, namespace: str) -> dict[str, object]:
    out = control_plane.kubectl("get", "cdcpipeline", "orders", "-n", namespace, "-o", "json").stdout
    return json.loads(out).get("status", {})  # type: ignore[no-any-return]


async def test_each_runtime_writes_only_its_own_node_entry(control_plane: ControlPlane, pipeline: str) -> None:
    api = config.new_client_from_config(str(control_plane.kubeconfig))
    first = KubernetesStatusReporter(pipeline, "orders", "cassandra-0", api_client=api)
    second = KubernetesStatusReporter(pipeline, "orders", "cassandra-1", api_client=api)
    report = NodeStatus(
        position=Position(segment_id=17, offset=4096),
        lag_seconds=1.5,
        events_per_second=250.0,
        cdc_raw_bytes=2048,
        cdc_raw_share=0.01,
        sinks={"pg": NodeSinkStatus(healthy=True, rows_written=10)},
    )
    assert await first.report(report)
    assert await second.report(report.model_copy(update={"last_error": "sink pg: write failed: connection refused"}))
    nodes = status_of(control_plane, pipeline)["nodes"]
    assert isinstance(nodes, dict)
    assert set(nodes) == {"cassandra-0", "cassandra-1"}
    assert nodes["cassandra-0"]["position"] == {"segmentId": 17, "offset": 4096}
    assert nodes["cassandra-0"]["lagSeconds"] == 1.5
    assert nodes["cassandra-0"]["sinks"]["pg"]["rowsWritten"] == 10
    assert nodes["cassandra-1"]["lastError"] == "sink pg: write failed: connection refused"

    # A later report replaces only that node's entry; clearing an error removes it.
    assert await second.report(report)
    nodes = status_of(control_plane, pipeline)["nodes"]
    assert isinstance(nodes, dict)
    assert "lastError" not in nodes["cassandra-1"]
    assert nodes["cassandra-0"]["position"] == {"segmentId": 17, "offset": 4096}


async def test_a_failed_report_is_logged_not_raised(control_plane: ControlPlane, kube_namespace: str) -> None:
    api = config.new_client_from_config(str(control_plane.kubeconfig))
    reporter = KubernetesStatusReporter(kube_namespace, "does-not-exist", "cassandra-0", api_client=api)
    assert await reporter.report(NodeStatus()) is False
    assert isinstance(api, client.ApiClient)
