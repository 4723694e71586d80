"""Carry out the scale-down policy of ``cdc_operator.scaledown`` on existing runtime Deployments."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from cdc_operator import metrics, naming
from cdc_operator.kube.client import Kube
from cdc_operator.scaledown import Action, RuntimeDeployment, decide
from pipeline_runtime.config.status import NodeStatus


@dataclass
class Retirement:
    draining: dict[str, str] = field(default_factory=dict)
    """Cassandra pod -> Deployment kept while it drains."""
    removed: list[str] = field(default_factory=list)
    """Cassandra pods whose runtime was deleted in this pass."""
    current: dict[str, str] = field(default_factory=dict)
    """Cassandra pod -> Deployment for pods that are still there."""


def as_runtime(deployment: Mapping[str, Any]) -> RuntimeDeployment:
    meta = deployment["metadata"]
    annotations = meta.get("annotations") or {}
    gone = annotations.get(naming.ANNOTATION_SOURCE_GONE_SINCE)
    return RuntimeDeployment(
        name=meta["name"],
        cassandra_pod=annotations.get(naming.ANNOTATION_CASSANDRA_POD, ""),
        gone_since=datetime.fromisoformat(gone) if gone else None,
    )


async def remove_runtime(kube: Kube, namespace: str, deployment: str) -> None:
    """Delete a runtime: its Deployment first (the process stops), then its identity and report."""
    await kube.delete("Deployment", namespace, deployment)
    metrics.DELETED.labels(kind="Deployment").inc()
    for kind in ("RoleBinding", "Role", "ServiceAccount"):
        if await kube.delete(kind, namespace, deployment):
            metrics.DELETED.labels(kind=kind).inc()
    if await kube.delete("ConfigMap", namespace, naming.report_of(deployment)):
        metrics.DELETED.labels(kind="ConfigMap").inc()


async def retire(
    kube: Kube,
    namespace: str,
    deployments: Sequence[Mapping[str, Any]],
    *,
    live_pods: Sequence[str],
    nodes: Mapping[str, NodeStatus],
    now: datetime,
    drain_timeout: timedelta,
    paused: bool = False,
    present_pods: Sequence[str] = (),
) -> Retirement:
    """Delete, stamp or keep each runtime Deployment by the scale-down policy.

    A runtime kept to drain a removed pod's backlog is not rendered any more, so its
    replicas follow ``spec.paused`` here: zero while paused, one again on resume.
    """
    result = Retirement()
    for body in deployments:
        runtime = as_runtime(body)
        action = decide(runtime, live_pods, nodes, now, drain_timeout, present_pods=present_pods)
        if action is Action.DELETE:
            await remove_runtime(kube, namespace, runtime.name)
            result.removed.append(runtime.cassandra_pod)
            continue
        if action in (Action.MARK_GONE, Action.UNMARK):
            stamp = now.isoformat() if action is Action.MARK_GONE else None
            patch = {"metadata": {"annotations": {naming.ANNOTATION_SOURCE_GONE_SINCE: stamp}}}
            await kube.merge_patch("Deployment", namespace, runtime.name, patch)
        if runtime.cassandra_pod in live_pods:
            result.current[runtime.cassandra_pod] = runtime.name
        else:
            result.draining[runtime.cassandra_pod] = runtime.name
            wanted = 0 if paused else 1
            if (body.get("spec") or {}).get("replicas") != wanted:
                await kube.merge_patch("Deployment", namespace, runtime.name, {"spec": {"replicas": wanted}})
    return result


async def stand_down(
    kube: Kube, namespace: str, deployments: Sequence[dict[str, Any]], read_elsewhere: Mapping[str, str]
) -> list[dict[str, Any]]:
    """Delete the runtimes of Cassandra pods another pipeline reads; returns the Deployments left.

    Two runtimes on one ``cdc_raw`` delete each other's unread segments: the pipeline created
    later gives way at once (its sinks keep their positions; nothing it committed is lost).
    """
    kept = []
    for body in deployments:
        runtime = as_runtime(body)
        if runtime.cassandra_pod in read_elsewhere:
            await remove_runtime(kube, namespace, runtime.name)
            continue
        kept.append(body)
    return kept
