"""Operator at scale: 100 CDCPipelines over a 300-pod Cassandra fleet on the local kube-apiserver.

Fleet: 100 StatefulSets of 3 pods; pipeline i reads StatefulSet i (one pipeline
per Cassandra pod: a second is refused, ``CdcRawShared``), so the operator
renders 100 ConfigMaps and, per runtime, a ServiceAccount, Role, RoleBinding,
report ConfigMap and Deployment (300 runtimes: 1,600 objects). The operator runs as its own process
(``python -m cdc_operator``) so its peak RSS (VmHWM) is its own.

Figures: seconds from applying the 100 pipelines until every one is Ready or
Progressing (all objects rendered); then, after one simulated runtime report
per node (300 writes of the runtimes' report ConfigMaps), seconds until every pipeline is Ready; and the
operator's peak RSS. Goals from the issue: under 60 s and under 150 MB.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kopf
import yaml
from cdc_operator import naming
from cdc_operator.kube.client import Kube

from devservices.envtest import ControlPlane, running_control_plane
from pipeline_runtime.config.status import NodeSinkStatus, NodeStatus
from pipeline_runtime.report.kubernetes import report_patch

REPO = Path(__file__).resolve().parents[1]
PIPELINES = 100
WORKLOADS = PIPELINES
PODS_PER_WORKLOAD = 3
NAMESPACE = "bench"
INTERVAL_S = 10
TIMEOUT_S = 600


def _fleet() -> list[dict[str, Any]]:
    objects: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "sinks"}, "stringData": {"dsn": "postgresql://x"}}
    ]
    for w in range(WORKLOADS):
        labels = {"app": f"cassandra-{w}"}
        objects.append(
            {
                "apiVersion": "apps/v1",
                "kind": "StatefulSet",
                "metadata": {"name": f"cassandra-{w}"},
                "spec": {
                    "serviceName": f"cassandra-{w}",
                    "selector": {"matchLabels": labels},
                    "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "c", "image": "c"}]}},
                },
            }
        )
        for p in range(PODS_PER_WORKLOAD):
            name = f"cassandra-{w}-{p}"
            objects.append(
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {"name": name, "labels": {**labels, "statefulset.kubernetes.io/pod-name": name}},
                    "spec": {
                        "nodeName": f"node-{w % 10}",
                        "containers": [{"name": "cassandra", "image": "cassandra:5.0"}],
                        "volumes": [{"name": "server-data", "persistentVolumeClaim": {"claimName": f"data-{name}"}}],
                    },
                }
            )
    return objects


def _pipelines() -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "headrace.io/v1alpha1",
            "kind": "CDCPipeline",
            "metadata": {"name": f"p{i:03d}"},
            "spec": {
                "source": {
                    "cassandra": {"workload": {"name": f"cassandra-{i % WORKLOADS}"}},
                    "tables": [{"keyspace": "shop"}],
                },
                "sinks": [{"name": "pg", "type": "postgres", "connectionSecret": {"name": "sinks", "key": "dsn"}}],
            },
        }
        for i in range(PIPELINES)
    ]


def _states(plane: ControlPlane) -> list[dict[str, Any]]:
    out = plane.kubectl("-n", NAMESPACE, "get", "cdcp", "-o", "json").stdout
    return list(json.loads(out)["items"])


def _true(item: dict[str, Any], kind: str) -> bool:
    return any(c["type"] == kind and c["status"] == "True" for c in item.get("status", {}).get("conditions", []))


def _wait(plane: ControlPlane, done: Any, what: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < TIMEOUT_S:
        items = _states(plane)
        if len(items) == PIPELINES and all(done(i) for i in items):
            return time.monotonic() - started
        time.sleep(1)
    raise RuntimeError(f"timed out after {TIMEOUT_S}s waiting for {what}")


def _login() -> kopf.ConnectionInfo:
    info = kopf.login_with_kubeconfig(settings=kopf.OperatorSettings())
    assert info is not None, "KUBECONFIG is not set"
    return info


async def _report_all(plane: ControlPlane) -> None:
    """One runtime report per (pipeline, node), written into each runtime's report ConfigMap as it would."""
    os.environ["KUBECONFIG"] = str(plane.kubeconfig)
    kube = Kube.connect(_login)
    try:
        for item in _states(plane):
            name = item["metadata"]["name"]
            workload = int(item["spec"]["source"]["cassandra"]["workload"]["name"].rsplit("-", 1)[1])
            for p in range(PODS_PER_WORKLOAD):
                report = NodeStatus(
                    last_report_time=datetime.now(UTC),
                    lag_seconds=0.5,
                    events_per_second=100.0,
                    config_hash=item["status"].get("configHash"),
                    sinks={"pg": NodeSinkStatus(healthy=True, rows_written=1)},
                )
                target = naming.runtime_report(name, f"cassandra-{workload}-{p}")
                await kube.merge_patch("ConfigMap", NAMESPACE, target, report_patch(report))
    finally:
        await kube.close()


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run() -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="bench-operator-") as tmp, running_control_plane(Path(tmp)) as plane:
        plane.kubectl("apply", "-f", str(REPO / "crds" / "headrace.io_cdcpipelines.yaml"))
        plane.kubectl("wait", "--for=condition=Established", "crd/cdcpipelines.headrace.io", "--timeout=60s")
        plane.kubectl("create", "namespace", NAMESPACE)
        plane.kubectl("-n", NAMESPACE, "apply", "-f", "-", stdin=yaml.safe_dump_all(_fleet()))
        env = {
            **os.environ,
            "KUBECONFIG": str(plane.kubeconfig),
            "HEADRACE_RECONCILE_INTERVAL_SECONDS": str(INTERVAL_S),
        }
        command = [sys.executable, "-m", "cdc_operator", "-n", NAMESPACE, "--health-port", "0", "--metrics-port", "0"]
        log = Path(tmp) / "operator.log"
        with log.open("w") as sink:
            operator = subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.STDOUT)
            try:
                time.sleep(3)  # the operator's start-up is not part of the reconcile figure
                plane.kubectl("-n", NAMESPACE, "apply", "-f", "-", stdin=yaml.safe_dump_all(_pipelines()))
                rendered_s = _wait(plane, lambda i: _true(i, "Ready") or _true(i, "Progressing"), "Progressing")
                deployments = len(
                    json.loads(plane.kubectl("-n", NAMESPACE, "get", "deploy", "-o", "json").stdout)["items"]
                )
                started = time.monotonic()
                asyncio.run(_report_all(plane))
                report_s = time.monotonic() - started
                ready_s = _wait(plane, lambda i: _true(i, "Ready"), "Ready") + report_s
                rss = _peak_rss_mb(operator.pid)
            finally:
                operator.terminate()
                operator.wait(timeout=30)
    common = {"pipelines": PIPELINES, "cassandra_pods": WORKLOADS * PODS_PER_WORKLOAD, "interval_s": INTERVAL_S}
    return [
        {
            "benchmark": "operator",
            "metric": "all Ready|Progressing",
            "value": round(rendered_s, 1),
            "unit": "s",
            **common,
        },
        {"benchmark": "operator", "metric": "runtime Deployments", "value": deployments, "unit": "objects", **common},
        {"benchmark": "operator", "metric": "Ready after reports", "value": round(ready_s, 1), "unit": "s", **common},
        {"benchmark": "operator", "metric": "operator peak RSS", "value": round(rss, 1), "unit": "MB", **common},
    ]
