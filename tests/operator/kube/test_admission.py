"""Manifests through the real API server: valid ones get the model's defaults, invalid ones a message to act on."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from pipeline_runtime.config.model import SinkSpec
from tests.operator.kube.cluster import Cluster, pipeline

pytestmark = pytest.mark.kube


def test_valid_manifest_is_stored_with_defaults(cluster: Cluster) -> None:
    cluster.apply(pipeline())
    stored = cluster.get("cdcp", "shop")
    assert stored is not None
    spec = stored["spec"]
    assert spec["sinks"][0]["batchSize"] == SinkSpec.model_fields["batch_size"].default == 10_000
    assert spec["sinks"][0]["writeMode"] == "upsert"
    assert spec["runtime"]["maxLagSeconds"] == 60
    assert spec["source"]["cassandra"]["dataVolume"] == "server-data"
    assert spec["source"]["tables"][0]["table"] == "*"
    assert spec["paused"] is False


def broken(mutate: Any) -> dict[str, Any]:
    manifest = copy.deepcopy(pipeline())
    mutate(manifest["spec"])
    return manifest


SINK = {"name": "pg", "type": "postgres", "connectionSecret": {"name": "s", "key": "k"}}

INVALID = {
    "duplicate-sinks": (
        lambda s: s.update(sinks=[SINK, SINK]),
        "sink names must be unique",
    ),
    "no-sinks": (lambda s: s.update(sinks=[]), "spec.sinks in body should have at least 1 items"),
    "timescaledb-without-timescale": (
        lambda s: s.update(sinks=[{**SINK, "type": "timescaledb"}]),
        "a timescaledb sink needs timescale.timeColumn",
    ),
    "hash-without-key": (
        lambda s: s.update(transforms={"masking": [{"table": "shop.c", "column": "email", "strategy": "hash"}]}),
        "masking strategy hash needs transforms.hashKeySecret",
    ),
    "truncate-without-length": (
        lambda s: s.update(transforms={"masking": [{"table": "shop.c", "column": "nick", "strategy": "truncate"}]}),
        "truncate and partial need length",
    ),
    "mask-unselected-keyspace": (
        lambda s: s.update(transforms={"masking": [{"table": "crm.c", "column": "nick", "strategy": "null"}]}),
        "must name a keyspace selected by source.tables",
    ),
    "selector-and-workload": (
        lambda s: s["source"]["cassandra"].update(podSelector={"app": "cassandra"}),
        "set either podSelector or workload, not both",
    ),
    "no-pod-source": (
        lambda s: s["source"]["cassandra"].pop("workload"),
        "so the operator can find the Cassandra pods",
    ),
    "unknown-sink-type": (
        lambda s: s.update(sinks=[{**SINK, "type": "mysql"}]),
        'Unsupported value: "mysql": supported values: "postgres", "timescaledb", "clickhouse"',
    ),
    "batch-too-large": (
        lambda s: s.update(sinks=[{**SINK, "batchSize": 10**6}]),
        "should be less than or equal to 100000",
    ),
    "unknown-field": (lambda s: s.update(sinkz=[]), 'unknown field "spec.sinkz"'),
    "image-not-a-reference": (
        lambda s: s.update(runtime={"image": "UPPER CASE:tag"}),
        "spec.runtime.image in body should match",
    ),
    "data-volume-not-a-name": (
        lambda s: s["source"]["cassandra"].update(dataVolume="Server_Data"),
        "spec.source.cassandra.dataVolume in body should match",
    ),
    "cpu-not-a-quantity": (
        lambda s: s.update(runtime={"resources": {"requests": {"cpu": "lots"}}}),
        "spec.runtime.resources.requests.cpu in body should match",
    ),
    "dead-letter-size": (
        lambda s: s.update(runtime={"deadLetters": {"volumeClaim": {"size": "plenty"}}}),
        "spec.runtime.deadLetters.volumeClaim.size in body should match",
    ),
    "resources-typo": (
        lambda s: s.update(runtime={"resources": {"requets": {"cpu": "1"}}}),
        'unknown field "spec.runtime.resources.requets"',
    ),
    "resources-unknown-name": (
        lambda s: s.update(runtime={"resources": {"limits": {"gpu": "1"}}}),
        "requests and limits take cpu, memory and ephemeral-storage",
    ),
    "env-of-the-operator": (
        lambda s: s.update(runtime={"env": [{"name": "HEADRACE_LOG_LEVEL", "value": "debug"}]}),
        "names starting HEADRACE_ are set by the operator",
    ),
    "table-twice": (
        lambda s: s["source"].update(tables=[{"keyspace": "shop"}, {"keyspace": "shop", "table": "*"}]),
        "source.tables lists a table more than once",
    ),
    "timescale-on-clickhouse": (
        lambda s: s.update(sinks=[{**SINK, "type": "clickhouse", "timescale": {"chunkInterval": "1 day"}}]),
        "timescale applies to sinks of type timescaledb only",
    ),
    "timescale-without-time-column": (
        lambda s: s.update(sinks=[{**SINK, "type": "timescaledb", "timescale": {"chunkInterval": "1 day"}}]),
        "a timescaledb sink needs timescale.timeColumn",
    ),
    "append-with-time-column": (
        lambda s: s.update(
            sinks=[{**SINK, "type": "timescaledb", "writeMode": "append", "timescale": {"timeColumn": "at"}}]
        ),
        "with writeMode append the history hypertables are partitioned",
    ),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_manifest_is_rejected_with_advice(cluster: Cluster, case: str) -> None:
    mutate, message = INVALID[case]
    result = cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(broken(mutate)), check=False)
    assert result.returncode != 0, f"{case} was accepted"
    assert message in result.stderr, result.stderr
    assert cluster.get("cdcp", "shop") is None
