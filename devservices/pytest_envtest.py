"""pytest plugin: a session-wide real Kubernetes control plane (etcd + kube-apiserver).

Register it from the root ``tests/conftest.py`` with
``pytest_plugins = ["devservices.pytest_envtest"]``. Tests that need the
cluster take the ``control_plane`` fixture (one per session: the apiserver
takes seconds to start, and tests isolate themselves with ``kube_namespace``).
Tests that need Pods to exist and run take ``workload_control_plane``.

When the binaries are not built the fixture skips, naming the missing binary
and how to build it, so a developer without Go still runs the rest of the
suite. Under ``CI=true`` the same condition fails instead: CI builds the
binaries first, so their absence there is a broken pipeline, not a choice.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from devservices.envtest import (
    WORKLOAD_BINARIES,
    ControlPlane,
    assets_dir,
    binary_path,
    missing_binaries,
    running_control_plane,
)
from devservices.pytest_require import unavailable


def require_envtest_binaries(*, workloads: bool = False) -> Path:
    """The assets folder, after skipping (failing under CI) when a required binary is missing."""
    folder = assets_dir()
    missing = missing_binaries(folder)
    if workloads:
        missing += [name for name in WORKLOAD_BINARIES if not os.access(binary_path(name, folder), os.X_OK)]
    if missing:
        unavailable(
            f"envtest binary {missing[0]} not found in {folder} (missing: {', '.join(missing)}); "
            "build it with scripts/build-envtest.sh or set KUBEBUILDER_ASSETS"
        )
    return folder


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A running kube-apiserver + etcd for the whole session, with a cluster-admin kubeconfig."""
    folder = require_envtest_binaries()
    with running_control_plane(tmp_path_factory.mktemp("envtest"), folder) as plane:
        yield plane


@pytest.fixture(scope="session")
def workload_control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A control plane where workloads run: controller-manager, scheduler and a kwok fake node.

    A separate apiserver from ``control_plane``: the controllers delete,
    garbage-collect and create objects, which tests of what the operator alone
    writes must not see. Only tests that need Pods should pay for it.
    """
    folder = require_envtest_binaries(workloads=True)
    with running_control_plane(tmp_path_factory.mktemp("envtest-workloads"), folder, workloads=True) as plane:
        yield plane


@pytest.fixture
def kube_namespace(control_plane: ControlPlane) -> Iterator[str]:
    """A fresh namespace per test; deleted without waiting (no controller-manager finishes it)."""
    name = f"t-{secrets.token_hex(4)}"
    control_plane.kubectl("create", "namespace", name)
    yield name
    control_plane.kubectl("delete", "namespace", name, "--wait=false", check=False)
