"""Cassandra scale-up adds a runtime; scale-down keeps it until drained (the documented policy)."""

from __future__ import annotations

import pytest
from cdc_operator import naming
from kopf.testing import KopfRunner

from tests.operator.kube.cluster import Cluster, cassandra_pod, condition, pipeline, wait_for
from tests.operator.kube.runtime import report

pytestmark = pytest.mark.kube


def runtime_names(cluster: Cluster) -> list[str]:
    return sorted(d["metadata"]["name"] for d in cluster.list("deployment", naming.pipeline_selector("shop")))


def test_scale_up_then_down_with_drain(cassandra: Cluster, operator: KopfRunner) -> None:
    cassandra.apply(pipeline())
    wait_for(lambda: runtime_names(cassandra) == ["shop-cassandra-0", "shop-cassandra-1"], "two runtimes")

    cassandra.apply(cassandra_pod("cassandra-2"))
    wait_for(lambda: "shop-cassandra-2" in runtime_names(cassandra), "a runtime for the new pod")
    for node in ("cassandra-0", "cassandra-1"):
        report(cassandra, node)
    report(cassandra, "cassandra-2", cdc_raw_bytes=50_000)

    cassandra.kubectl("delete", "pod", "cassandra-2", "--grace-period=0", "--force", "--wait=true")
    marked = wait_for(
        lambda: (
            (d := cassandra.get("deployment", "shop-cassandra-2"))
            and naming.ANNOTATION_SOURCE_GONE_SINCE in d["metadata"].get("annotations", {})
        ),
        "the gone-since stamp",
    )
    assert marked

    def draining() -> dict[str, object] | None:
        progressing = condition(cassandra.get("cdcp", "shop"), "Progressing")
        return progressing if progressing and progressing["reason"] == "Draining" else None

    message = str(wait_for(draining, "a Draining condition")["message"])
    assert "shop-cassandra-2 drains 50000 bytes" in message
    body = cassandra.get("cdcp", "shop")
    assert body is not None
    assert body["status"]["readyNodes"] == "2/2", "a removed pod no longer counts"
    assert "shop-cassandra-2" in runtime_names(cassandra), "a runtime with backlog must not be deleted"

    # Pausing stops the draining runtime too (every runtime scaled to zero, as the condition says).
    def replicas(name: str) -> int | None:
        found = cassandra.get("deployment", name)
        return found["spec"]["replicas"] if found else None

    cassandra.merge_patch("cdcp", "shop", {"spec": {"paused": True}})
    wait_for(lambda: replicas("shop-cassandra-2") == 0, "the draining runtime scaled to zero while paused")
    assert replicas("shop-cassandra-0") == 0
    cassandra.merge_patch("cdcp", "shop", {"spec": {"paused": False}})
    wait_for(lambda: replicas("shop-cassandra-2") == 1, "the draining runtime back after resume")

    report(cassandra, "cassandra-2", cdc_raw_bytes=0)  # drained
    wait_for(lambda: "shop-cassandra-2" not in runtime_names(cassandra), "deletion of the drained runtime")
    wait_for(
        lambda: "cassandra-2" not in (cassandra.get("cdcp", "shop") or {}).get("status", {}).get("nodes", {"x": 1}),
        "removal of the node's status entry",
    )
    assert runtime_names(cassandra) == ["shop-cassandra-0", "shop-cassandra-1"]
    # Its identity and report went with it; the others' stay.
    for kind in ("serviceaccount", "role", "rolebinding"):
        assert cassandra.get(kind, "shop-cassandra-2") is None, kind
        assert cassandra.get(kind, "shop-cassandra-1") is not None, kind
    assert cassandra.get("configmap", naming.runtime_report("shop", "cassandra-2")) is None
    assert cassandra.get("configmap", naming.runtime_report("shop", "cassandra-1")) is not None


def test_pod_restart_keeps_its_runtime(cassandra: Cluster, operator: KopfRunner) -> None:
    cassandra.apply(pipeline())
    wait_for(lambda: len(runtime_names(cassandra)) == 2, "two runtimes")
    uid = (cassandra.get("deployment", "shop-cassandra-1") or {})["metadata"]["uid"]
    cassandra.kubectl("delete", "pod", "cassandra-1", "--grace-period=0", "--force", "--wait=true")
    wait_for(
        lambda: (
            naming.ANNOTATION_SOURCE_GONE_SINCE
            in ((cassandra.get("deployment", "shop-cassandra-1") or {}).get("metadata", {}).get("annotations", {}))
        ),
        "the gone-since stamp",
    )
    cassandra.apply(cassandra_pod("cassandra-1"))  # the StatefulSet recreates it under the same name
    wait_for(
        lambda: (
            naming.ANNOTATION_SOURCE_GONE_SINCE
            not in ((cassandra.get("deployment", "shop-cassandra-1") or {}).get("metadata", {}).get("annotations", {}))
        ),
        "the stamp to be removed",
    )
    assert (cassandra.get("deployment", "shop-cassandra-1") or {})["metadata"]["uid"] == uid


def test_a_runtime_steps_aside_while_its_pod_is_unscheduled_and_follows_it_to_its_new_node(
    cassandra: Cluster, operator: KopfRunner
) -> None:
    """A runtime never holds the data volume a moving Cassandra pod needs: zero replicas while the pod has
    no node, then required affinity to the node it landed on (Recreate stops the old runtime first)."""
    cassandra.apply(pipeline())
    target = naming.runtime_deployment("shop", "cassandra-0")

    def placement() -> tuple[int, list[str]] | None:
        found = cassandra.get("deployment", target)
        if found is None:
            return None
        affinity = found["spec"]["template"]["spec"]["affinity"]
        terms = affinity.get("nodeAffinity", {}).get("requiredDuringSchedulingIgnoredDuringExecution", {})
        nodes = [v for t in terms.get("nodeSelectorTerms", []) for f in t["matchFields"] for v in f["values"]]
        return found["spec"]["replicas"], nodes

    wait_for(lambda: placement() == (1, ["node-a"]), "the runtime pinned to the pod's node")
    cassandra.kubectl("delete", "pod", "cassandra-0", "--grace-period=0", "--force", "--wait=true")
    cassandra.apply(cassandra_pod("cassandra-0", node=None))  # recreated by its StatefulSet, not placed yet
    wait_for(lambda: placement() == (0, []), "the runtime stepped aside while the pod has no node")
    cassandra.kubectl("delete", "pod", "cassandra-0", "--grace-period=0", "--force", "--wait=true")
    cassandra.apply(cassandra_pod("cassandra-0", node="node-b"))  # placed on another node
    wait_for(lambda: placement() == (1, ["node-b"]), "the runtime following the pod to node-b")
    found = cassandra.get("deployment", target)
    assert found is not None and found["spec"]["strategy"]["type"] == "Recreate"
