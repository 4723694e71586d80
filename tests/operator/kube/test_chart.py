"""The Helm chart: it renders, and the operator works with exactly the RBAC the chart grants."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml
from cdc_operator import naming

from devservices.envtest import assets_dir, binary_path
from devservices.pytest_require import require_binary
from tests.operator.kube.cluster import Cluster, condition, pipeline, wait_for
from tests.operator.kube.conftest import operator_runner
from tests.operator.kube.runtime import report

pytestmark = pytest.mark.kube

BUILD_HELM = "`make deps` (scripts/build-envtest.sh) builds it"
CHART = Path(__file__).resolve().parents[3] / "charts" / "headrace"


def helm(cluster: Cluster, *args: str) -> str:
    helm_binary = require_binary(binary_path("helm", cluster.plane.assets_dir), BUILD_HELM)
    result = subprocess.run([str(helm_binary), *args], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def token_kubeconfig(cluster: Cluster, service_account: str, path: Path) -> Path:
    """A kubeconfig that authenticates as ``service_account`` with a bound token (TokenRequest API)."""
    token = cluster.kubectl("create", "token", service_account, "--duration=1h").stdout.strip()
    admin = yaml.safe_load(cluster.plane.kubeconfig.read_text())
    admin["users"] = [{"name": "operator", "user": {"token": token}}]
    for context in admin["contexts"]:
        context["context"]["user"] = "operator"
    path.write_text(yaml.safe_dump(admin))
    return path


def test_operator_runs_with_the_chart_rbac(cassandra: Cluster, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    rendered = helm(
        cassandra,
        "template",
        "headrace",
        str(CHART),
        "--namespace",
        cassandra.namespace,
        "--set",
        f"watchNamespaces={{{cassandra.namespace}}}",
    )
    kinds = sorted(d["kind"] for d in yaml.safe_load_all(rendered) if d)
    assert kinds == [
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "Role",
        "RoleBinding",
        "Service",
        "ServiceAccount",
    ]
    cassandra.kubectl("apply", "-f", "-", stdin=rendered)
    monkeypatch.setenv("KUBECONFIG", str(token_kubeconfig(cassandra, "headrace", tmp_path / "operator.kubeconfig")))
    cassandra.apply(pipeline())
    with operator_runner(cassandra) as runner:
        wait_for(lambda: cassandra.get("configmap", "shop-config"), "the runtime ConfigMap", timeout=40)
        for node in ("cassandra-0", "cassandra-1"):
            wait_for(lambda n=node: cassandra.get("configmap", naming.runtime_report("shop", n)), f"{node}'s report")
        for node in ("cassandra-0", "cassandra-1"):
            report(cassandra, node)
        wait_for(
            lambda: (c := condition(cassandra.get("cdcp", "shop"), "Ready")) and c["status"] == "True",
            "Ready under the chart's RBAC",
        )
    assert runner.exception is None, runner.output
    # 403 as a status, not as the milliseconds of a log line's timestamp ("12:16:55,403").
    assert "Forbidden" not in runner.output and not re.search(r"(?<![,.\d])403\b", runner.output), runner.output


def test_chart_refuses_replicas_without_peering(cluster: Cluster) -> None:
    helm_binary = require_binary(binary_path("helm", cluster.plane.assets_dir), BUILD_HELM)
    result = subprocess.run(
        [str(helm_binary), "template", "h", str(CHART), "--set", "replicaCount=2"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0 and "needs peering.enabled=true" in result.stderr


@pytest.mark.parametrize(
    ("setting", "complaint"),
    [
        ("replicaCount=abc", "at '/replicaCount': got string, want integer"),
        ("operator.logFormat=xml", "at '/operator/logFormat'"),
        ("operator.reconcileIntervalSeconds=-5", "at '/operator/reconcileIntervalSeconds'"),
        ("resources.requests.cpu=lots", "at '/resources/requests/cpu'"),
        ("image.pullPolicy=Sometimes", "at '/image/pullPolicy'"),
        ("replicaCoutn=2", "additional properties 'replicaCoutn' not allowed"),
    ],
)
def test_values_the_chart_cannot_use_are_refused_naming_the_value(setting: str, complaint: str) -> None:
    helm_binary = require_binary(binary_path("helm", assets_dir()), BUILD_HELM)
    refused = subprocess.run(
        [str(helm_binary), "template", "h", str(CHART), "--set", setting],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert refused.returncode != 0 and complaint in refused.stderr, refused.stderr
    accepted = subprocess.run(
        [str(helm_binary), "template", "h", str(CHART), "--set", "operator.logFormat=plain,replicaCount=1"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert accepted.returncode == 0, accepted.stderr
