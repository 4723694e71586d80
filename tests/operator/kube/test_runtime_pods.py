"""A runtime Pod that cannot run shows in the pipeline's status with the Pod's own reason.

On the control plane with a scheduler, a controller manager and a kwok node: the Cassandra pods run
on the kwok node, their runtime Deployments get Pods from the controller manager, and the scheduler
cannot place them (the data volume's claim does not exist here). The operator reads the runtime Pods
and turns the pipeline Degraded with the scheduler's message, instead of waiting with nothing to say.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from devservices.envtest import FAKE_NODE, ControlPlane
from tests.operator.kube.cluster import Cluster, cassandra_pod, condition, pipeline, secret, wait_for
from tests.operator.kube.conftest import CRD, operator_runner

pytestmark = [pytest.mark.kube, pytest.mark.slow]


@pytest.fixture
def workloads(workload_control_plane: ControlPlane) -> Iterator[Cluster]:
    plane = workload_control_plane
    plane.kubectl("apply", "-f", str(CRD))
    plane.wait_established("cdcpipelines.headrace.io", timeout=60)
    namespace = f"t-{secrets.token_hex(4)}"
    plane.kubectl("create", "namespace", namespace)
    yield Cluster(plane, namespace)
    plane.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def on_fake_node(pod: dict[str, Any]) -> dict[str, Any]:
    pod["spec"]["nodeName"] = FAKE_NODE  # kwok runs it there: a live Cassandra pod
    return pod


def test_an_unschedulable_runtime_is_degraded_with_the_schedulers_reason(
    workloads: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster = workloads
    cluster.apply(on_fake_node(cassandra_pod("cassandra-0")), secret("shop-sinks", "postgres-dsn"))
    wait_for(
        lambda: (cluster.get("pod", "cassandra-0") or {}).get("status", {}).get("phase") == "Running",
        "the Cassandra pod Running on the kwok node",
    )
    monkeypatch.setenv("KUBECONFIG", str(cluster.plane.kubeconfig))
    monkeypatch.setenv("HEADRACE_REPORT_STALE_SECONDS", "60")
    source = {"cassandra": {"podSelector": {"app": "cassandra"}}, "tables": [{"keyspace": "shop"}]}
    with operator_runner(cluster) as runner:
        cluster.apply(pipeline(source=source))

        def degraded() -> Any:
            body = cluster.get("cdcp", "shop") or {}
            found = [c for c in body.get("status", {}).get("conditions", []) if c["type"] == "Degraded"]
            return body if found and found[0]["reason"] == "RuntimePodFailing" else False

        body = wait_for(degraded, "Degraded with the runtime Pod's reason", timeout=90)
        message = condition(body, "Degraded")["message"]
        assert "the runtime of cassandra-0 does not run" in message
        assert "cannot be scheduled (Unschedulable)" in message
        assert 'persistentvolumeclaim "server-data-cassandra-0" not found' in message, message
        assert body["status"]["phase"] == "Degraded"
    assert runner.exception is None, runner.output
