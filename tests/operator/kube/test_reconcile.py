"""Reconcile against the real API server: golden objects, spec changes, pause, restart, deletion."""

from __future__ import annotations

import time
from typing import Any

import pytest
from cdc_operator import naming
from kopf.testing import KopfRunner

from tests.operator.golden import assert_golden
from tests.operator.kube.cluster import Cluster, condition, pipeline, pipeline_events, wait_for
from tests.operator.kube.expected import assert_live_matches, normalized_yaml, owned_objects
from tests.operator.kube.runtime import report

pytestmark = pytest.mark.kube


def deployments(cluster: Cluster) -> list[dict[str, Any]]:
    return cluster.list("deployment", naming.pipeline_selector("shop"))


def template_annotation(cluster: Cluster, key: str) -> set[str | None]:
    return {d["spec"]["template"]["metadata"].get("annotations", {}).get(key) for d in deployments(cluster)}


def test_reconcile_writes_exactly_the_golden_objects(cassandra: Cluster, operator: KopfRunner) -> None:
    cassandra.apply(pipeline())
    wait_for(lambda: len(deployments(cassandra)) == 2, "two runtime Deployments")
    expected = assert_live_matches(cassandra, "shop")
    body = cassandra.get("cdcp", "shop")
    assert body is not None
    assert_golden("kube-shop.yaml", normalized_yaml(expected, cassandra, body["metadata"]["uid"]))
    # Kopf's bookkeeping is in annotations and its finalizer is ours; status holds only the model's fields.
    assert naming.FINALIZER in body["metadata"]["finalizers"]
    assert "kopf" not in body.get("status", {})
    pending = wait_for(lambda: condition(cassandra.get("cdcp", "shop"), "Progressing"), "a Progressing condition")
    assert pending["status"] == "True" and pending["reason"] == "Reconciling"


def test_spec_change_rolls_runtimes_through_the_config_hash(cassandra: Cluster, operator: KopfRunner) -> None:
    cassandra.apply(pipeline())
    wait_for(lambda: len(deployments(cassandra)) == 2, "two runtime Deployments")
    (before,) = template_annotation(cassandra, naming.ANNOTATION_CONFIG_HASH)
    changed = pipeline()
    changed["spec"]["sinks"][0]["batchSize"] = 5000
    cassandra.apply(changed)
    after = wait_for(
        lambda: (h := template_annotation(cassandra, naming.ANNOTATION_CONFIG_HASH)) != {before} and len(h) == 1 and h,
        "a new config hash on both Deployments",
    )
    config_map = cassandra.get("configmap", naming.config_map("shop"))
    assert config_map is not None and "batchSize: 5000" in config_map["data"]["pipeline.yaml"]
    assert config_map["metadata"]["annotations"][naming.ANNOTATION_CONFIG_HASH] in after
    assert_live_matches(cassandra, "shop")


def test_pause_scales_to_zero_and_resume_restores(cassandra: Cluster, operator: KopfRunner) -> None:
    cassandra.apply(pipeline())
    wait_for(lambda: len(deployments(cassandra)) == 2, "two runtime Deployments")
    for pod in ("cassandra-0", "cassandra-1"):
        report(cassandra, pod)
    wait_for(lambda: status_of(cassandra).get("readyNodes") == "2/2", "both runtimes ready")
    cassandra.merge_patch("cdcp", "shop", {"spec": {"paused": True}})
    wait_for(lambda: {d["spec"]["replicas"] for d in deployments(cassandra)} == {0}, "replicas 0")
    paused = wait_for(
        lambda: (b := cassandra.get("cdcp", "shop")) and b.get("status", {}).get("phase") == "Paused" and b,
        "phase Paused",
    )
    assert condition(paused, "Ready") == {**condition(paused, "Ready"), "status": "False", "reason": "Paused"}
    assert "cdc_total_space" in condition(paused, "Ready")["message"]
    # Scaled to zero: the runtimes' last reports are history, not a 2/2 with lag and events/s.
    wait_for(lambda: not status_of(cassandra).get("nodes"), "the paused runtimes' reports removed")

    def written(pod: str) -> bool:
        found = cassandra.get("configmap", naming.runtime_report("shop", pod))
        return found is None or "status.json" in (found.get("data") or {})

    for pod in ("cassandra-0", "cassandra-1"):  # and emptied where the runtimes wrote them
        wait_for(lambda p=pod: not written(p), f"{pod}'s report ConfigMap emptied")
    assert status_of(cassandra)["readyNodes"] == "0/2" and "maxLagSeconds" not in status_of(cassandra)
    cassandra.merge_patch("cdcp", "shop", {"spec": {"paused": False}})
    wait_for(lambda: {d["spec"]["replicas"] for d in deployments(cassandra)} == {1}, "replicas 1")
    resumed = wait_for(lambda: (s := status_of(cassandra)).get("phase") != "Paused" and s, "resumed")
    assert resumed["phase"] == "Pending" and resumed["readyNodes"] == "0/2"  # not Running from old reports
    for pod in ("cassandra-0", "cassandra-1"):
        report(cassandra, pod)
    wait_for(lambda: status_of(cassandra).get("phase") == "Running", "Running on fresh reports")


