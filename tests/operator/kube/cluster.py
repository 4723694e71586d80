"""Test-side access to the control plane: kubectl with JSON, manifests, and bounded waits."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import yaml

from devservices.envtest import ControlPlane

T = TypeVar("T")


@dataclass(frozen=True)
class Cluster:
    plane: ControlPlane
    namespace: str

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> Any:
        return self.plane.kubectl("-n", self.namespace, *args, stdin=stdin, check=check)

    def apply(self, *objects: dict[str, Any]) -> None:
        self.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(objects))

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        result = self.kubectl("get", kind, name, "-o", "json", check=False)
        if result.returncode != 0:
            assert "NotFound" in result.stderr, result.stderr
            return None
        return dict(json.loads(result.stdout))

    def list(self, kind: str, selector: str | None = None) -> list[dict[str, Any]]:
        args = ["get", kind, "-o", "json"] + (["-l", selector] if selector else [])
        return list(json.loads(self.kubectl(*args).stdout)["items"])

    def merge_patch(self, kind: str, name: str, patch: dict[str, Any], *extra: str) -> None:
        self.kubectl("patch", kind, name, "--type=merge", "-p", json.dumps(patch), *extra)

    def patch_status(self, name: str, patch: dict[str, Any], *extra: str) -> None:
        self.merge_patch("cdcpipeline", name, {"status": patch}, "--subresource=status", *extra)


def wait_for(probe: Callable[[], T | None], what: str, timeout: float = 60.0, interval: float = 0.3) -> T:
    """Poll ``probe`` until it returns something truthy; fail naming ``what`` and the last value seen."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")


def pipeline_events(cluster: Cluster, name: str = "shop") -> list[dict[str, Any]]:
    """The Events recorded for the pipeline ``name``."""
    selector = f"involvedObject.kind=CDCPipeline,involvedObject.name={name}"
    return list(
        json.loads(cluster.kubectl("get", "events", "-o", "json", "--field-selector", selector).stdout)["items"]
    )


def condition(pipeline: dict[str, Any] | None, kind: str) -> dict[str, Any] | None:
    for item in (pipeline or {}).get("status", {}).get("conditions", []):
        if item["type"] == kind:
            return dict(item)
    return None


# --- manifests -------------------------------------------------------------------------------


def cassandra_pod(
    name: str, labels: dict[str, str] | None = None, claim: str | None = None, node: str | None = "node-a"
) -> dict[str, Any]:
    """A Cassandra pod as its StatefulSet would create it, scheduled on ``node`` (no kubelet runs it here;
    ``node=None``: not scheduled yet)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": {"app": "cassandra", "statefulset.kubernetes.io/pod-name": name, **(labels or {})},
        },
        "spec": {
            **({"nodeName": node} if node is not None else {}),
            "securityContext": {"runAsUser": 999, "runAsGroup": 999, "fsGroup": 999},
            "containers": [{"name": "cassandra", "image": "cassandra:5.0"}],
            "volumes": [
                {"name": "server-data", "persistentVolumeClaim": {"claimName": claim or f"server-data-{name}"}}
            ],
        },
    }


def statefulset(name: str = "cassandra") -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name},
        "spec": {
            "serviceName": name,
            "replicas": 2,
            "selector": {"matchLabels": {"app": "cassandra"}},
            "template": {
                "metadata": {"labels": {"app": "cassandra"}},
                "spec": {"containers": [{"name": "cassandra", "image": "cassandra:5.0"}]},
            },
        },
    }


def secret(name: str, *keys: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "stringData": {key: f"value-of-{key}" for key in keys},
    }


def pipeline(name: str = "shop", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "source": {
            "cassandra": {"workload": {"kind": "StatefulSet", "name": "cassandra"}, "contactPoint": "cassandra"},
            "tables": [{"keyspace": "shop", "table": "*"}],
        },
        "sinks": [
            {"name": "pg", "type": "postgres", "connectionSecret": {"name": "shop-sinks", "key": "postgres-dsn"}}
        ],
    }
    body.update(spec)
    return {"apiVersion": "headrace.io/v1alpha1", "kind": "CDCPipeline", "metadata": {"name": name}, "spec": body}
