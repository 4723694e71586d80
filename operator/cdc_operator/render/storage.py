"""A runtime's own dead-letter claim (``runtime.deadLetters.volumeClaim``).

Dead letters are rows a sink refused: a record to act on, like sink data. So the
claim carries the pipeline's labels but no owner reference: neither the
garbage collector nor the operator's cleanup deletes it with its runtime or
pipeline. Its spec is immutable once bound (the API server refuses a change of
class; a larger size needs a StorageClass that allows expansion), and such a
refusal is reported as ``ApplyRejected`` with the API server's words.
"""

from __future__ import annotations

from typing import Any

from cdc_operator import naming
from cdc_operator.cassandra import CassandraPod
from cdc_operator.render.context import PipelineRef
from pipeline_runtime.config.model import DeadLetterVolume

#: ``app.kubernetes.io/component`` of dead-letter claims.
COMPONENT_DEAD_LETTERS = "dead-letters"


def render_dead_letter_claim(pipeline: PipelineRef, pod: CassandraPod, volume: DeadLetterVolume) -> dict[str, Any]:
    meta = pipeline.metadata(
        naming.dead_letter_claim(pipeline.name, pod.name),
        labels={naming.LABEL_CASSANDRA_POD: naming.fit(pod.name), naming.LABEL_COMPONENT: COMPONENT_DEAD_LETTERS},
        annotations={naming.ANNOTATION_CASSANDRA_POD: pod.name},
    )
    del meta["ownerReferences"]
    spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": volume.size}}}
    if volume.storage_class_name is not None:
        spec["storageClassName"] = volume.storage_class_name
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": meta, "spec": spec}
