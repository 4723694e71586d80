"""Names, labels and annotations the operator puts on Kubernetes objects.

Everything another component can rely on (the runtime, Helm, Argo CD, users'
label selectors) is spelled once, here.
"""

from __future__ import annotations

import hashlib

GROUP = "headrace.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "CDCPipeline"
PLURAL = "cdcpipelines"
SINGULAR = "cdcpipeline"
SHORT_NAMES = ("cdcp",)

#: Field manager for server-side apply: who owns the fields the operator renders.
FIELD_MANAGER = "headrace-operator"

LABEL_NAME = "app.kubernetes.io/name"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_PART_OF = "app.kubernetes.io/part-of"
LABEL_PIPELINE = f"{GROUP}/pipeline"
LABEL_CASSANDRA_POD = f"{GROUP}/cassandra-pod"

ANNOTATION_CONFIG_HASH = f"{GROUP}/config-hash"
#: Set by users on the CDCPipeline; a new value restarts every runtime.
ANNOTATION_RESTART = f"{GROUP}/restart"
#: Set by users on the CDCPipeline; a new value re-snapshots every selected table (spec.source.snapshot.request).
ANNOTATION_SNAPSHOT = f"{GROUP}/snapshot"
ANNOTATION_RESET_OFFSETS = f"{GROUP}/reset-offsets"
#: "true" on a CDCPipeline: the operator leaves it and its objects as they are; runtimes keep running.
ANNOTATION_PAUSE_RECONCILIATION = f"{GROUP}/pause-reconciliation"
#: Stamped on a runtime Deployment when its Cassandra pod disappeared (scale-down policy).
ANNOTATION_SOURCE_GONE_SINCE = f"{GROUP}/cassandra-pod-gone-since"
#: The Cassandra pod a runtime Deployment reads, as an annotation (labels may be hashed).
ANNOTATION_CASSANDRA_POD = f"{GROUP}/cassandra-pod"

#: Kopf's bookkeeping lives in annotations with this prefix, never in status.
KOPF_PREFIX = GROUP
#: Where kopf keeps the spec (and labels, annotations) it last handled: the diff base of update events.
KOPF_DIFFBASE = f"{KOPF_PREFIX}/last-handled-configuration"
FINALIZER = f"{GROUP}/cleanup"

#: StatefulSet pods carry their own name as a label; the affinity pins to it.
STATEFULSET_POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"

_MAX_NAME = 63


def fit(name: str, limit: int = _MAX_NAME) -> str:
    """``name`` if it fits in ``limit`` characters, else a prefix plus a stable hash.

    Label values and many object names are capped at 63; hashing keeps two
    long names that share a prefix distinct.
    """
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    return f"{name[: limit - 11].rstrip('-.')}-{digest}"


def runtime_deployment(pipeline: str, cassandra_pod: str) -> str:
    """``<pipeline>-<cassandra-pod>``, the runtime of one Cassandra node."""
    return fit(f"{pipeline}-{cassandra_pod}")


def config_map(pipeline: str) -> str:
    return fit(f"{pipeline}-config")


def runtime_report(pipeline: str, cassandra_pod: str) -> str:
    """The ConfigMap one runtime writes its report into: ``<runtime Deployment>-report``."""
    return report_of(runtime_deployment(pipeline, cassandra_pod))


def dead_letter_claim(pipeline: str, cassandra_pod: str) -> str:
    """The PersistentVolumeClaim of one runtime's dead letters (``runtime.deadLetters.volumeClaim``)."""
    return fit(f"{runtime_deployment(pipeline, cassandra_pod)}-dead-letters")


def report_of(deployment: str) -> str:
    """The report ConfigMap of the runtime Deployment ``deployment``."""
    return fit(f"{deployment}-report")


def pipeline_labels(pipeline: str) -> dict[str, str]:
    """Labels on everything rendered for ``pipeline``; the operator lists its objects by these."""
    return {
        LABEL_NAME: "headrace",
        LABEL_COMPONENT: "runtime",
        LABEL_PART_OF: "headrace",
        LABEL_MANAGED_BY: FIELD_MANAGER,
        LABEL_PIPELINE: fit(pipeline),
    }


def pipeline_selector(pipeline: str) -> str:
    """Label selector (query string form) of the objects rendered for ``pipeline``."""
    return f"{LABEL_PIPELINE}={fit(pipeline)},{LABEL_MANAGED_BY}={FIELD_MANAGER}"


#: ``app.kubernetes.io/component`` of the runtimes' report ConfigMaps.
COMPONENT_REPORT = "report"


def report_selector(pipeline: str) -> str:
    """Label selector of ``pipeline``'s report ConfigMaps."""
    return f"{pipeline_selector(pipeline)},{LABEL_COMPONENT}={COMPONENT_REPORT}"
