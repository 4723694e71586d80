"""``writeMode: append``: every change event as one row of a history table (shared by all sinks).

A history row says what one change did, in Cassandra's terms, with where it came from:

- ``_node``, ``_segment``, ``_offset``: the source node and the end of the commitlog entry that held
  the change (a row a snapshot read: segment 0, offset 0, so reading it again records nothing new);
  ``_change``: a digest of what the change is (table, key, operation, bounds, writetime).
  Together they are the table's unique key: a batch delivered again adds no rows.
- ``_op`` (``upsert``, ``delete_row``, ``delete_partition``, ``delete_range``), ``_static`` (an upsert
  of the partition's static row), ``_writetime`` (the newest writetime in the change, µs),
  ``_ttl``/``_expires_at`` (the row's INSERT TTL, else the TTL of its cells, and when they expire),
  ``_deleted`` (columns whose cells the change deleted or whose collection it cleared),
  ``_range_start``/``_range_end`` (a range delete's clustering bounds, canonical JSON
  ``{"values": [...], "inclusive": bool}``).
- the primary-key columns (those the change names: a partition delete has no clustering values),
  then every other column: its new value for a simple column (NULL when the change did not write it),
  and for a non-frozen collection or UDT a canonical JSON object of the change
  (``{"cleared": bool, "added": [...], "removed": [...]}`` for a set, ``"put"`` and ``"removed"``
  keys for a map, ``"set"`` and ``"removed"`` fields for a UDT, ``"appended"`` values and
  ``"removed"`` element ids for a list).

Values are already transformed (renamed, masked) like every other sink input. A change that
carries no writetime (nothing written or deleted; Cassandra writes none, a column selection can
leave one) has no row: ``recorded`` filters them.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from pipeline_runtime.cql.canonical import JsonValue, dumps, map_json, to_json
from pipeline_runtime.cql.schema import Column, TableSchema
from pipeline_runtime.cql.types import CqlType, Kind
from pipeline_runtime.events import LIVE_TIMESTAMP, Bound, Cell, ChangeEvent, CollectionChange
from pipeline_runtime.sinks.base import TableNaming

#: The segment id of rows a snapshot read (``source.snapshot``): no commitlog segment has it.
SNAPSHOT_SEGMENT = 0
#: A history table's name: the mapped table name with this suffix.
HISTORY_SUFFIX = "_changes"

#: The columns every history table starts with, in order.
META_COLUMNS = (
    "_node",
    "_segment",
    "_offset",
    "_change",
    "_op",
    "_static",
    "_writetime",
    "_ttl",
    "_expires_at",
    "_deleted",
    "_range_start",
    "_range_end",
)
#: The unique key (the time column leads nothing: TimescaleDB needs it in the key, so it is there).
UNIQUE_KEY = ("_node", "_segment", "_offset", "_change", "_writetime")


@dataclass(frozen=True)
class HistoryLayout:
    """Which columns of a (transformed) table a history row has, and how each is written."""

    schema: TableSchema

    @cached_property
    def keys(self) -> tuple[Column, ...]:
        return self.schema.primary_key

    @cached_property
    def values(self) -> tuple[Column, ...]:
        """Every non-key column: statics, then regulars, in schema order."""
        return self.schema.statics + self.schema.regulars

    def is_change_column(self, column: Column) -> bool:
        """A multi-cell column: the row holds the JSON of its change, not a value."""
        return column.type.multi_cell

    @cached_property
    def data_columns(self) -> tuple[Column, ...]:
        return self.keys + self.values

    @cached_property
    def column_names(self) -> list[str]:
        return [*META_COLUMNS, *(c.name for c in self.data_columns)]


def history_table(naming: TableNaming, schema: TableSchema, sink: str) -> tuple[str, str]:
    """(schema or database, table name) of ``schema``'s history table: the mapped name plus ``_changes``."""
    namespace, name = naming.place(schema.keyspace, schema.name, sink)
    return namespace, name + HISTORY_SUFFIX


def recorded(events: Sequence[ChangeEvent]) -> list[ChangeEvent]:
    """The events that get a history row: those that carry a writetime."""
    return [e for e in events if e.max_timestamp != LIVE_TIMESTAMP]


