"""One runtime Deployment per Cassandra pod, pinned to that pod's node.

Why each choice:

* required podAffinity to exactly that pod (``kubernetes.io/hostname``) and
  required nodeAffinity to the node it is scheduled on (``metadata.name``): the
  runtime reads the pod's data PVC, which is usually ReadWriteOnce and can only
  be shared by pods on the same node. When the Cassandra pod lands on another
  node the Deployment changes, and ``Recreate`` stops the old runtime (freeing
  the volume for Cassandra) before the new one starts beside the pod;
* ``replicas: 0`` while the Cassandra pod is not scheduled: the runtime steps
  aside rather than hold the volume the pod needs wherever it lands;
* the data PVC is mounted read-write because the runtime deletes the cdc_raw
  segments every sink has committed, and it runs as Cassandra's own uid/gid,
  the owner of cdc_raw;
* ``strategy: Recreate``: two runtimes on one cdc_raw would both delete
  segments; a rollout stops the old one before the new one starts;
* non-root, read-only root filesystem, no capabilities, no privilege escalation,
  RuntimeDefault seccomp; ``/tmp`` is an emptyDir for libraries that need one;
* the config hash and the restart token sit in the pod template's annotations,
  so a configuration change or a ``headrace.io/restart`` annotation rolls the pod;
* ``replicas: 0`` while ``spec.paused``;
* never BestEffort beside Cassandra: ``DEFAULT_RESOURCES`` fill each quantity the
  pipeline leaves unset; ``fsGroupChangePolicy: OnRootMismatch`` so the kubelet
  does not chown Cassandra's whole data volume at every start; a startup probe
  covers the connect to Cassandra before liveness counts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cdc_operator import naming
from cdc_operator.cassandra import CassandraPod
from cdc_operator.render.configmap import CONFIG_DIR, CONFIG_PATH
from cdc_operator.render.context import PipelineRef
from cdc_operator.render.secrets import SECRETS_DIR, secret_mounts, secret_volumes
from pipeline_runtime.config.model import PipelineSpec

#: Serves /healthz, /readyz and /metrics (pipeline_runtime.observability.http).
HTTP_PORT = 9400
HTTP_PORT_NAME = "http-metrics"
#: Where the Cassandra data volume appears, as in the Cassandra pod (k8ssandra's layout).
DATA_DIR = "/var/lib/cassandra"
#: Where a runtime's own dead-letter claim is mounted (runtime.deadLetters.volumeClaim).
DEAD_LETTER_DIR = "/var/lib/headrace/dead-letters"
CONTAINER = "runtime"
#: Resources of a runtime whose pipeline sets none (each quantity the pipeline sets wins): a runtime that
#: drains a backlog uses about one core; memory stays flat in the backlog (docs/operator.md).
DEFAULT_RESOURCES: dict[str, dict[str, str]] = {
    "requests": {"cpu": "250m", "memory": "256Mi"},
    "limits": {"memory": "1Gi"},
}


def render_deployment(
    pipeline: PipelineRef,
    spec: PipelineSpec,
    pod: CassandraPod,
    config_hash: str,
    secrets: Mapping[str, tuple[str, ...]],
) -> dict[str, Any]:
    """The runtime Deployment for ``pod``; ``pod.data_claim`` must be set."""
    if pod.data_claim is None:
        raise ValueError(f"Cassandra pod {pod.name} has no data PVC to mount")
    selector = {
        naming.LABEL_PIPELINE: naming.fit(pipeline.name),
        naming.LABEL_CASSANDRA_POD: naming.fit(pod.name),
    }
    template_annotations = {naming.ANNOTATION_CONFIG_HASH: config_hash}
    if pipeline.restart_token:
        template_annotations[naming.ANNOTATION_RESTART] = pipeline.restart_token
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": pipeline.metadata(
            naming.runtime_deployment(pipeline.name, pod.name),
            labels=selector,
            annotations={naming.ANNOTATION_CASSANDRA_POD: pod.name},
        ),
        "spec": {
            "replicas": 0 if spec.paused or pod.node_name is None else 1,
            "revisionHistoryLimit": 3,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {
                    "labels": {**naming.pipeline_labels(pipeline.name), **selector},
                    "annotations": template_annotations,
                },
                "spec": _pod_spec(pipeline, spec, pod, config_hash, secrets),
            },
        },
    }


def _pod_spec(
    pipeline: PipelineRef,
    spec: PipelineSpec,
    pod: CassandraPod,
    config_hash: str,
    secrets: Mapping[str, tuple[str, ...]],
) -> dict[str, Any]:
    pod_spec: dict[str, Any] = {
        "serviceAccountName": naming.runtime_deployment(pipeline.name, pod.name),
        "automountServiceAccountToken": True,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 30,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": pod.run_as_user,
            "runAsGroup": pod.run_as_group,
            "fsGroup": pod.fs_group,
            # Cassandra's volume already belongs to its group: never chown the whole data volume at each start.
            "fsGroupChangePolicy": "OnRootMismatch",
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "affinity": {
            **_node_affinity(pod),
            "podAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "labelSelector": {"matchLabels": dict(pod.affinity_labels)},
                        "topologyKey": "kubernetes.io/hostname",
                    }
                ]
            },
        },
        "containers": [_container(pipeline, spec, pod, config_hash, secrets)],
        "volumes": [
            {"name": "config", "configMap": {"name": naming.config_map(pipeline.name)}},
            {"name": "cassandra-data", "persistentVolumeClaim": {"claimName": pod.data_claim}},
            {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
            *secret_volumes(secrets),
        ],
    }
    if spec.runtime.dead_letters.volume_claim is not None:
        claim = naming.dead_letter_claim(pipeline.name, pod.name)
        pod_spec["volumes"].append({"name": "dead-letters", "persistentVolumeClaim": {"claimName": claim}})
    if pod.tolerations:
        # The runtime must be allowed wherever its Cassandra pod is allowed.
        pod_spec["tolerations"] = [dict(t) for t in pod.tolerations]
    if spec.runtime.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": name} for name in spec.runtime.image_pull_secrets]
    if spec.runtime.priority_class_name:
        pod_spec["priorityClassName"] = spec.runtime.priority_class_name
    return pod_spec


def _container(
    pipeline: PipelineRef,
    spec: PipelineSpec,
    pod: CassandraPod,
    config_hash: str,
    secrets: Mapping[str, tuple[str, ...]],
) -> dict[str, Any]:
    cdc_raw = f"{DATA_DIR}/{spec.source.cassandra.cdc_raw_path.strip('/')}"
    env = [
        {"name": "HEADRACE_PIPELINE", "value": pipeline.name},
        {"name": "HEADRACE_NAMESPACE", "value": pipeline.namespace},
        {"name": "HEADRACE_NODE", "value": pod.name},
        # Where it reports its NodeStatus (the only object its ServiceAccount may write).
        {"name": "HEADRACE_REPORT_CONFIGMAP", "value": naming.runtime_report(pipeline.name, pod.name)},
        {"name": "HEADRACE_CONFIG", "value": CONFIG_PATH},
        # Reported back (status.nodes.<pod>.configHash): tells the operator the rollout reached this node.
        {"name": "HEADRACE_CONFIG_HASH", "value": config_hash},
        {"name": "HEADRACE_CDC_RAW_DIR", "value": cdc_raw},
        {"name": "HEADRACE_SECRETS_DIR", "value": SECRETS_DIR},
        {"name": "HEADRACE_HTTP_PORT", "value": str(HTTP_PORT)},
        {"name": "HEADRACE_LOG_LEVEL", "value": spec.runtime.log_level.value},
        # Schema reads go to this node's own Cassandra unless the pipeline names a contactPoint.
        *([{"name": "HEADRACE_CASSANDRA_HOST", "value": pod.address}] if pod.address else []),
        # Dead letters on a claim of their own when asked, else beside cdc_raw (the runtime's default).
        *(
            [{"name": "HEADRACE_DEAD_LETTER_DIR", "value": DEAD_LETTER_DIR}]
            if spec.runtime.dead_letters.volume_claim is not None
            else []
        ),
        *({"name": e.name, "value": e.value} for e in spec.runtime.env),
    ]
    probe = {"port": HTTP_PORT_NAME}
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": spec.runtime.image,
        "imagePullPolicy": "IfNotPresent",
        "args": ["run", "--config", CONFIG_PATH, "--secrets-dir", SECRETS_DIR],
        "env": env,
        "ports": [{"name": HTTP_PORT_NAME, "containerPort": HTTP_PORT, "protocol": "TCP"}],
        # Startup (connecting to Cassandra, reading the schema) may take minutes; liveness starts after it.
        "startupProbe": {
            "httpGet": {"path": "/healthz", **probe},
            "periodSeconds": 5,
            "timeoutSeconds": 5,
            "failureThreshold": 60,
        },
        "livenessProbe": {
            "httpGet": {"path": "/healthz", **probe},
            "periodSeconds": 10,
            "timeoutSeconds": 5,
            "failureThreshold": 6,
        },
        "readinessProbe": {
            "httpGet": {"path": "/readyz", **probe},
            "periodSeconds": 10,
            "timeoutSeconds": 5,
            "failureThreshold": 3,
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
            {"name": "cassandra-data", "mountPath": DATA_DIR},
            {"name": "tmp", "mountPath": "/tmp"},
            *secret_mounts(secrets),
        ],
    }
    if spec.runtime.dead_letters.volume_claim is not None:
        container["volumeMounts"].append({"name": "dead-letters", "mountPath": DEAD_LETTER_DIR})
    resources = spec.runtime.resources
    # Never BestEffort beside Cassandra: the defaults fill what the pipeline leaves unset, per quantity.
    container["resources"] = {
        "requests": DEFAULT_RESOURCES["requests"] | dict(resources.requests),
        "limits": DEFAULT_RESOURCES["limits"] | dict(resources.limits),
    }
    return container


def _node_affinity(pod: CassandraPod) -> dict[str, Any]:
    """Required affinity to the Cassandra pod's current node (none while it has no node: replicas are 0)."""
    if pod.node_name is None:
        return {}
    term = {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [pod.node_name]}]}
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}}}
