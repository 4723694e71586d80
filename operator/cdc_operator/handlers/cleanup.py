"""Finalizer work: delete every object the operator created for a pipeline, runtimes first.

Owner references would let Kubernetes' garbage collector do this too, but
deleting explicitly stops the runtimes before their identity (ServiceAccount,
Role) disappears, and works where no garbage collector runs. Nothing here can
reach a sink: the operator has no sink credentials and never mounts them.
"""

from __future__ import annotations

from cdc_operator import metrics, naming
from cdc_operator.kube.client import Kube

#: Deletion order: the runtimes, then what they used.
KINDS = ("Deployment", "RoleBinding", "Role", "ServiceAccount", "ConfigMap")


async def delete_owned(kube: Kube, namespace: str, pipeline: str, uid: str) -> int:
    """Delete what carries the pipeline's labels *and* its owner reference; returns how many were deleted."""
    deleted = 0
    selector = naming.pipeline_selector(pipeline)
    for kind in KINDS:
        for obj in await kube.list(kind, namespace, selector):
            owners = obj["metadata"].get("ownerReferences") or []
            if not any(o.get("uid") == uid for o in owners):
                continue
            if await kube.delete(kind, namespace, obj["metadata"]["name"]):
                metrics.DELETED.labels(kind=kind).inc()
                deleted += 1
    return deleted