def status_of(cluster: Cluster) -> dict[str, Any]:
    body = cluster.get("cdcp", "shop")
    return dict((body or {}).get("status") or {})


def test_restart_annotation_restamps_pod_templates(cassandra: Cluster, operator: KopfRunner) -> None:
    cassandra.apply(pipeline())
    wait_for(lambda: len(deployments(cassandra)) == 2, "two runtime Deployments")
    assert template_annotation(cassandra, naming.ANNOTATION_RESTART) == {None}
    cassandra.kubectl("annotate", "cdcp", "shop", f"{naming.ANNOTATION_RESTART}=2026-01-01T00:00:00Z")
    wait_for(
        lambda: template_annotation(cassandra, naming.ANNOTATION_RESTART) == {"2026-01-01T00:00:00Z"},
        "the restart stamp on both pod templates",
    )


def test_delete_runs_the_finalizer_and_removes_owned_objects(cassandra: Cluster, operator: KopfRunner) -> None:
    cassandra.apply(pipeline())
    # The ConfigMap, and per runtime a ServiceAccount, Role, RoleBinding, report ConfigMap and Deployment.
    wait_for(lambda: len(owned_objects(cassandra, "shop")) == 11, "eleven owned objects")
    cassandra.kubectl("delete", "cdcp", "shop", "--wait=false")
    wait_for(lambda: cassandra.get("cdcp", "shop") is None, "the pipeline to be gone (finalizer released)")
    assert owned_objects(cassandra, "shop") == []
    # Nothing else in the namespace was touched: the Cassandra pods and the sink Secret stay.
    assert cassandra.get("pod", "cassandra-0") is not None
    assert cassandra.get("secret", "shop-sinks") is not None


def test_objects_changed_by_hand_are_repaired_at_the_next_pass(cassandra: Cluster, operator: KopfRunner) -> None:
    """A second replica of a runtime (two runtimes on one cdc_raw), a deleted ConfigMap or RoleBinding: back
    within a reconcile interval (1 s here), not after HEADRACE_REAPPLY_SECONDS (600 s by default)."""
    cassandra.apply(pipeline())
    wait_for(lambda: len(deployments(cassandra)) == 2, "two runtime Deployments")
    target = naming.runtime_deployment("shop", "cassandra-0")
    cassandra.merge_patch("deployment", target, {"spec": {"replicas": 2}})
    cassandra.kubectl("delete", "configmap", naming.config_map("shop"))
    cassandra.kubectl("delete", "rolebinding", target)
    wait_for(
        lambda: (d := cassandra.get("deployment", target)) and d["spec"]["replicas"] == 1,
        "the runtime Deployment back at one replica",
        timeout=20,
    )
    wait_for(lambda: cassandra.get("configmap", naming.config_map("shop")), "the ConfigMap recreated", timeout=20)
    wait_for(lambda: cassandra.get("rolebinding", target), "the RoleBinding", timeout=20)


def test_a_second_pipeline_on_the_same_pods_is_refused_until_the_first_is_gone(
    cassandra: Cluster, operator: KopfRunner
) -> None:
    """Each pipeline deletes the cdc_raw segments its own sinks committed: two on one pod would lose data."""
    cassandra.apply(pipeline())
    wait_for(lambda: len(deployments(cassandra)) == 2, "two runtime Deployments")
    cassandra.apply(pipeline("shop-two"))

    def refused() -> dict[str, Any] | None:
        found = condition(cassandra.get("cdcp", "shop-two"), "Degraded")
        return found if found and found["reason"] == "CdcRawShared" else None

    degraded = wait_for(refused, "the second pipeline refused with CdcRawShared")
    assert "cassandra-0, cassandra-1 are already read by pipeline shop" in degraded["message"]
    assert "Add its sinks to shop" in degraded["message"]
    second = cassandra.get("cdcp", "shop-two")
    assert second is not None and second["status"]["phase"] == "Failed"
    assert cassandra.list("deployment", naming.pipeline_selector("shop-two")) == []
    assert len(deployments(cassandra)) == 2  # the first pipeline is untouched
    cassandra.kubectl("delete", "cdcp", "shop", "--wait=false")
    wait_for(
        lambda: len(cassandra.list("deployment", naming.pipeline_selector("shop-two"))) == 2,
        "the second pipeline's runtimes once the first is gone",
    )
    recovered = wait_for(
        lambda: (c := condition(cassandra.get("cdcp", "shop-two"), "Degraded")) and c["reason"] != "CdcRawShared" and c,
        "the CdcRawShared condition cleared",
    )
    assert recovered["status"] == "False"


