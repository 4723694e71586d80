"""The runtime's identity: a ServiceAccount that may report on its own pipeline and do nothing else.

A runtime writes ``status.nodes.<its pod>`` with a merge patch, so the Role
grants ``get`` and ``patch`` on ``cdcpipelines/status`` for this one pipeline
(``resourceNames``). It cannot read Secrets (they arrive as mounted files),
list pipelines, or change any spec.
"""

from __future__ import annotations

from typing import Any

from cdc_operator import naming
from cdc_operator.render.context import PipelineRef


def render_service_account(pipeline: PipelineRef) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": pipeline.metadata(naming.service_account(pipeline.name)),
    }


def render_role(pipeline: PipelineRef) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": pipeline.metadata(naming.service_account(pipeline.name)),
        "rules": [
            {
                "apiGroups": [naming.GROUP],
                "resources": [f"{naming.PLURAL}/status"],
                "resourceNames": [pipeline.name],
                "verbs": ["get", "patch"],
            }
        ],
    }


def render_role_binding(pipeline: PipelineRef) -> dict[str, Any]:
    name = naming.service_account(pipeline.name)
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": pipeline.metadata(name),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": pipeline.namespace}],
    }
