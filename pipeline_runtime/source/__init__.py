"""The commitlog CDC source: cdc_raw segments -> change events (see docs/commitlog.md)."""

from pipeline_runtime.source.commitlog.mutation import DecodeStats, MutationDecoder
from pipeline_runtime.source.commitlog.segment import Entry, SegmentReader
from pipeline_runtime.source.schema.driver import DriverSchemaSource
from pipeline_runtime.source.schema.registry import SchemaRegistry, StaticSchemaSource, cdc_tables
from pipeline_runtime.source.tailer import (
    CdcRawSource,
    CdcRawTailer,
    IndexStatus,
    SegmentInfo,
    SourceBatch,
    SourceCounters,
    TailerSettings,
)

__all__ = [
    "CdcRawSource",
    "CdcRawTailer",
    "DecodeStats",
    "DriverSchemaSource",
    "Entry",
    "IndexStatus",
    "MutationDecoder",
    "SchemaRegistry",
    "SegmentInfo",
    "SegmentReader",
    "SourceBatch",
    "SourceCounters",
    "StaticSchemaSource",
    "TailerSettings",
    "cdc_tables",
]
