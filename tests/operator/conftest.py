"""Operator tests: the real kube-apiserver + etcd fixtures come from devservices.pytest_envtest (tests/conftest.py)."""
