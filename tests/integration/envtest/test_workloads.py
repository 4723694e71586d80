"""With the workload components, the control plane behaves like a cluster: Pods run, GC and namespaces finish."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest

from devservices.envtest import FAKE_NODE, ControlPlane

pytestmark = [pytest.mark.kube, pytest.mark.slow]


def wait_for(what: str, check: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout:.0f} s"
        time.sleep(0.3)


def pods(plane: ControlPlane, namespace: str) -> list[dict[str, object]]:
    listed = json.loads(plane.kubectl("get", "pods", f"--namespace={namespace}", "--output=json").stdout)
    return [
        {"name": p["metadata"]["name"], "phase": p["status"].get("phase"), "node": p["spec"].get("nodeName")}
        for p in listed["items"]
    ]


def test_fake_node_is_ready(workload_control_plane: ControlPlane) -> None:
    assert workload_control_plane.nodes == (FAKE_NODE,)
    node = json.loads(workload_control_plane.kubectl("get", "node", FAKE_NODE, "--output=json").stdout)
    ready = [c["status"] for c in node["status"]["conditions"] if c["type"] == "Ready"]
    assert ready == ["True"]


def test_deployment_pods_run_and_are_garbage_collected(workload_control_plane: ControlPlane) -> None:
    plane = workload_control_plane
    plane.kubectl("create", "namespace", "workloads")
    plane.kubectl("create", "deployment", "runtime", "--image=headrace:test", "--replicas=2", "--namespace=workloads")

    def two_running() -> bool:
        current = pods(plane, "workloads")
        return len(current) == 2 and all(p["phase"] == "Running" and p["node"] == FAKE_NODE for p in current)

    wait_for("two Running pods on the kwok node", two_running)
    available = plane.kubectl(
        "get", "deployment", "runtime", "--namespace=workloads", "--output=jsonpath={.status.availableReplicas}"
    )
    assert available.stdout == "2"

    # Deleting the Deployment in the background leaves the ReplicaSet and Pods to the garbage collector.
    plane.kubectl("delete", "deployment", "runtime", "--namespace=workloads", "--cascade=background")
    wait_for("garbage collection of the Pods", lambda: pods(plane, "workloads") == [])


def test_namespace_deletion_finishes(workload_control_plane: ControlPlane) -> None:
    plane = workload_control_plane
    plane.kubectl("create", "namespace", "short-lived")
    plane.kubectl("create", "configmap", "c", "--namespace=short-lived", "--from-literal=a=b")
    plane.kubectl("delete", "namespace", "short-lived", "--wait=false")
    wait_for(
        "deletion of the namespace",
        lambda: plane.kubectl("get", "namespace", "short-lived", check=False).returncode != 0,
    )
