"""Load a pipeline from YAML: a whole CDCPipeline manifest, or just its spec.

The operator writes the manifest shape into the runtime's ConfigMap; a
standalone user may write either. Validation errors become one ConfigError
listing every problem with its path in camelCase, as the user wrote it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from pipeline_runtime.config.model import PipelineSpec
from pipeline_runtime.errors import ConfigError

API_VERSION = "headrace.io/v1alpha1"
KIND = "CDCPipeline"


@dataclass(frozen=True)
class LoadedPipeline:
    """A validated pipeline with its name and namespace (``default`` standalone)."""

    name: str
    namespace: str
    spec: PipelineSpec


def describe_validation_error(error: ValidationError, prefix: str = "spec") -> str:
    """One line per problem: ``spec.sinks[0].type: Input should be ...``."""
    lines = []
    for problem in error.errors():
        path = prefix
        for part in problem["loc"]:
            path += f"[{part}]" if isinstance(part, int) else f".{part}"
        lines.append(f"{path}: {problem['msg']}")
    return "\n".join(lines)


def parse_pipeline(document: Any, default_name: str = "pipeline") -> LoadedPipeline:
    """Validate a parsed YAML document (manifest or bare spec)."""
    if not isinstance(document, dict):
        raise ConfigError("pipeline config must be a mapping (a CDCPipeline manifest or its spec)")
    if document.get("kind") == KIND or "spec" in document:
        metadata = document.get("metadata") or {}
        name = str(metadata.get("name", default_name))
        namespace = str(metadata.get("namespace", "default"))
        body = document.get("spec")
    else:
        body = {k: v for k, v in document.items() if k != "name"}
        name = str(document.get("name", default_name))
        namespace = "default"
    try:
        spec = PipelineSpec.model_validate(body)
    except ValidationError as exc:
        raise ConfigError(f"invalid pipeline {name}:\n{describe_validation_error(exc)}") from exc
    return LoadedPipeline(name=name, namespace=namespace, spec=spec)


def load_pipeline(path: Path) -> LoadedPipeline:
    """Read and validate the pipeline YAML at ``path``."""
    try:
        document = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read pipeline config {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"pipeline config {path} is not valid YAML: {exc}") from exc
    return parse_pipeline(document, default_name=path.stem)
