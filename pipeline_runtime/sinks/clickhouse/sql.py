"""DDL and the reader's view for one Cassandra table in ClickHouse.

Storage per table ``t`` in the target database (see docs/sinks.md):

- ``t__state``: ReplacingMergeTree(_version, is_deleted) ORDER BY the
  Cassandra primary key. Each row is the *whole merged state* of a Cassandra
  row: every cell with its writetime (``c__ts``) and expiry (``c__exp``),
  multi-cell columns as element state (``c__state``), liveness and the
  newest covering deletion. ``_version`` grows with every change of the state
  (``RowDelta.version``), so FINAL keeps the most-merged state.
- ``t__static``: the same for static columns, keyed by partition.
- ``t__tombstones``: partition and range deletions (ReplacingMergeTree(ts)).
- ``t``: a view over FINAL that hides overwritten, deleted and expired cells.
"""

# Identifiers are quoted by ident(); values never enter SQL text here: S608 does not apply.
# ruff: noqa: S608

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from pipeline_runtime.cql.canonical import TEXT_KINDS
from pipeline_runtime.cql.schema import Column
from pipeline_runtime.cql.types import Kind
from pipeline_runtime.sinks.clickhouse.flat import read_columns
from pipeline_runtime.sinks.clickhouse.typemap import ch_type, is_array, nullable
from pipeline_runtime.sinks.encoding import TableObjects

NOW = "toInt64(toUnixTimestamp(now()))"
DEDUP_WINDOW = 10_000


