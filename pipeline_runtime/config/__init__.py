"""The typed pipeline model shared by the runtime, the operator and the CRD."""

from pipeline_runtime.config.model import (
    CassandraSource,
    MaskRule,
    MaskStrategy,
    PipelineSpec,
    SecretRef,
    SinkSpec,
    SinkType,
    SourceSpec,
    TableSelector,
    TransformSpec,
)

__all__ = [
    "CassandraSource",
    "MaskRule",
    "MaskStrategy",
    "PipelineSpec",
    "SecretRef",
    "SinkSpec",
    "SinkType",
    "SourceSpec",
    "TableSelector",
    "TransformSpec",
]
