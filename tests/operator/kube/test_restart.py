"""An operator restart resumes: no duplicate objects, and edits made while it was down are applied."""

from __future__ import annotations

import pytest
from cdc_operator import naming

from tests.operator.kube.cluster import Cluster, pipeline, wait_for
from tests.operator.kube.conftest import operator_runner
from tests.operator.kube.expected import assert_live_matches, owned_objects

pytestmark = pytest.mark.kube


def identities(cluster: Cluster) -> dict[tuple[str, str], str]:
    return {(o["kind"], o["metadata"]["name"]): o["metadata"]["uid"] for o in owned_objects(cluster, "shop")}


def test_restart_resumes_without_duplicates(cassandra: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", str(cassandra.plane.kubeconfig))
    cassandra.apply(pipeline())
    with operator_runner(cassandra) as first:
        wait_for(lambda: len(owned_objects(cassandra, "shop")) == 11, "eleven owned objects")
    assert first.exception is None, first.output
    before = identities(cassandra)

    changed = pipeline()
    changed["spec"]["sinks"][0]["batchSize"] = 7
    cassandra.apply(changed)  # while no operator runs

    with operator_runner(cassandra) as second:
        wait_for(
            lambda: (
                "batchSize: 7"
                in (cassandra.get("configmap", "shop-config") or {}).get("data", {}).get("pipeline.yaml", "")
            ),
            "the edit made while the operator was down",
        )
        wait_for(lambda: (cassandra.get("cdcp", "shop") or {}).get("status", {}).get("phase"), "a phase")
    assert second.exception is None, second.output
    after = identities(cassandra)
    assert after == before, "objects were recreated or duplicated"
    assert_live_matches(cassandra, "shop")
    body = cassandra.get("cdcp", "shop")
    assert body is not None
    assert body["metadata"]["finalizers"].count(naming.FINALIZER) == 1
