"""Fixtures for operator tests against the real kube-apiserver: the CRD, a namespace, a running operator."""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from kopf.testing import KopfRunner

from devservices.envtest import ControlPlane
from tests.operator.kube.cluster import Cluster, cassandra_pod, secret, statefulset

# Read when cdc_operator.handlers is imported (kopf fixes a timer's interval at registration):
# a one-second timer makes scale and status changes visible within the tests' waits.
os.environ.setdefault("HEADRACE_RECONCILE_INTERVAL_SECONDS", "1")

# Import (and compile) the handlers here, in the main thread: CPython 3.11 can fail with
# "AST constructor recursion depth mismatch" when kopf's thread compiles modules while pytest
# rewrites test modules in the main thread.
importlib.import_module("cdc_operator.handlers")
# The same for hypothesis: its pytest plugin imports it at the end of the session, where no hypothesis test ran
# before (only these tests selected); that late import once failed so while other threads were still running.
importlib.import_module("hypothesis")

REPO = Path(__file__).resolve().parents[3]
CRD = REPO / "crds" / "headrace.io_cdcpipelines.yaml"

pytestmark = pytest.mark.kube


@pytest.fixture(scope="session")
def crd(control_plane: ControlPlane) -> str:
    control_plane.kubectl("apply", "-f", str(CRD))
    control_plane.wait_established("cdcpipelines.headrace.io", timeout=60)
    return "cdcpipelines.headrace.io"


@pytest.fixture
def cluster(control_plane: ControlPlane, kube_namespace: str, crd: str) -> Cluster:
    return Cluster(control_plane, kube_namespace)


@pytest.fixture
def cassandra(cluster: Cluster) -> Cluster:
    """A StatefulSet ``cassandra`` with pods cassandra-0 and -1, and the Secret the default pipeline uses."""
    cluster.apply(statefulset(), cassandra_pod("cassandra-0"), cassandra_pod("cassandra-1"))
    cluster.apply(secret("shop-sinks", "postgres-dsn"))
    return cluster


def operator_runner(cluster: Cluster) -> KopfRunner:
    return KopfRunner(
        ["run", "--standalone", "--namespace", cluster.namespace, "-m", "cdc_operator.handlers"],
        timeout=60,
    )


def operator_with(cluster: Cluster, monkeypatch: pytest.MonkeyPatch, **env: str) -> Iterator[KopfRunner]:
    """The operator in a thread (kopf.testing.KopfRunner), watching only this test's namespace, with ``env``
    on top of the tests' settings; it must end without an exception."""
    monkeypatch.setenv("KUBECONFIG", str(cluster.plane.kubeconfig))
    monkeypatch.setenv("HEADRACE_REPORT_STALE_SECONDS", "60")
    monkeypatch.setenv("HEADRACE_DRAIN_TIMEOUT_SECONDS", "600")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with operator_runner(cluster) as runner:
        yield runner
    assert runner.exception is None, runner.output
    assert runner.exit_code == 0, runner.output


@pytest.fixture
def operator(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> Iterator[KopfRunner]:
    yield from operator_with(cluster, monkeypatch)
