"""Each runtime's identity and report: it may write its own report and do nothing else.

Every runtime (one per Cassandra pod) has a ServiceAccount of its own, named as
its Deployment, and a Role that grants ``get`` and ``patch`` on one object: the
ConfigMap ``<runtime>-report`` that the operator creates empty (``resourceNames``;
a Role cannot limit ``create`` by name, hence created here). The runtime writes
its NodeStatus there; the operator reads every report of the pipeline and
writes ``status.nodes``. So a runtime can only speak for itself: it cannot
touch another node's report, the pipeline's status or spec, Secrets (they
arrive as mounted files) or any other object.
"""

from __future__ import annotations

from typing import Any

from cdc_operator import naming
from cdc_operator.cassandra import CassandraPod
from cdc_operator.render.context import PipelineRef


def _metadata(pipeline: PipelineRef, pod: CassandraPod, name: str, component: str = "runtime") -> dict[str, Any]:
    return pipeline.metadata(
        name,
        labels={naming.LABEL_CASSANDRA_POD: naming.fit(pod.name), naming.LABEL_COMPONENT: component},
        annotations={naming.ANNOTATION_CASSANDRA_POD: pod.name},
    )


def render_service_account(pipeline: PipelineRef, pod: CassandraPod) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _metadata(pipeline, pod, naming.runtime_deployment(pipeline.name, pod.name)),
    }


def render_role(pipeline: PipelineRef, pod: CassandraPod) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": _metadata(pipeline, pod, naming.runtime_deployment(pipeline.name, pod.name)),
        "rules": [
            {
                "apiGroups": [""],
                "resources": ["configmaps"],
                "resourceNames": [naming.runtime_report(pipeline.name, pod.name)],
                "verbs": ["get", "patch"],
            }
        ],
    }


def render_role_binding(pipeline: PipelineRef, pod: CassandraPod) -> dict[str, Any]:
    name = naming.runtime_deployment(pipeline.name, pod.name)
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _metadata(pipeline, pod, name),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": pipeline.namespace}],
    }


def render_report(pipeline: PipelineRef, pod: CassandraPod) -> dict[str, Any]:
    """The empty report ConfigMap. The operator applies only its metadata, so re-applying it never
    removes what the runtime wrote into ``data`` (server-side apply: each field has one manager)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(pipeline, pod, naming.runtime_report(pipeline.name, pod.name), naming.COMPONENT_REPORT),
    }


def render_identity(pipeline: PipelineRef, pod: CassandraPod) -> list[dict[str, Any]]:
    """ServiceAccount, Role, RoleBinding and report ConfigMap of the runtime of ``pod``, in apply order."""
    return [
        render_service_account(pipeline, pod),
        render_role(pipeline, pod),
        render_role_binding(pipeline, pod),
        render_report(pipeline, pod),
    ]
