"""Two operator replicas with peering: one reconciles, the other stands by and takes over when it dies.

Kopf pauses every replica when two share a priority ("Pausing all operators, including self"), which
froze a two-replica install. Each replica now has its own priority; the test runs two real operator
processes (``python -m cdc_operator --peering``) against the local control plane, kills the active one
without notice and checks that the other applies the next spec change.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.operator.kube.cluster import Cluster, pipeline, wait_for
from tests.operator.kube.conftest import REPO

PEERING_CRD = REPO / "charts" / "headrace" / "crds" / "kopf.dev_peerings.yaml"
LIFETIME = 8


def start(cluster: Cluster, name: str, priority: int, logs: Path) -> subprocess.Popen[bytes]:
    env = os.environ | {
        "KUBECONFIG": str(cluster.plane.kubeconfig),
        "HEADRACE_PEERING_PRIORITY": str(priority),
        "HEADRACE_PEERING_LIFETIME_SECONDS": str(LIFETIME),
        "HEADRACE_RECONCILE_INTERVAL_SECONDS": "5",
    }
    command = [sys.executable, "-m", "cdc_operator", "--peering", "headrace", "--namespace", cluster.namespace]
    command += ["--health-port", "0", "--metrics-port", "0", "--log-format", "plain"]
    with (logs / f"{name}.log").open("wb") as log:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)


@pytest.fixture
def replicas(cassandra: Cluster, tmp_path: Path) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    cassandra.plane.kubectl("apply", "-f", str(PEERING_CRD))
    cassandra.plane.wait_established("kopfpeerings.kopf.dev", timeout=60)
    cassandra.apply({"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": "headrace"}})
    running = {"high": start(cassandra, "high", 200, tmp_path), "low": start(cassandra, "low", 100, tmp_path)}
    try:
        yield running
    finally:
        for process in running.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


def test_the_standby_replica_takes_over_when_the_active_one_dies(
    cassandra: Cluster, replicas: dict[str, subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    cassandra.apply(pipeline())

    def reconciled(generation: int) -> bool:
        body = cassandra.get("cdcp", "shop") or {}
        status = body.get("status") or {}
        return bool(status.get("phase")) and status.get("observedGeneration") == generation

    wait_for(lambda: reconciled(1), "the first spec reconciled by one of two replicas", timeout=90)
    assert replicas["high"].poll() is None and replicas["low"].poll() is None

    def priorities() -> list[int]:
        peers = (cassandra.get("kopfpeering", "headrace") or {}).get("status") or {}
        return sorted(int(peer["priority"]) for peer in peers.values())

    wait_for(lambda: priorities() == [100, 200], "both replicas in the peering object, each with its priority")
    logs = (tmp_path / "low.log").read_text() + (tmp_path / "high.log").read_text()
    assert "Pausing all operators" not in logs and "same priority:" not in logs, logs[-3000:]

    os.killpg(replicas["high"].pid, signal.SIGKILL)  # no goodbye: its peering record just stops being renewed
    replicas["high"].wait(timeout=30)
    cassandra.apply(pipeline(runtime={"logLevel": "debug"}))
    wait_for(lambda: reconciled(2), "the spec change reconciled by the standby", timeout=LIFETIME * 6)
    deployments = cassandra.list("deployment", "headrace.io/pipeline=shop")
    env = {e["name"]: e.get("value") for e in deployments[0]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["HEADRACE_LOG_LEVEL"] == "debug"
    assert "Resuming operations" in (tmp_path / "low.log").read_text()
