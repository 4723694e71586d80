"""``system_schema`` rows -> ``TableSchema`` per table id.

Rows are plain JSON-friendly dicts (ids as strings, drop times as
microseconds), so the same code builds schemas from a live node and from
the snapshots recorded next to test fixtures.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline_runtime.cql.schema import Column, ColumnKind, DroppedColumn, TableSchema
from pipeline_runtime.cql.types import UserType, parse_type
from pipeline_runtime.source.errors import SchemaError

Row = Mapping[str, Any]


@dataclass
class SchemaRows:
    """The rows of the ``system_schema`` tables the decoder needs."""

    tables: list[Row] = field(default_factory=list)
    views: list[Row] = field(default_factory=list)
    columns: list[Row] = field(default_factory=list)
    dropped_columns: list[Row] = field(default_factory=list)
    types: list[Row] = field(default_factory=list)

    def to_json(self) -> dict[str, list[dict[str, Any]]]:
        return {
            "tables": [dict(r) for r in self.tables],
            "views": [dict(r) for r in self.views],
            "columns": [dict(r) for r in self.columns],
            "dropped_columns": [dict(r) for r in self.dropped_columns],
            "types": [dict(r) for r in self.types],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Iterable[Row]]) -> SchemaRows:
        return cls(
            tables=list(data.get("tables", [])),
            views=list(data.get("views", [])),
            columns=list(data.get("columns", [])),
            dropped_columns=list(data.get("dropped_columns", [])),
            types=list(data.get("types", [])),
        )


def build_schemas(rows: SchemaRows) -> dict[uuid.UUID, TableSchema]:
    """One TableSchema per table and view id.

    A column whose type does not parse fails the whole build with a
    SchemaError naming it: guessing a width would misread every later byte.
    """
    user_types = {
        (r["keyspace_name"], r["type_name"]): UserType(
            r["keyspace_name"], r["type_name"], tuple(r["field_names"]), tuple(r["field_types"])
        )
        for r in rows.types
    }
    columns: dict[tuple[str, str], list[Column]] = {}
    for r in rows.columns:
        keyspace, table = r["keyspace_name"], r["table_name"]
        cql_type = _parse(r["type"], keyspace, user_types, f"{keyspace}.{table}.{r['column_name']}")
        column = Column(
            name=r["column_name"],
            type=cql_type,
            kind=ColumnKind(r["kind"]),
            position=int(r["position"]),
            reversed=r.get("clustering_order") == "desc",
        )
        columns.setdefault((keyspace, table), []).append(column)
    dropped: dict[tuple[str, str], dict[str, DroppedColumn]] = {}
    for r in rows.dropped_columns:
        keyspace, table = r["keyspace_name"], r["table_name"]
        try:
            cql_type = _parse(r["type"], keyspace, user_types, f"{keyspace}.{table}.{r['column_name']}")
        except SchemaError:
            continue  # a dropped column whose type is gone: its cells cannot be read, and are not reported
        kind = ColumnKind(r["kind"]) if r.get("kind") in {k.value for k in ColumnKind} else ColumnKind.REGULAR
        dropped.setdefault((keyspace, table), {})[r["column_name"]] = DroppedColumn(
            r["column_name"], cql_type, int(r.get("dropped_time") or 0), kind
        )
    schemas: dict[uuid.UUID, TableSchema] = {}
    for r in rows.tables:
        key = (r["keyspace_name"], r["table_name"])
        flags = set(r.get("flags") or ())
        table_id = uuid.UUID(str(r["id"]))
        schemas[table_id] = TableSchema(
            keyspace=key[0],
            name=key[1],
            id=table_id,
            columns=tuple(columns.get(key, ())),
            dropped=dropped.get(key, {}),
            cdc=bool(r.get("cdc")),
            is_counter="counter" in flags,
        )
    for r in rows.views:
        key = (r["keyspace_name"], r["view_name"])
        view_id = uuid.UUID(str(r["id"]))
        schemas[view_id] = TableSchema(
            keyspace=key[0],
            name=key[1],
            id=view_id,
            columns=tuple(columns.get(key, ())),
            dropped=dropped.get(key, {}),
            cdc=bool(r.get("cdc")),
            is_view=True,
        )
    return schemas


def _parse(text: str, keyspace: str, user_types: Mapping[tuple[str, str], UserType], where: str) -> Any:
    try:
        return parse_type(text, keyspace, user_types)
    except SchemaError as exc:
        raise SchemaError(f"column {where}: {exc}") from exc
