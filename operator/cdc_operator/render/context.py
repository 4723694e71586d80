"""The identity of the CDCPipeline being rendered, and the metadata every object gets from it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cdc_operator import naming


@dataclass(frozen=True)
class PipelineRef:
    """What the renderers need from the CDCPipeline object besides its spec."""

    name: str
    namespace: str
    uid: str
    restart_token: str | None = None
    """Value of the ``headrace.io/restart`` annotation; changing it restarts the runtimes."""

    def owner_reference(self) -> dict[str, Any]:
        """Kubernetes garbage-collects what the pipeline owns when the pipeline goes away."""
        return {
            "apiVersion": naming.API_VERSION,
            "kind": naming.KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }

    def metadata(
        self,
        name: str,
        labels: dict[str, str] | None = None,
        annotations: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Name, namespace, the pipeline's labels and the owner reference."""
        meta: dict[str, Any] = {
            "name": name,
            "namespace": self.namespace,
            "labels": {**naming.pipeline_labels(self.name), **(labels or {})},
        }
        if annotations:
            meta["annotations"] = annotations
        meta["ownerReferences"] = [self.owner_reference()]
        return meta
