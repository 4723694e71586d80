"""What the operator needs to know about one Cassandra pod, read from the Pod object.

Pure functions: the handlers fetch Pods, StatefulSets and CassandraDatacenters,
and everything that decides *which* pods and *what about them* lives here,
where unit tests can reach it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cdc_operator import naming
from pipeline_runtime.config.model import CassandraSource

#: cass-operator labels every pod of a CassandraDatacenter with the datacenter's name.
CASS_OPERATOR_DATACENTER_LABEL = "cassandra.datastax.com/datacenter"

#: The official Cassandra images (and k8ssandra) run as uid/gid 999; used when the pod does not say.
DEFAULT_CASSANDRA_UID = 999

#: Labels that change over a pod's life (rolling updates): never part of an affinity selector.
_VOLATILE_LABELS = frozenset({"controller-revision-hash", "pod-template-hash", "pod-template-generation"})

#: Tolerations the API server adds to every pod; copying them would only add noise.
_DEFAULT_TOLERATION_KEYS = frozenset({"node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"})


@dataclass(frozen=True)
class CassandraPod:
    """One Cassandra node as the runtime Deployment needs it."""

    name: str
    affinity_labels: Mapping[str, str]
    """Labels that identify exactly this pod, for the runtime's required podAffinity."""
    data_claim: str | None
    """PVC of the data volume; None when the pod has no such PVC volume."""
    run_as_user: int = DEFAULT_CASSANDRA_UID
    run_as_group: int = DEFAULT_CASSANDRA_UID
    fs_group: int = DEFAULT_CASSANDRA_UID
    tolerations: Sequence[Mapping[str, Any]] = field(default_factory=tuple)
    address: str | None = None
    """Where the pod answers CQL: its stable DNS name, else its IP; None before it has either."""
    node_name: str | None = None
    """The node the pod is scheduled on (``spec.nodeName``); None while unscheduled."""
    labels: Mapping[str, str] = field(default_factory=dict)
    """All of the pod's labels (to tell which other pipelines' selectors match it)."""


def workload_selector(kind: str, body: Mapping[str, Any]) -> dict[str, str]:
    """The matchLabels of the pods a StatefulSet or CassandraDatacenter owns."""
    if kind == "CassandraDatacenter":
        return {CASS_OPERATOR_DATACENTER_LABEL: str(body["metadata"]["name"])}
    match_labels = body.get("spec", {}).get("selector", {}).get("matchLabels", {})
    return {str(k): str(v) for k, v in match_labels.items()}


def static_selector(source: CassandraSource) -> dict[str, str] | None:
    """The selector when the spec gives one directly; None means: read the workload first."""
    return dict(source.pod_selector) if source.pod_selector is not None else None


def selector_query(labels: Mapping[str, str]) -> str:
    """matchLabels as a ``labelSelector`` query parameter."""
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))


def is_live(pod: Mapping[str, Any]) -> bool:
    """Pods being deleted or finished do not get a new runtime."""
    if pod.get("metadata", {}).get("deletionTimestamp"):
        return False
    return pod.get("status", {}).get("phase") not in ("Succeeded", "Failed")


def describe(pod: Mapping[str, Any], selector: Mapping[str, str], data_volume: str) -> CassandraPod:
    """Turn a Pod object into a ``CassandraPod``."""
    metadata = pod["metadata"]
    spec = pod.get("spec", {})
    labels: Mapping[str, str] = metadata.get("labels", {}) or {}
    return CassandraPod(
        name=str(metadata["name"]),
        affinity_labels=_affinity_labels(labels, selector),
        data_claim=_data_claim(spec, data_volume),
        **_identity(spec),
        tolerations=tuple(t for t in spec.get("tolerations", []) or [] if t.get("key") not in _DEFAULT_TOLERATION_KEYS),
        address=_address(pod),
        node_name=spec.get("nodeName") or None,
        labels=dict(labels),
    )


def _address(pod: Mapping[str, Any]) -> str | None:
    """A StatefulSet pod's DNS name (``hostname.subdomain.namespace.svc``, kept across restarts;
    cass-operator's pods have one too), else the pod's IP (a new one after a restart, which
    re-renders the runtime), else None."""
    spec = pod.get("spec", {}) or {}
    hostname, subdomain = spec.get("hostname"), spec.get("subdomain")
    namespace = pod["metadata"].get("namespace")
    if hostname and subdomain and namespace:
        return f"{hostname}.{subdomain}.{namespace}.svc"
    ip = (pod.get("status", {}) or {}).get("podIP")
    return str(ip) if ip else None


def _affinity_labels(labels: Mapping[str, str], selector: Mapping[str, str]) -> dict[str, str]:
    """The selector plus the pod's own name label; without that label, its stable labels."""
    chosen = dict(selector)
    if naming.STATEFULSET_POD_NAME_LABEL in labels:
        chosen[naming.STATEFULSET_POD_NAME_LABEL] = labels[naming.STATEFULSET_POD_NAME_LABEL]
    else:
        chosen.update({k: v for k, v in labels.items() if k not in _VOLATILE_LABELS})
    return dict(sorted(chosen.items()))


def _data_claim(spec: Mapping[str, Any], data_volume: str) -> str | None:
    for volume in spec.get("volumes", []) or []:
        if volume.get("name") == data_volume and "persistentVolumeClaim" in volume:
            return str(volume["persistentVolumeClaim"]["claimName"])
    return None


def _identity(spec: Mapping[str, Any]) -> dict[str, int]:
    """Run as Cassandra's own user: cdc_raw belongs to it and the runtime must delete consumed segments.

    Root is never copied: the runtime must run as non-root, so a root Cassandra pod
    falls back to the images' usual uid 999.
    """
    pod_ctx = spec.get("securityContext", {}) or {}
    containers = spec.get("containers", []) or []
    cassandra = next((c for c in containers if c.get("name") == "cassandra"), containers[0] if containers else {})
    container_ctx = cassandra.get("securityContext", {}) or {}
    user = container_ctx.get("runAsUser", pod_ctx.get("runAsUser"))
    group = container_ctx.get("runAsGroup", pod_ctx.get("runAsGroup"))
    fs_group = pod_ctx.get("fsGroup")

    def non_root(value: Any) -> int:
        return int(value) if isinstance(value, int) and value > 0 else DEFAULT_CASSANDRA_UID

    return {"run_as_user": non_root(user), "run_as_group": non_root(group), "fs_group": non_root(fs_group)}
