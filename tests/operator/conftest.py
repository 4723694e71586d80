"""Operator tests: the real kube-apiserver + etcd come from devservices' envtest plugin."""

from devservices.pytest_envtest import control_plane, kube_namespace  # noqa: F401
