"""Everything one CDCPipeline owns, rendered in the order it should be applied."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cdc_operator.cassandra import CassandraPod
from cdc_operator.render.configmap import config_document, config_hash, render_config_map
from cdc_operator.render.context import PipelineRef
from cdc_operator.render.deployment import render_deployment
from cdc_operator.render.rbac import render_identity
from cdc_operator.render.secrets import referenced_secrets
from cdc_operator.render.storage import render_dead_letter_claim
from pipeline_runtime.config.model import DEFAULT_RUNTIME_IMAGE, PipelineSpec


@dataclass(frozen=True)
class RenderedPipeline:
    """The objects to apply, and what could not be rendered (reported in status, not raised)."""

    objects: list[dict[str, Any]]
    config_hash: str
    secrets: dict[str, tuple[str, ...]]
    pods_without_data: list[str] = field(default_factory=list)
    """Cassandra pods whose data volume is not a PVC: no runtime can read their cdc_raw."""

    @property
    def deployments(self) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == "Deployment"]


def render_pipeline(
    pipeline: PipelineRef,
    spec: PipelineSpec,
    pods: Sequence[CassandraPod],
    runtime_image: str | None = None,
) -> RenderedPipeline:
    """The ConfigMap, then per pod (sorted by name) the runtime's ServiceAccount, Role, RoleBinding,
    report ConfigMap and Deployment.

    A runtime's identity objects come before its Deployment so it never starts without its
    ServiceAccount, configuration or report object. A pipeline that sets no ``spec.runtime.image``
    runs ``runtime_image`` (the operator's own setting, from its Helm values),
    else ``DEFAULT_RUNTIME_IMAGE``: nothing is stored in the pipeline, so an
    operator upgrade moves its runtimes to the new image (the config hash
    changes, they roll), and a pipeline can still pin another.
    """
    if spec.runtime.image is None:
        image = runtime_image or DEFAULT_RUNTIME_IMAGE
        spec = spec.model_copy(update={"runtime": spec.runtime.model_copy(update={"image": image})})
    document = config_document(pipeline, spec)
    digest = config_hash(document)
    secrets = referenced_secrets(spec)
    objects = [render_config_map(pipeline, document)]
    missing = []
    for pod in sorted(pods, key=lambda p: p.name):
        if pod.data_claim is None:
            missing.append(pod.name)
            continue
        objects.extend(render_identity(pipeline, pod))
        if (claim := spec.runtime.dead_letters.volume_claim) is not None:
            objects.append(render_dead_letter_claim(pipeline, pod, claim))
        objects.append(render_deployment(pipeline, spec, pod, digest, secrets))
    return RenderedPipeline(objects=objects, config_hash=digest, secrets=secrets, pods_without_data=missing)
