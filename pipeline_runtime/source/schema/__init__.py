"""Table metadata for the decoder: ``system_schema`` rows -> schemas -> decoding plans."""

from pipeline_runtime.source.schema.registry import SchemaRegistry, TableSelector, cdc_tables
from pipeline_runtime.source.schema.rows import SchemaRows, build_schemas

__all__ = ["SchemaRegistry", "SchemaRows", "TableSelector", "build_schemas", "cdc_tables"]
