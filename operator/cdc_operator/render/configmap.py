"""The runtime's configuration as a ConfigMap, and the hash that rolls the runtimes when it changes.

The document is the CDCPipeline manifest shape that
``pipeline_runtime.config.loader`` reads, with every default filled in, so a
runtime never depends on the operator's version of a default. It holds Secret
*references* only: the model has no field that can carry a secret value.
``spec.paused`` is left out: pausing scales the Deployments and must not look
like a configuration change when it is undone.
"""

from __future__ import annotations

import hashlib
from typing import Any

import yaml

from cdc_operator import naming
from cdc_operator.render.context import PipelineRef
from pipeline_runtime.config.model import PipelineSpec

CONFIG_KEY = "pipeline.yaml"
CONFIG_DIR = "/etc/headrace/config"
CONFIG_PATH = f"{CONFIG_DIR}/{CONFIG_KEY}"


def config_document(pipeline: PipelineRef, spec: PipelineSpec) -> str:
    """The YAML the runtime loads."""
    document = {
        "apiVersion": naming.API_VERSION,
        "kind": naming.KIND,
        "metadata": {"name": pipeline.name, "namespace": pipeline.namespace},
        "spec": spec.model_dump(mode="json", by_alias=True, exclude={"paused"}),
    }
    return yaml.safe_dump(document, sort_keys=True)


def config_hash(document: str) -> str:
    """Short content hash; a new value in the pod template makes the Deployment roll."""
    return hashlib.sha256(document.encode()).hexdigest()[:16]


def render_config_map(pipeline: PipelineRef, document: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": pipeline.metadata(
            naming.config_map(pipeline.name),
            annotations={naming.ANNOTATION_CONFIG_HASH: config_hash(document)},
        ),
        "data": {CONFIG_KEY: document},
    }