def ident(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def storage_columns(column: Column) -> list[tuple[str, str]]:
    if column.type.multi_cell:
        return [(f"{column.name}__state", "String"), (f"{column.name}__ts", "Nullable(Int64)")]
    return [
        (column.name, nullable(column.type)),
        (f"{column.name}__ts", "Nullable(Int64)"),
        (f"{column.name}__exp", "Nullable(Int64)"),
    ]


ROW_META = [
    ("_live_ts", "Nullable(Int64)"),
    ("_live_exp", "Nullable(Int64)"),
    ("_del_ts", "Int64"),
    ("_version", "UInt256"),
    ("is_deleted", "UInt8"),
]
STATIC_META = [("_del_ts", "Int64"), ("_version", "UInt256"), ("is_deleted", "UInt8")]


@dataclass(frozen=True)
class TableSql(TableObjects):
    """Statements for one table; names are quoted and database-qualified."""

    quote = staticmethod(ident)

    @property
    def database(self) -> str:
        return self.namespace

    @property
    def state(self) -> str:
        return self.name("__state")

    @cached_property
    def state_columns(self) -> list[tuple[str, str]]:
        keys = [(c.name, ch_type(c.type)) for c in self.layout.schema.primary_key]
        return keys + [p for c in self.layout.regulars for p in storage_columns(c)] + ROW_META

    @cached_property
    def static_columns(self) -> list[tuple[str, str]]:
        keys = [(c.name, ch_type(c.type)) for c in self.layout.schema.partition_key]
        return keys + [p for c in self.layout.statics for p in storage_columns(c)] + STATIC_META

    @cached_property
    def tombstone_columns(self) -> list[tuple[str, str]]:
        keys = [(c.name, ch_type(c.type)) for c in self.layout.schema.partition_key]
        bounds = [(prefix + c.name, nullable(c.type)) for prefix in ("_s__", "_e__") for c in self.layout.clustering]
        meta = [("_s_len", "Int16"), ("_s_incl", "Bool"), ("_e_len", "Int16"), ("_e_incl", "Bool"), ("_ts", "Int64")]
        return [("_id", "String"), *keys, *bounds, *meta]

    def create_tables(self) -> list[str]:
        settings = f"SETTINGS non_replicated_deduplication_window = {DEDUP_WINDOW}"
        keys = ", ".join(ident(n) for n in self.layout.key_names)
        part = ", ".join(ident(n) for n in self.layout.partition_names)
        out = [
            f"CREATE DATABASE IF NOT EXISTS {ident(self.database)}",
            f"CREATE TABLE IF NOT EXISTS {self.state} ({_body(self.state_columns)}) "
            f"ENGINE = ReplacingMergeTree(_version, is_deleted) ORDER BY ({keys}) {settings}",
            f"CREATE TABLE IF NOT EXISTS {self.tombstones} ({_body(self.tombstone_columns)}) "
            f"ENGINE = ReplacingMergeTree(_ts) ORDER BY ({part}, _id) {settings}",
        ]
        if self.has_statics:
            out.append(
                f"CREATE TABLE IF NOT EXISTS {self.statics} ({_body(self.static_columns)}) "
                f"ENGINE = ReplacingMergeTree(_version, is_deleted) ORDER BY ({part}) {settings}"
            )
        return out

    def latest(self, target: str, key_columns: tuple[Column, ...]) -> str:
        """The newest state per key, deleted ones included (a tombstone must stay known)."""
        keys = ", ".join(ident(c.name) for c in key_columns)
        return f"SELECT * FROM {target} WHERE {key_filter(key_columns)} ORDER BY _version DESC LIMIT 1 BY {keys}"

    def recent(self, target: str, key_columns: tuple[Column, ...], depth: int) -> str:
        """Up to ``depth`` newest states per key, newest first, of the keys that hold more than one state:
        what a settling read joins (replicas' race). A key with one state has nothing to join."""
        keys = ", ".join(ident(c.name) for c in key_columns)
        return _recent(target, keys, key_filter(key_columns), depth)

    def conflicting(self, where: str, depth: int) -> str:
        """Keys (matching ``where``) whose newest state may lack a cell another of their ``depth`` newest
        states holds: a newer writetime in any column, liveness or deletion, or an equal one with another
        value or expiry. Flat tables only (single-cell regular columns); the settling read then joins just
        these keys. In steady state it returns nothing, and costs one query instead of a read-back."""
        keys = ", ".join(ident(n) for n in self.layout.key_names)
        top = "headrace_top__"  # the newest state's values, beside each state's (a prefix no column uses)
        names = [n for c in self.layout.regulars for n in (c.name, f"{c.name}__ts", f"{c.name}__exp")]
        names += ["_live_ts", "_live_exp", "_del_ts"]
        tops = ", ".join(f"first_value_respect_nulls({ident(n)}) OVER w AS {ident(top + n)}" for n in names)

        def newer_or_other(value: str | None, ts: str, exp: str) -> str:
            ts_here, ts_top = f"ifNull({ident(ts)}, -1)", f"ifNull({ident(top + ts)}, -1)"
            same = f"ifNull({ident(exp)}, -1) = ifNull({ident(top + exp)}, -1)"
            if value is not None:
                here, there = ident(value), ident(top + value)
                same += f" AND (isNull({here}) AND isNull({there}) OR ifNull({here} = {there}, 0))"
            return f"{ts_here} > {ts_top} OR {ts_here} = {ts_top} AND NOT ({same})"

        checks = [newer_or_other(c.name, f"{c.name}__ts", f"{c.name}__exp") for c in self.layout.regulars]
        checks += [newer_or_other(None, "_live_ts", "_live_exp"), f"_del_ts > {ident(top + '_del_ts')}"]
        recent = f"SELECT * FROM {self.state} WHERE {where} ORDER BY _version DESC LIMIT {depth} BY {keys}"
        window = f"PARTITION BY {keys} ORDER BY _version DESC ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING"
        return (
            f"SELECT DISTINCT {keys} FROM (SELECT *, {tops} FROM ({recent}) WINDOW w AS ({window}))"
            f" WHERE {' OR '.join(f'({c})' for c in checks)}"
        )

    def conflicting_keys(self, depth: int) -> str:
        """``conflicting`` for keys given as parameters (``key_filter``)."""
        return self.conflicting(key_filter(self.layout.schema.primary_key), depth)

    def conflicting_staged(self, depth: int) -> str:
        """``conflicting`` for the keys in the staging table."""
        keys = ", ".join(ident(n) for n in self.layout.key_names)
        return self.conflicting(f"({keys}) IN (SELECT {keys} FROM {self.stage})", depth)

    def recent_staged(self, depth: int) -> str:
        """``recent`` of the row table for the keys in the staging table (the compiled merge's batch)."""
        keys = ", ".join(ident(n) for n in self.layout.key_names)
        return _recent(self.state, keys, f"({keys}) IN (SELECT {keys} FROM {self.stage})", depth)

    def latest_flat(self) -> str:
        """``latest`` of the row table with the columns ``flat.FlatRows`` merges, in its order, and ``_version``."""
        return self._latest_merged(key_filter(self.layout.schema.primary_key))

    def _latest_merged(self, where: str) -> str:
        """The newest state of the row table's keys that match ``where``: the merged columns and ``_version``."""
        keys = ", ".join(ident(n) for n in self.layout.key_names)
        columns = ", ".join(ident(n) for n in [*read_columns(self.layout), "_version"])
        return f"SELECT {columns} FROM {self.state} WHERE {where} ORDER BY _version DESC LIMIT 1 BY {keys}"

    # -- the staged deltas (the compiled core's merge) -----------------------

    @cached_property
    def stage_columns(self) -> list[tuple[str, str]]:
        """The staged deltas: ``state_columns`` without ``_del_ts`` and ``is_deleted``; ``_version`` is the
        delta's own (``flat.FlatRows._version`` of it as a whole state: what a new key stores)."""
        return [*self.state_columns[: -len(ROW_META) + 2], ("_version", "UInt256")]

    @cached_property
    def stage(self) -> str:
        """The staging table: a temporary Memory table of the sink's session, emptied before each batch.

        Temporary, so each writer has its own and a statement that reaches another server
        of a cluster fails (unknown table) instead of merging nothing. Named by the state
        table and the stage columns, so a schema change gets a fresh one.
        """
        digest = hashlib.blake2s(f"{self.state}|{self.stage_columns}".encode(), digest_size=8).hexdigest()
        return ident(f"headrace_stage_{digest}")

    def create_stage(self) -> str:
        return f"CREATE TEMPORARY TABLE IF NOT EXISTS {self.stage} ({_body(self.stage_columns)}) ENGINE = Memory"

    def latest_staged(self) -> str:
        """``latest_flat`` of the keys in the staging table (``merge`` of the compiled core reads it)."""
        keys = ", ".join(ident(n) for n in self.layout.key_names)
        return self._latest_merged(f"({keys}) IN (SELECT {keys} FROM {self.stage})")

    def partition_rows(self) -> str:
        keys = ", ".join(ident(n) for n in self.layout.key_names)
        where = key_filter(self.layout.schema.partition_key)
        return f"SELECT * FROM {self.state} WHERE {where} ORDER BY _version DESC LIMIT 1 BY {keys}"

    def tombstones_of(self) -> str:
        return f"SELECT * FROM {self.tombstones} FINAL WHERE {key_filter(self.layout.schema.partition_key)}"

    def has_tombstones(self) -> str:
        return f"SELECT count() > 0 FROM {self.tombstones}"

    # -- view ------------------------------------------------------------

    def create_view(self) -> str:
        layout = self.layout
        clustering_cast = "toNullable" if self.has_statics else ""
        keys = [f"r.{ident(c.name)} AS {ident(c.name)}" for c in layout.schema.partition_key]
        keys += [f"{clustering_cast}(r.{ident(c.name)}) AS {ident(c.name)}" for c in layout.clustering]
        statics = [f"{self._visible('st', c)} AS {ident(c.name)}" for c in layout.statics]
        regulars = [f"{self._visible('r', c)} AS {ident(c.name)}" for c in layout.regulars]
        alive = self._row_alive("r")
        select_rows = ", ".join(keys + statics + regulars)
        if not self.has_statics:
            return (
                f"CREATE OR REPLACE VIEW {self.view} AS SELECT {select_rows} FROM {self.state} AS r FINAL WHERE {alive}"
            )
        part = ", ".join(ident(n) for n in layout.partition_names)
        st_keys = [f"st.{ident(c.name)} AS {ident(c.name)}" for c in layout.schema.partition_key]
        st_keys += [
            f"CAST(NULL, {_type_literal(f'Nullable({ch_type(c.type)})')}) AS {ident(c.name)}" for c in layout.clustering
        ]
        nulls = [f"{self._null(c)} AS {ident(c.name)}" for c in layout.regulars]
        static_alive = " OR ".join(f"{self._present(self._visible('st', c), c)}" for c in layout.statics)
        return (
            f"CREATE OR REPLACE VIEW {self.view} AS "
            f"SELECT {select_rows} FROM {self.state} AS r FINAL "
            f"LEFT JOIN (SELECT * FROM {self.statics} FINAL) AS st USING ({part}) WHERE {alive} "
            f"UNION ALL SELECT {', '.join(st_keys + statics + nulls)} FROM {self.statics} AS st FINAL "
            f"WHERE ({static_alive}) AND ({part}) NOT IN (SELECT {part} FROM {self.state} AS r FINAL WHERE {alive}) "
            "SETTINGS join_use_nulls = 1"
        )

    def _null(self, column: Column) -> str:
        if column.type.multi_cell or not is_array(column.type):
            kind = "String" if column.type.multi_cell else ch_type(column.type)
            return f"CAST(NULL, {_type_literal(f'Nullable({kind})')})"
        return f"CAST([], {_type_literal(ch_type(column.type))})"

    def _row_alive(self, alias: str) -> str:
        parts = [f"({alias}._live_ts > {alias}._del_ts AND ({alias}._live_exp IS NULL OR {alias}._live_exp > {NOW}))"]
        parts += [self._present(self._visible(alias, c), c) for c in self.layout.regulars]
        return "(" + " OR ".join(parts) + ")"

    def _present(self, expr: str, column: Column) -> str:
        if is_array(column.type) and not column.type.multi_cell:
            return f"notEmpty({expr})"
        return f"({expr}) IS NOT NULL"

    def _visible(self, alias: str, column: Column) -> str:
        ts = f"{alias}.{ident(column.name + '__ts')}"
        deleted = f"greatest(ifNull({ts}, -9223372036854775807), {alias}._del_ts)"
        if column.type.multi_cell:
            return _render(f"{alias}.{ident(column.name + '__state')}", deleted, column)
        c = f"{alias}.{ident(column.name)}"
        exp = f"{alias}.{ident(column.name + '__exp')}"
        live = f"{ts} > {alias}._del_ts AND ({exp} IS NULL OR {exp} > {NOW})"
        otherwise = f"CAST([], '{ch_type(column.type)}')" if is_array(column.type) else "NULL"
        return f"if({live}, {c}, {otherwise})"


def _body(columns: list[tuple[str, str]]) -> str:
    return ", ".join(f"{ident(n)} {t}" for n, t in columns)


def _render(state: str, deleted: str, column: Column) -> str:
    """ClickHouse SQL that renders live elements as the canonical JSON of the column."""
    live = (
        f"arraySort(kv -> kv.1, arrayFilter(kv -> JSONExtractInt(kv.2, 2) > {deleted} "
        f"AND JSONType(kv.2, 1) != 'Null' AND (JSONType(kv.2, 3) = 'Null' OR JSONExtractInt(kv.2, 3) > {NOW}), "
        f"JSONExtractKeysAndValuesRaw({state})))"
    )
    value = "JSONExtractString(kv.2, 1)"
    kind = column.type.kind
    if kind is Kind.LIST:
        body = f"concat('[', arrayStringConcat(arrayMap(kv -> {value}, {live}), ','), ']')"
    elif kind is Kind.SET:
        body = f"concat('[', arrayStringConcat(arrayMap(kv -> kv.1, {live}), ','), ']')"
    elif kind is Kind.MAP and column.type.args[0].kind in TEXT_KINDS:
        body = f"concat('{{', arrayStringConcat(arrayMap(kv -> concat(kv.1, ':', {value}), {live}), ','), '}}')"
    elif kind is Kind.MAP:
        pairs = f"arrayMap(kv -> concat('[', kv.1, ',', {value}, ']'), {live})"
        body = f"concat('[', arrayStringConcat({pairs}, ','), ']')"
    else:
        fields = []
        for name in column.type.field_names:
            found = f"arrayElement(arrayMap(kv -> {value}, arrayFilter(kv -> kv.1 = {_quote(name)}, {live})), 1)"
            fields.append(f"{_quote(json.dumps(name) + ':')}, if(empty({found}), 'null', {found})")
        body = "concat('{', " + ", ',', ".join(fields) + ", '}')"
    return f"if(empty({live}), NULL, {body})"


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def key_filter(columns: tuple[Column, ...]) -> str:
    """``keys IN`` the bound arrays ``k0..kn`` (one per key column, zipped into tuples).

    Server-side array parameters are several times faster to bind than a
    client-formatted list of tuples.
    """
    arrays = [f"{{k{i}:Array({ch_type(c.type)})}}" for i, c in enumerate(columns)]
    if len(columns) == 1:
        return f"{ident(columns[0].name)} IN {arrays[0]}"
    names = ", ".join(ident(c.name) for c in columns)
    picks = ", ".join(f"x.{i + 1}" for i in range(len(columns)))
    return f"({names}) IN (SELECT {picks} FROM (SELECT arrayJoin(arrayZip({', '.join(arrays)})) AS x))"


def key_parameters(keys: list[tuple[Any, ...]], width: int) -> dict[str, Any]:
    """The ``k0..kn`` arrays for ``key_filter`` from key tuples.

    An array of plain integers is handed over as its literal text: clickhouse-connect
    formats parameters element by element in Python (about 2 µs each, 20 ms for a
    10,000-row batch), and an integer's text needs no quoting or escaping.
    """
    columns = list(zip(*keys, strict=True)) if keys else [() for _ in range(width)]
    return {f"k{i}": _bound_array(values) for i, values in enumerate(columns)}


class ArrayLiteral:
    """A parameter value whose text is already the ClickHouse literal (clickhouse-connect binds it with ``str``)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return self.text


def _bound_array(values: Sequence[Any]) -> Any:
    if values and all(type(v) is int for v in values):
        return ArrayLiteral("[" + ",".join(map(str, values)) + "]")
    return list(values)


def _type_literal(clickhouse_type: str) -> str:
    """A type name as a string literal for CAST: ``DateTime64(6, 'UTC')`` holds quotes of its own."""
    return "'" + clickhouse_type.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _recent(target: str, keys: str, where: str, depth: int) -> str:
    several = f"SELECT {keys} FROM {target} WHERE {where} GROUP BY {keys} HAVING count() > 1"
    return (
        f"SELECT * FROM {target} WHERE {where} AND ({keys}) IN ({several}) "
        f"ORDER BY _version DESC LIMIT {depth} BY {keys}"
    )
