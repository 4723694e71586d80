"""``make envtest-up`` / ``envtest-down``: a detached control plane that outlives its starter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from devservices.envtest import binary_path
from devservices.pytest_envtest import require_envtest_binaries

pytestmark = pytest.mark.kube


def run_hook(hook: str, state_dir: Path) -> subprocess.CompletedProcess[str]:
    code = f"import pathlib, devservices.envtest as e; e.{hook}(pathlib.Path({str(state_dir)!r}))"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180, check=True)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_cli_up_then_down(tmp_path: Path) -> None:
    assets = require_envtest_binaries()
    state_dir = tmp_path / "state"
    try:
        up = run_hook("cli_up", state_dir)
        state = json.loads((state_dir / "envtest.json").read_text())
        assert f"export KUBECONFIG={state['kubeconfig']}" in up.stdout
        pids = [entry["pid"] for entry in state["processes"]]
        assert [entry["name"] for entry in state["processes"]] == ["etcd", "kube-apiserver"]
        # The starter has exited; the control plane still answers.
        readyz = subprocess.run(
            [str(binary_path("kubectl", assets)), "--kubeconfig", state["kubeconfig"], "get", "--raw", "/readyz"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert readyz.stdout == "ok", readyz.stderr
        assert all(alive(pid) for pid in pids)
        again = run_hook("cli_up", state_dir)
        assert "already running" in again.stdout
    finally:
        down = run_hook("cli_down", state_dir)
    assert "stopped kube-apiserver" in down.stdout
    assert not any(alive(pid) for pid in pids)
    assert not (state_dir / "envtest.json").exists()
    assert os.path.isdir(state_dir / "logs")
