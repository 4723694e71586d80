"""The runtime writes its node's report into its ConfigMap on a real kube-apiserver; the operator reads it back."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cdc_operator.handlers.reports import parse_report
from kubernetes import client, config

from devservices.envtest import ControlPlane
from pipeline_runtime.config.status import NodeSinkStatus, NodeStatus, Position
from pipeline_runtime.report.kubernetes import KubernetesStatusReporter

pytestmark = pytest.mark.kube


def report_config_map(control_plane: ControlPlane, namespace: str, pod: str) -> str:
    """An empty report ConfigMap, as the operator creates one per runtime."""
    name = f"orders-{pod}-report"
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "annotations": {"headrace.io/cassandra-pod": pod}},
    }
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(body))
    return name


def stored(control_plane: ControlPlane, namespace: str, name: str) -> dict[str, Any]:
    out = control_plane.kubectl("get", "configmap", name, "-n", namespace, "-o", "json").stdout
    return json.loads(out)  # type: ignore[no-any-return]


async def test_each_runtime_writes_its_report_and_the_operator_reads_it_back(
    control_plane: ControlPlane, kube_namespace: str
) -> None:
    api = config.new_client_from_config(str(control_plane.kubeconfig))
    first = KubernetesStatusReporter(
        kube_namespace, report_config_map(control_plane, kube_namespace, "cassandra-0"), api
    )
    second = KubernetesStatusReporter(
        kube_namespace, report_config_map(control_plane, kube_namespace, "cassandra-1"), api
    )
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
    assert parse_report(stored(control_plane, kube_namespace, first.config_map)) == ("cassandra-0", report)
    pod, failing = parse_report(stored(control_plane, kube_namespace, second.config_map)) or ("", NodeStatus())
    assert pod == "cassandra-1" and failing.last_error == "sink pg: write failed: connection refused"
    assert failing.position == Position(segment_id=17, offset=4096) and failing.sinks["pg"].rows_written == 10

    # A later report replaces the whole report: a cleared error is gone.
    assert await second.report(report)
    assert parse_report(stored(control_plane, kube_namespace, second.config_map)) == ("cassandra-1", report)


async def test_a_failed_report_is_logged_not_raised(control_plane: ControlPlane, kube_namespace: str) -> None:
    api = config.new_client_from_config(str(control_plane.kubeconfig))
    reporter = KubernetesStatusReporter(kube_namespace, "does-not-exist", api_client=api)
    assert await reporter.report(NodeStatus()) is False
    assert isinstance(api, client.ApiClient)
