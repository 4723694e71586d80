"""Fixtures for the control-plane smoke tests.

Imported here until the root ``tests/conftest.py`` registers
``pytest_plugins = ["devservices.pytest_envtest"]``; then this file goes, or the
session would start a second control plane for this folder.
"""

from devservices.pytest_envtest import control_plane, kube_namespace, workload_control_plane  # noqa: F401
