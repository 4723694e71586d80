"""Runtime reports on status.nodes turn into phase, conditions and printer columns."""

from __future__ import annotations

import time
from typing import Any

import pytest
import yaml
from cdc_operator import naming
from cdc_operator.render.configmap import CONFIG_KEY
from kopf.testing import KopfRunner

from pipeline_runtime.config.status import TableSnapshotStatus
from tests.operator.kube.cluster import (
    Cluster,
    cassandra_pod,
    condition,
    pipeline,
    pipeline_events,
    secret,
    statefulset,
    wait_for,
)
from tests.operator.kube.runtime import current_config_hash, report

pytestmark = pytest.mark.kube


def phase_is(cluster: Cluster, phase: str) -> dict[str, Any] | None:
    body = cluster.get("cdcp", "shop")
    return body if body and body.get("status", {}).get("phase") == phase else None


def wait_phase(cluster: Cluster, phase: str) -> dict[str, Any]:
    return wait_for(lambda: phase_is(cluster, phase), f"phase {phase}", timeout=30)


def start_reporting(cluster: Cluster) -> None:
    wait_for(lambda: cluster.get("configmap", "shop-config"), "the runtime ConfigMap")
    for node in ("cassandra-0", "cassandra-1"):
        report(cluster, node)


def test_reports_turn_the_pipeline_ready(cassandra: Cluster, operator: KopfRunner) -> None:
    cassandra.apply(pipeline())
    wait_phase(cassandra, "Pending")
    start_reporting(cassandra)
    body = wait_phase(cassandra, "Running")
    ready = condition(body, "Ready")
    assert ready is not None and ready["status"] == "True" and ready["reason"] == "AllRuntimesReady"
    status = body["status"]
    assert status["readyNodes"] == "2/2"
    assert status["eventsPerSecond"] == 500.0
    assert status["sinks"]["pg"]["rowsWritten"] == 1000
    assert status["observedGeneration"] == body["metadata"]["generation"]
    # kubectl wait works on the condition, as the e2e test and users rely on.
    cassandra.kubectl("wait", "--for=condition=Ready", "cdcp/shop", "--timeout=10s")


def test_printer_columns_show_status(cassandra: Cluster, operator: KopfRunner) -> None:
    cassandra.apply(pipeline())
    start_reporting(cassandra)
    wait_phase(cassandra, "Running")
    table = cassandra.kubectl("get", "cdcpipelines").stdout.splitlines()
    assert table[0].split() == ["NAME", "PHASE", "READY", "MAX-LAG", "EVENTS/S", "DEAD-LETTERS", "SNAPSHOT", "AGE"]
    assert table[1].split()[:6] == ["shop", "Running", "2/2", "0.8", "500", "0"]
    wide = cassandra.kubectl("get", "cdcp", "-o", "wide").stdout.splitlines()
    assert "PAUSED" in wide[0].split() and "false" in wide[1].split()


def test_lagging_report_turns_it_degraded(cassandra: Cluster, operator: KopfRunner) -> None:
    cassandra.apply(pipeline(runtime={"maxLagSeconds": 30}))
    start_reporting(cassandra)
    wait_phase(cassandra, "Running")
    report(cassandra, "cassandra-1", lag_seconds=95.0)
    body = wait_phase(cassandra, "Degraded")
    degraded = condition(body, "Degraded")
    assert degraded is not None and degraded["status"] == "True" and degraded["reason"] == "LagOverThreshold"
    assert "cassandra-1 lags 95s" in degraded["message"] and "maxLagSeconds is 30" in degraded["message"]
    assert body["status"]["maxLagSeconds"] == 95.0
    report(cassandra, "cassandra-1", lag_seconds=1.0)
    wait_phase(cassandra, "Running")


def test_unreachable_sink_and_full_cdc_raw_are_reported(cassandra: Cluster, operator: KopfRunner) -> None:
    cassandra.apply(pipeline())
    start_reporting(cassandra)
    wait_phase(cassandra, "Running")
    report(
        cassandra,
        "cassandra-0",
        last_error="sink pg: connection refused (postgres:5432)",
        cdc_raw_share=0.9,
        cdc_raw_bytes=3_700_000_000,
        sinks={"pg": {"healthy": False, "rowsWritten": 10}},
    )
    body = wait_phase(cassandra, "Degraded")
    degraded = condition(body, "Degraded")
    assert degraded is not None and degraded["reason"] == "SinkUnreachable"
    assert "sink pg fails on cassandra-0: sink pg: connection refused" in degraded["message"]
    assert "90% of cdc_total_space" in degraded["message"]
    assert body["status"]["sinks"]["pg"]["healthy"] is False