def test_paused_reconciliation_changes_nothing_until_the_annotation_goes(
    cassandra: Cluster, operator: KopfRunner
) -> None:
    """Strimzi's pause-reconciliation: for emergencies, the operator keeps its hands off; runtimes keep running."""
    cassandra.apply(pipeline())
    wait_for(lambda: len(deployments(cassandra)) == 2, "two runtime Deployments")
    cassandra.kubectl("annotate", "cdcp", "shop", f"{naming.ANNOTATION_PAUSE_RECONCILIATION}=true")
    held = wait_for(
        lambda: (
            (c := condition(cassandra.get("cdcp", "shop"), "Progressing"))
            and c["reason"] == "ReconciliationPaused"
            and c
        ),
        "Progressing=False ReconciliationPaused",
    )
    assert held["status"] == "False" and "remove the annotation to resume" in held["message"]
    changed = pipeline()
    changed["spec"]["sinks"][0]["batchSize"] = 5000
    cassandra.apply(changed)
    target = naming.runtime_deployment("shop", "cassandra-0")
    cassandra.kubectl("delete", "deployment", target)
    report(cassandra, "cassandra-1")  # a runtime that keeps running: its report still reaches status
    wait_for(lambda: "cassandra-1" in (status_of(cassandra).get("nodes") or {}), "the report during the hold")
    time.sleep(4)  # four reconcile intervals: nothing is applied, repaired or re-rendered
    assert cassandra.get("deployment", target) is None
    # The hold is announced once, not again with every report.
    assert len([e for e in pipeline_events(cassandra) if e["reason"] == "ReconciliationPaused"]) == 1
    config_map = cassandra.get("configmap", naming.config_map("shop"))
    assert config_map is not None and "batchSize: 5000" not in config_map["data"]["pipeline.yaml"]
    cassandra.kubectl("annotate", "cdcp", "shop", f"{naming.ANNOTATION_PAUSE_RECONCILIATION}-")
    wait_for(lambda: cassandra.get("deployment", target), "the runtime Deployment back after resuming")
    wait_for(
        lambda: (
            "batchSize: 5000"
            in (cassandra.get("configmap", naming.config_map("shop")) or {"data": {"pipeline.yaml": ""}})["data"][
                "pipeline.yaml"
            ]
        ),
        "the spec edit applied after resuming",
    )


def test_dead_letter_claims_are_created_and_outlive_the_pipeline(cassandra: Cluster, operator: KopfRunner) -> None:
    cassandra.apply(pipeline(runtime={"deadLetters": {"volumeClaim": {"size": "2Gi"}}}))
    claims = [naming.dead_letter_claim("shop", pod) for pod in ("cassandra-0", "cassandra-1")]
    for claim in claims:
        found = wait_for(lambda c=claim: cassandra.get("pvc", c), f"the claim {claim}")
        assert found["spec"]["resources"]["requests"]["storage"] == "2Gi"
    cassandra.kubectl("delete", "pvc", claims[0], "--wait=false")
    cassandra.kubectl(
        "patch",
        "pvc",
        claims[0],
        "--type=json",
        "-p",
        '[{"op": "remove", "path": "/metadata/finalizers"}]',
        check=False,
    )
    wait_for(
        lambda: (c := cassandra.get("pvc", claims[0])) and not c["metadata"].get("deletionTimestamp"),
        "the claim recreated",
    )
    cassandra.kubectl("delete", "cdcp", "shop", "--wait=false")
    wait_for(lambda: cassandra.get("cdcp", "shop") is None, "the pipeline gone")
    assert all(cassandra.get("pvc", claim) is not None for claim in claims), "dead letters are kept"
