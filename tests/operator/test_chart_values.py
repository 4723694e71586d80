"""Chart values that reach the operator as settings (rendered with helm, no cluster)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from devservices.envtest import assets_dir, binary_path
from devservices.pytest_require import require_binary

CHART = Path(__file__).resolve().parents[2] / "charts" / "headrace"


def render(*values: str) -> subprocess.CompletedProcess[str]:
    helm = require_binary(binary_path("helm", assets_dir()), "`make deps` (scripts/build-envtest.sh) builds it")
    command = [str(helm), "template", "headrace", str(CHART), *(a for v in values for a in ("--set", v))]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def operator_env(*values: str) -> dict[str, Any]:
    result = render(*values)
    assert result.returncode == 0, result.stderr
    (deployment,) = [d for d in yaml.safe_load_all(result.stdout) if d and d["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value") for e in container["env"]}


def test_the_peering_lifetime_reaches_the_operator_with_peering_only() -> None:
    assert operator_env("peering.enabled=true", "replicaCount=2")["HEADRACE_PEERING_LIFETIME_SECONDS"] == "30"
    assert (
        operator_env("peering.enabled=true", "peering.lifetimeSeconds=12")["HEADRACE_PEERING_LIFETIME_SECONDS"] == "12"
    )
    assert "HEADRACE_PEERING_LIFETIME_SECONDS" not in operator_env()
    refused = render("peering.enabled=true", "peering.lifetimeSeconds=1")
    assert refused.returncode != 0 and "lifetimeSeconds" in refused.stderr