def test_missing_secret_waits_degraded_until_created(cluster: Cluster, operator: KopfRunner) -> None:
    cluster.apply(statefulset(), cassandra_pod("cassandra-0"))
    cluster.apply(pipeline())

    def reason(kind: str) -> Any:
        return (condition(cluster.get("cdcp", "shop"), kind) or {}).get("reason")

    wait_for(lambda: reason("Degraded") == "SecretMissing", "Degraded with SecretMissing")
    body = cluster.get("cdcp", "shop")
    assert body is not None and body["status"]["phase"] == "Pending"  # not Failed: it recovers by itself
    degraded = condition(body, "Degraded")
    assert degraded is not None
    assert "shop-sinks" in degraded["message"] and "kubectl create secret" in degraded["message"]
    assert cluster.list("deployment", "headrace.io/pipeline=shop") == []
    cluster.apply(secret("shop-sinks", "postgres-dsn"))
    wait_for(lambda: cluster.list("deployment", "headrace.io/pipeline=shop"), "the runtime after the Secret appeared")
    wait_for(lambda: reason("Degraded") not in (None, "SecretMissing"), "the SecretMissing condition cleared")


def test_a_spec_the_api_server_refuses_is_failed_with_its_words_until_fixed(
    cluster: Cluster, operator: KopfRunner
) -> None:
    """Admitted by the CRD, refused as a Deployment (requests above limits): status says so, a fix applies."""
    cluster.apply(statefulset(), cassandra_pod("cassandra-0"), secret("shop-sinks", "postgres-dsn"))
    over = {"requests": {"cpu": "2"}, "limits": {"cpu": "1", "memory": "1Gi"}}
    cluster.apply(pipeline(runtime={"resources": over}))

    def reason(kind: str) -> Any:
        return (condition(cluster.get("cdcp", "shop"), kind) or {}).get("reason")

    wait_for(lambda: reason("Degraded") == "ApplyRejected", "Degraded with ApplyRejected")
    body = cluster.get("cdcp", "shop")
    assert body is not None and body["status"]["phase"] == "Failed"
    degraded = condition(body, "Degraded")
    assert degraded is not None
    assert "less than or equal to cpu limit" in degraded["message"], degraded["message"]
    assert "spec.runtime" in degraded["message"]
    assert cluster.list("deployment", "headrace.io/pipeline=shop") == []
    cluster.apply(pipeline(runtime={"resources": {"requests": {"cpu": "500m"}, "limits": {"cpu": "1"}}}))
    wait_for(lambda: cluster.list("deployment", "headrace.io/pipeline=shop"), "the runtime after the fix", timeout=30)
    wait_for(lambda: reason("Degraded") not in (None, "ApplyRejected"), "the ApplyRejected condition cleared")


def test_no_matching_pods_and_missing_workload(cluster: Cluster, operator: KopfRunner) -> None:
    cluster.apply(secret("shop-sinks", "postgres-dsn"))
    cluster.apply(pipeline())
    body = wait_for(
        lambda: (b := cluster.get("cdcp", "shop")) and (condition(b, "Degraded") or {}).get("reason") and b,
        "a Degraded condition",
    )
    assert body["status"]["phase"] == "Pending"
    degraded = condition(body, "Degraded")
    assert degraded is not None and degraded["reason"] == "CassandraWorkloadNotFound"
    assert "StatefulSet cassandra does not exist" in degraded["message"]
    cluster.apply(statefulset())
    ready = wait_for(
        lambda: (c := condition(cluster.get("cdcp", "shop"), "Ready")) and c["reason"] == "NoCassandraPods" and c,
        "Ready=False NoCassandraPods once the StatefulSet exists",
    )
    assert "app=cassandra" in ready["message"]
    assert (cluster.get("cdcp", "shop") or {})["status"]["phase"] == "Pending"


