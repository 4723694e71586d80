"""The operator reacts to changes as they happen, not at its periodic pass.

Here the periodic pass is 600 s apart, so everything these tests wait for (at most 20 s) comes from
the watches on Pods, runtime Deployments and ConfigMaps, or from the short re-check of a pipeline
that waits for a Secret. The other kube tests run with a one-second pass and cannot tell.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from cdc_operator import naming
from kopf.testing import KopfRunner

from tests.operator.kube.cluster import Cluster, cassandra_pod, condition, pipeline, secret, statefulset, wait_for
from tests.operator.kube.conftest import operator_with

pytestmark = pytest.mark.kube

#: Well under the 600 s periodic pass, with room for a loaded machine.
SOON = 20.0


@pytest.fixture
def slow_timer_operator(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> Iterator[KopfRunner]:
    yield from operator_with(cluster, monkeypatch, HEADRACE_RECONCILE_INTERVAL_SECONDS="600")


def runtimes(cluster: Cluster) -> list[str]:
    return sorted(d["metadata"]["name"] for d in cluster.list("deployment", naming.pipeline_selector("shop")))


def test_pods_deployments_and_config_maps_are_watched(cassandra: Cluster, slow_timer_operator: KopfRunner) -> None:
    cassandra.apply(pipeline())
    wait_for(lambda: runtimes(cassandra) == ["shop-cassandra-0", "shop-cassandra-1"], "two runtimes", timeout=SOON)

    # A Cassandra pod added (scale-up): its runtime follows.
    cassandra.apply(cassandra_pod("cassandra-2"))
    wait_for(lambda: "shop-cassandra-2" in runtimes(cassandra), "a runtime for the new pod", timeout=SOON)

    # A Cassandra pod gone: its runtime is marked to drain.
    cassandra.kubectl("delete", "pod", "cassandra-2", "--grace-period=0", "--force", "--wait=true")
    wait_for(
        lambda: (
            naming.ANNOTATION_SOURCE_GONE_SINCE
            in ((cassandra.get("deployment", "shop-cassandra-2") or {}).get("metadata", {}).get("annotations") or {})
        ),
        "the gone-since stamp on the runtime of the deleted pod",
        timeout=SOON,
    )

    # A runtime scaled by hand (two runtimes on one cdc_raw) and a deleted ConfigMap: repaired.
    target = naming.runtime_deployment("shop", "cassandra-0")
    cassandra.merge_patch("deployment", target, {"spec": {"replicas": 2}})
    wait_for(
        lambda: (d := cassandra.get("deployment", target)) and d["spec"]["replicas"] == 1,
        "the runtime Deployment back at one replica",
        timeout=SOON,
    )
    cassandra.kubectl("delete", "configmap", naming.config_map("shop"))
    wait_for(lambda: cassandra.get("configmap", naming.config_map("shop")), "the ConfigMap recreated", timeout=SOON)


def test_a_pipeline_waiting_for_its_secret_starts_soon_after_it_appears(
    cluster: Cluster, slow_timer_operator: KopfRunner
) -> None:
    cluster.apply(statefulset(), cassandra_pod("cassandra-0"))
    cluster.apply(pipeline())

    def reason() -> Any:
        return (condition(cluster.get("cdcp", "shop"), "Degraded") or {}).get("reason")

    wait_for(lambda: reason() == "SecretMissing", "Degraded with SecretMissing", timeout=SOON)
    cluster.apply(secret("shop-sinks", "postgres-dsn"))
    wait_for(lambda: runtimes(cluster) == ["shop-cassandra-0"], "the runtime after the Secret appeared", timeout=SOON)
    wait_for(lambda: reason() != "SecretMissing", "SecretMissing cleared", timeout=SOON)


def test_a_pipeline_waiting_for_its_workload_starts_soon_after_it_appears(
    cluster: Cluster, slow_timer_operator: KopfRunner
) -> None:
    cluster.apply(secret("shop-sinks", "postgres-dsn"), cassandra_pod("cassandra-0"))
    cluster.apply(pipeline())
    wait_for(
        lambda: "does not exist" in ((condition(cluster.get("cdcp", "shop"), "Degraded") or {}).get("message") or ""),
        "Degraded: the StatefulSet does not exist",
        timeout=SOON,
    )
    cluster.apply(statefulset())
    wait_for(lambda: runtimes(cluster) == ["shop-cassandra-0"], "the runtime after the workload appeared", timeout=SOON)
