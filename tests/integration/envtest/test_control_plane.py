"""The envtest control plane is a real, RBAC-enforcing kube-apiserver of the stamped version."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from kubernetes import client, config

from devservices.envtest import DEFAULT_K8S_VERSION, ControlPlane
from devservices.pytest_require import require_binary

pytestmark = pytest.mark.kube


def test_version_is_stamped(control_plane: ControlPlane) -> None:
    server = json.loads(control_plane.kubectl("get", "--raw", "/version").stdout)
    assert server["gitVersion"] == f"v{DEFAULT_K8S_VERSION}"
    assert (server["major"], server["minor"]) == ("1", DEFAULT_K8S_VERSION.split(".")[1])

    versions = json.loads(control_plane.kubectl("version", "--output=json").stdout)
    assert versions["clientVersion"]["gitVersion"] == f"v{DEFAULT_K8S_VERSION}"
    assert versions["serverVersion"]["gitVersion"] == f"v{DEFAULT_K8S_VERSION}"


def test_kubeconfig_points_at_loopback(control_plane: ControlPlane) -> None:
    assert control_plane.server.startswith("https://127.0.0.1:")
    view = json.loads(control_plane.kubectl("config", "view", "--raw", "--output=json").stdout)
    assert view["clusters"][0]["cluster"]["server"] == control_plane.server


def test_namespace_and_configmap_with_kubectl(control_plane: ControlPlane) -> None:
    control_plane.kubectl("create", "namespace", "smoke-kubectl")
    control_plane.kubectl(
        "create", "configmap", "settings", "--namespace=smoke-kubectl", "--from-literal=sink=postgres"
    )
    configmap = json.loads(
        control_plane.kubectl("get", "configmap", "settings", "--namespace=smoke-kubectl", "--output=json").stdout
    )
    assert configmap["data"] == {"sink": "postgres"}
    assert configmap["metadata"]["uid"]


def test_namespace_and_configmap_with_python_client(control_plane: ControlPlane) -> None:
    api_client = config.new_client_from_config(config_file=str(control_plane.kubeconfig))  # type: ignore[no-untyped-call]
    try:
        core = client.CoreV1Api(api_client)
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="smoke-python")))
        core.create_namespaced_config_map(
            "smoke-python",
            client.V1ConfigMap(metadata=client.V1ObjectMeta(name="settings"), data={"sink": "clickhouse"}),
        )
        assert core.read_namespaced_config_map("settings", "smoke-python").data == {"sink": "clickhouse"}
    finally:
        api_client.close()
    # What the Python client wrote, kubectl reads back: both really talk to the same server.
    listed = control_plane.kubectl("get", "configmap", "settings", "-n", "smoke-python", "-o", "jsonpath={.data.sink}")
    assert listed.stdout == "clickhouse"


def can_i(control_plane: ControlPlane, verb: str, resource: str, namespace: str, service_account: str) -> str:
    result = control_plane.kubectl(
        "auth", "can-i", verb, resource, f"--namespace={namespace}",
        f"--as=system:serviceaccount:{namespace}:{service_account}",
        check=False,
    )  # fmt: skip
    # can-i answers on stdout and exits 0 for yes, 1 for no; anything else is an error.
    assert result.returncode in (0, 1), result.stderr
    return result.stdout.strip()


def test_rbac_is_enforced(control_plane: ControlPlane, kube_namespace: str) -> None:
    control_plane.kubectl("create", "serviceaccount", "runtime", f"--namespace={kube_namespace}")
    assert can_i(control_plane, "get", "configmaps", kube_namespace, "runtime") == "no"
    forbidden = control_plane.kubectl(
        "get", "configmaps", f"--namespace={kube_namespace}",
        f"--as=system:serviceaccount:{kube_namespace}:runtime",
        check=False,
    )  # fmt: skip
    assert forbidden.returncode != 0
    assert "forbidden" in forbidden.stderr.lower()

    control_plane.kubectl(
        "create", "role", "read-config", "--verb=get,list", "--resource=configmaps", f"--namespace={kube_namespace}"
    )
    control_plane.kubectl(
        "create", "rolebinding", "runtime-read-config", "--role=read-config",
        f"--serviceaccount={kube_namespace}:runtime", f"--namespace={kube_namespace}",
    )  # fmt: skip
    # The RBAC authorizer reads from an informer cache: the binding takes effect within moments.
    deadline = time.monotonic() + 10
    while can_i(control_plane, "get", "configmaps", kube_namespace, "runtime") != "yes":
        assert time.monotonic() < deadline, "the RoleBinding did not take effect within 10 s"
        time.sleep(0.2)
    assert can_i(control_plane, "delete", "configmaps", kube_namespace, "runtime") == "no"
    assert can_i(control_plane, "get", "secrets", kube_namespace, "runtime") == "no"


def test_helm_installs_a_chart(control_plane: ControlPlane, kube_namespace: str, tmp_path: Path) -> None:
    require_binary(control_plane.assets_dir / "helm", "`make deps` (scripts/build-envtest.sh) builds it")
    version = control_plane.helm("version", "--short").stdout
    assert version.startswith("v3."), version
    control_plane.helm("create", str(tmp_path / "demo"))
    control_plane.helm("install", "demo", str(tmp_path / "demo"), f"--namespace={kube_namespace}")
    deployments = control_plane.kubectl("get", "deployments", f"--namespace={kube_namespace}", "-o", "name")
    assert deployments.stdout.split() == ["deployment.apps/demo"]
    releases = json.loads(control_plane.helm("list", f"--namespace={kube_namespace}", "--output=json").stdout)
    assert [(r["name"], r["status"]) for r in releases] == [("demo", "deployed")]