def test_snapshot_annotation_reaches_the_runtimes_and_their_progress_shows(
    cassandra: Cluster, operator: KopfRunner
) -> None:
    cassandra.apply(pipeline())
    start_reporting(cassandra)
    wait_phase(cassandra, "Running")
    before = current_config_hash(cassandra)
    cassandra.kubectl("annotate", "cdcp", "shop", f"{naming.ANNOTATION_SNAPSHOT}=again-1")

    def rendered_request() -> str | None:
        config_map = cassandra.get("configmap", naming.config_map("shop"))
        document = yaml.safe_load(config_map["data"][CONFIG_KEY]) if config_map else {}
        return document.get("spec", {}).get("source", {}).get("snapshot", {}).get("request")

    wait_for(lambda: rendered_request() == "again-1", "the annotation as source.snapshot.request in the ConfigMap")
    assert current_config_hash(cassandra) != before  # the runtimes roll and read every table again

    reading = {"shop.orders": TableSnapshotStatus(state="running", ranges_done=1, ranges_total=4, rows_read=900)}
    for node in ("cassandra-0", "cassandra-1"):
        report(cassandra, node, snapshot=reading)
    body = wait_phase(cassandra, "Snapshotting")
    assert body["status"]["snapshot"] == "25% (0/1 tables)"
    assert body["status"]["nodes"]["cassandra-0"]["snapshot"]["shop.orders"]["rowsRead"] == 900
    row = cassandra.kubectl("get", "cdcp", "shop").stdout.splitlines()[1].split()
    assert row[1] == "Snapshotting" and "25%" in row

    failed = {"shop.orders": TableSnapshotStatus(state="failed", ranges_done=1, ranges_total=4, last_error="timeout")}
    report(cassandra, "cassandra-1", snapshot=failed)
    body = wait_phase(cassandra, "Degraded")
    degraded = condition(body, "Degraded")
    assert degraded is not None and degraded["reason"] == "SnapshotFailed"
    assert "shop.orders on cassandra-1 fails: timeout" in degraded["message"]


def test_the_reset_offsets_annotation_reaches_the_runtimes_and_a_bad_one_is_refused(
    cassandra: Cluster, operator: KopfRunner
) -> None:
    cassandra.apply(pipeline())
    wait_for(lambda: cassandra.get("configmap", naming.config_map("shop")), "the runtime ConfigMap")
    before = current_config_hash(cassandra)
    cassandra.kubectl("annotate", "cdcp", "shop", f"{naming.ANNOTATION_RESET_OFFSETS}=earliest@1")

    def rendered_reset() -> dict[str, Any] | None:
        config_map = cassandra.get("configmap", naming.config_map("shop"))
        document = yaml.safe_load(config_map["data"][CONFIG_KEY]) if config_map else {}
        return document.get("spec", {}).get("source", {}).get("offsetsReset")

    reset = wait_for(rendered_reset, "the annotation as source.offsetsReset in the ConfigMap")
    assert reset == {"request": "earliest@1", "to": "earliest", "nodes": [], "sinks": []}
    assert current_config_hash(cassandra) != before  # the runtimes roll and each applies it as it starts

    cassandra.kubectl("annotate", "cdcp", "shop", f"{naming.ANNOTATION_RESET_OFFSETS}=yesterday", "--overwrite")
    refused = wait_for(
        lambda: (c := condition(cassandra.get("cdcp", "shop"), "Degraded")) and c["reason"] == "InvalidSpec" and c,
        "InvalidSpec for a reset that is neither earliest nor SEGMENT:OFFSET",
    )
    assert "offsetsReset.to" in refused["message"]
    assert rendered_reset() == reset  # nothing applied from a bad request


def test_events_tell_problems_recoveries_and_rollouts(cluster: Cluster, operator: KopfRunner) -> None:
    """`kubectl describe cdcp` shows what happened: a missing Secret, its arrival, a spec change and its fields."""
    cluster.apply(statefulset(), cassandra_pod("cassandra-0"))
    cluster.apply(pipeline())

    def posted(reason: str) -> list[dict[str, Any]]:
        return [e for e in pipeline_events(cluster) if e["reason"] == reason]

    (missing,) = wait_for(lambda: posted("SecretMissing"), "a SecretMissing Event")
    assert missing["type"] == "Warning" and "shop-sinks" in missing["message"]
    assert missing["source"]["component"] == "headrace-operator"
    cluster.apply(secret("shop-sinks", "postgres-dsn"))
    (recovered,) = wait_for(lambda: posted("Recovered"), "a Recovered Event")
    assert recovered["type"] == "Normal" and "SecretMissing" in recovered["message"]
    wait_for(lambda: cluster.list("deployment", "headrace.io/pipeline=shop"), "the runtime Deployment")
    changed = pipeline()
    changed["spec"]["sinks"][0]["batchSize"] = 5000
    cluster.apply(changed)
    (rollout,) = wait_for(lambda: posted("Rollout"), "a Rollout Event")
    assert "configuration changed (spec.sinks[0].batchSize)" in rollout["message"], rollout["message"]
    time.sleep(3)  # timer passes that change nothing post nothing
    assert len(posted("SecretMissing")) == len(posted("Recovered")) == len(posted("Rollout")) == 1
