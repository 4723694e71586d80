"""Reading ``system_schema`` through cassandra-driver: the source's one boundary with the driver.

Driver exceptions become ``SchemaUnavailableError`` here and nowhere else.
"""

from __future__ import annotations

import datetime
import uuid
from typing import Any

from pipeline_runtime.source.errors import SourceError
from pipeline_runtime.source.schema.rows import SchemaRows

_QUERIES = {
    "tables": "SELECT keyspace_name, table_name, id, flags, cdc FROM system_schema.tables",
    "views": "SELECT keyspace_name, view_name, id, base_table_id FROM system_schema.views",
    "columns": (
        "SELECT keyspace_name, table_name, column_name, clustering_order, kind, position, type "
        "FROM system_schema.columns"
    ),
    "dropped_columns": (
        # dropped_time as a number: system tables hold times the driver's datetime cannot represent
        "SELECT keyspace_name, table_name, column_name, blobAsBigint(timestampAsBlob(dropped_time)) AS dropped_ms, "
        "kind, type FROM system_schema.dropped_columns"
    ),
    "types": "SELECT keyspace_name, type_name, field_names, field_types FROM system_schema.types",
}


class SchemaUnavailableError(SourceError):
    """``system_schema`` could not be read (node down, timeout); retry later."""

    retryable = True


def _plain(value: Any) -> Any:
    """Driver values -> JSON-friendly ones (ids as strings, times as microseconds)."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.UTC)
        return int(value.timestamp() * 1_000_000)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (str, bytes, dict)) or not hasattr(value, "__iter__"):
        return value
    return sorted(_plain(v) for v in value)  # sets, including the driver's SortedSet


class DriverSchemaSource:
    """Loads ``SchemaRows`` with a cassandra-driver ``Session``."""

    def __init__(self, session: Any) -> None:
        self.session = session

    def load(self) -> SchemaRows:
        rows = SchemaRows()
        for name, query in _QUERIES.items():
            try:
                result = self.session.execute(query)
            except Exception as exc:  # the driver's exception tree stops here
                raise SchemaUnavailableError(f"cannot read system_schema ({name}): {exc}") from exc
            for row in result:
                plain = {k: _plain(v) for k, v in row._asdict().items()}
                if "dropped_ms" in plain:
                    plain["dropped_time"] = int(plain.pop("dropped_ms") or 0) * 1000
                getattr(rows, name).append(plain)
        return rows