def history_row(layout: HistoryLayout, event: ChangeEvent) -> list[Any]:
    """One row, in ``layout.column_names`` order: meta values, then key values, then values or change JSON.

    Key and simple values stay driver values (each sink encodes them as its upsert tables do);
    ``_writetime`` is µs since the epoch, ``_expires_at`` seconds since the epoch.
    """
    ttl, expires = _expiry(event)
    deleted = sorted(name for name, change in event.cells.items() if _deletes(change))
    row: list[Any] = [
        event.source.node,
        event.source.position.segment_id,
        # A snapshot's rows (segment 0) are numbered per read: the same row read again is the same change.
        event.source.position.offset if event.source.position.segment_id != SNAPSHOT_SEGMENT else 0,
        change_id(event),
        str(event.op),
        event.static,
        event.max_timestamp,
        ttl,
        expires,
        deleted,
        _bound(event.range_start, layout.schema),
        _bound(event.range_end, layout.schema),
    ]
    keys = event.partition_key | event.clustering_key
    row.extend(keys.get(c.name) for c in layout.keys)
    for column in layout.values:
        change = event.cells.get(column.name)
        if change is None:
            row.append(None)
        elif isinstance(change, CollectionChange):
            row.append(dumps(collection_json(change, column.type)))
        else:
            row.append(None if change.deleted else change.value)
    return row


def change_id(event: ChangeEvent) -> uuid.UUID:
    """What the change is, as a UUID: the same change read again gets the same id."""
    identity = [
        event.qualified_table,
        repr(sorted(event.partition_key.items())),
        repr(sorted(event.clustering_key.items())),
        str(event.op),
        event.static,
        repr(event.range_start),
        repr(event.range_end),
        event.max_timestamp,
        sorted(event.cells),
    ]
    return uuid.UUID(bytes=hashlib.blake2b(repr(identity).encode(), digest_size=16).digest())


def collection_json(change: CollectionChange, cql_type: CqlType) -> JsonValue:
    """The canonical JSON of a change to a non-frozen collection or UDT (see the module doc)."""
    live = [e for e in change.elements if not e.deleted]
    gone = [e for e in change.elements if e.deleted]
    out: dict[str, JsonValue] = {"cleared": change.deletion is not None}
    kind = cql_type.kind
    if kind is Kind.SET:
        (element,) = cql_type.args
        out["added"] = [to_json(e.path, element) for e in live]
        out["removed"] = [to_json(e.path, element) for e in gone]
    elif kind is Kind.MAP:
        key_type, value_type = cql_type.args
        out["put"] = map_json(((to_json(e.path, key_type), to_json(e.value, value_type)) for e in live), key_type)
        out["removed"] = [to_json(e.path, key_type) for e in gone]
    elif kind is Kind.LIST:
        (element,) = cql_type.args
        out["appended"] = [to_json(e.value, element) for e in live]
        out["removed"] = [str(e.path) for e in gone]
    else:  # a non-frozen UDT: elements are its fields
        types = dict(zip(cql_type.field_names, cql_type.args, strict=True))
        out["set"] = {str(e.path): to_json(e.value, types[str(e.path)]) for e in live if str(e.path) in types}
        out["removed"] = [str(e.path) for e in gone]
    return out


def _deletes(change: Cell | CollectionChange) -> bool:
    if isinstance(change, CollectionChange):
        return change.deletion is not None and not change.elements
    return change.deleted


def _expiry(event: ChangeEvent) -> tuple[int | None, int | None]:
    if event.liveness is not None and event.liveness.ttl is not None:
        return event.liveness.ttl, event.liveness.expires_at
    for change in event.cells.values():
        cells: Sequence[Any] = change.elements if isinstance(change, CollectionChange) else (change,)
        for cell in cells:
            if cell.ttl is not None and not cell.deleted:
                return cell.ttl, cell.expires_at
    return None, None


def _bound(bound: Bound | None, schema: TableSchema) -> str | None:
    if bound is None:
        return None
    values = [to_json(v, c.type) for v, c in zip(bound.values, schema.clustering, strict=False)]
    return dumps({"values": values, "inclusive": bound.inclusive})
