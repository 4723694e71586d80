"""What the operator should have written, computed with the same pure renderers, and how to compare."""

from __future__ import annotations

from typing import Any

import yaml
from cdc_operator import naming
from cdc_operator.cassandra import describe, workload_selector
from cdc_operator.render import PipelineRef, render_pipeline

from pipeline_runtime.config.model import PipelineSpec
from tests.operator.kube.cluster import Cluster

OWNED_KINDS = ("configmap", "serviceaccount", "role", "rolebinding", "deployment")


def expected_objects(cluster: Cluster, name: str) -> list[dict[str, Any]]:
    """Render from the live pipeline (with the API server's defaults) and the live pods."""
    body = cluster.get("cdcp", name)
    assert body is not None
    spec = PipelineSpec.model_validate(body["spec"])
    workload = cluster.get("statefulset", "cassandra")
    assert workload is not None
    selector = workload_selector("StatefulSet", workload)
    pods = [describe(p, selector, spec.source.cassandra.data_volume) for p in cluster.list("pod", "app=cassandra")]
    restart = (body["metadata"].get("annotations") or {}).get(naming.ANNOTATION_RESTART)
    ref = PipelineRef(name, cluster.namespace, body["metadata"]["uid"], restart_token=restart)
    return render_pipeline(ref, spec, pods).objects


def owned_objects(cluster: Cluster, name: str) -> list[dict[str, Any]]:
    selector = naming.pipeline_selector(name)
    return [obj for kind in OWNED_KINDS for obj in cluster.list(kind, selector)]


def normalized_yaml(objects: list[dict[str, Any]], cluster: Cluster, uid: str) -> str:
    """Golden-file form: this run's namespace, uid and config hash (it covers the namespace) as placeholders."""
    text = yaml.safe_dump_all(objects, sort_keys=True)
    digest = next(o for o in objects if o["kind"] == "ConfigMap")["metadata"]["annotations"][
        naming.ANNOTATION_CONFIG_HASH
    ]
    return text.replace(cluster.namespace, "NAMESPACE").replace(uid, "UID").replace(digest, "CONFIG_HASH")


def missing_from(live: Any, expected: Any, path: str = "") -> list[str]:
    """Paths where ``live`` lacks or differs from ``expected`` (live may have server-side extras)."""
    if isinstance(expected, dict):
        if not isinstance(live, dict):
            return [f"{path}: {live!r} is not a mapping"]
        return [p for key, value in expected.items() for p in missing_from(live.get(key), value, f"{path}.{key}")]
    if isinstance(expected, list):
        if not isinstance(live, list) or len(live) != len(expected):
            return [f"{path}: {live!r} != {expected!r}"]
        return [
            p for i, (a, b) in enumerate(zip(live, expected, strict=True)) for p in missing_from(a, b, f"{path}[{i}]")
        ]
    return [] if live == expected else [f"{path}: {live!r} != {expected!r}"]


def assert_live_matches(cluster: Cluster, name: str) -> list[dict[str, Any]]:
    """Exactly the expected objects exist, each with every rendered field as rendered."""
    expected = {(o["kind"], o["metadata"]["name"]): o for o in expected_objects(cluster, name)}
    live = {(o["kind"], o["metadata"]["name"]): o for o in owned_objects(cluster, name)}
    assert sorted(live) == sorted(expected)
    for key, obj in expected.items():
        problems = missing_from(live[key], obj)
        assert not problems, f"{key}: {problems}"
    return list(expected.values())
