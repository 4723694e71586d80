"""SQL text for one Cassandra table in PostgreSQL.

Storage per table ``t`` in the target schema (see docs/sinks.md):

- ``t__rows``: one row per Cassandra row. Each single-cell column ``c`` is
  stored as ``c`` (value, null = tombstone), ``c__ts`` (writetime µs) and
  ``c__exp`` (expiry, epoch seconds); each multi-cell column as ``c`` (jsonb
  object of elements ``{key: [value, ts, exp]}``) and ``c__ts`` (newest
  whole-column deletion). ``_live_ts``/``_live_exp`` hold the INSERT's row
  liveness, ``_del_ts`` the newest row, range or partition deletion covering
  the row.
- ``t__static``: the same, keyed by partition, for static columns.
- ``t__tombstones``: partition and range deletions, kept so that writes
  arriving after a deletion stay deleted.
- ``t``: a view that shows what ``SELECT *`` in Cassandra shows now, hiding
  overwritten, deleted and expired cells.
"""

# Identifiers are quoted by ident() and every value is a bind parameter: S608 does not apply.
# ruff: noqa: S608

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

from pipeline_runtime.cql.canonical import TEXT_KINDS
from pipeline_runtime.cql.schema import Column
from pipeline_runtime.cql.types import CqlType, Kind
from pipeline_runtime.sinks.encoding import TableObjects
from pipeline_runtime.sinks.postgres.typemap import pg_type

NOW = "extract(epoch from now())::bigint"
#: Row tables leave half of each page free, so that most merges update rows in place (HOT updates:
#: no new index entry, no index clean-up later). Measured with 10,000-row batches of updates:
#: 90 ms per merge at 50, 110 ms at 70, 165 ms at the default 100 (docs/sinks.md).
FILLFACTOR = 50
MIN_TS = "-9223372036854775808"


def ident(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def storage_columns(column: Column) -> list[tuple[str, str]]:
    """(name, type) of the storage columns behind one Cassandra column."""
    if column.type.multi_cell:
        return [(column.name, "jsonb"), (f"{column.name}__ts", "bigint")]
    return [(column.name, pg_type(column.type)), (f"{column.name}__ts", "bigint"), (f"{column.name}__exp", "bigint")]


def _greater(column: Column, new: str, old: str) -> str:
    """The last tie-break at equal writetimes: the greater value wins (``changes.TieOrder``).

    Values compare as their type orders them; text byte-wise ("C" collation, as Python
    compares str); jsonb as its text (canonical JSON in, PostgreSQL's spacing out: the one
    type whose order can differ from the runtime's, only between conflicting writes with the
    same writetime).
    """
    kind = pg_type(column.type)
    if kind == "text":
        return f'{new} COLLATE "C" > {old} COLLATE "C"'
    if kind == "jsonb":
        return f"{new}::text > {old}::text"
    return f"{new} > {old}"


def render_kind(column_type: CqlType) -> str:
    """How ``headrace_render`` turns a multi-cell column's elements into its value."""
    if column_type.kind is Kind.MAP:
        return "map_object" if column_type.args[0].kind in TEXT_KINDS else "map_pairs"
    return column_type.kind.value


ROW_META = [("_live_ts", "bigint"), ("_live_exp", "bigint"), ("_del_ts", "bigint")]


@dataclass(frozen=True)
class TableSql(TableObjects):
    """Statements for one table; names are quoted and schema-qualified."""

    quote = staticmethod(ident)

    @property
    def schema(self) -> str:
        return self.namespace

    @property
    def rows(self) -> str:
        return self.name("__rows")

    def key_columns(self, columns: Sequence[Column]) -> list[str]:
        out = []
        for column in columns:
            collate = ' COLLATE "C"' if pg_type(column.type) == "text" else ""
            out.append(f"{ident(column.name)} {pg_type(column.type)}{collate} NOT NULL")
        return out

    @cached_property
    def row_columns(self) -> list[tuple[str, str]]:
        """Every storage column of ``t__rows`` except the key, in COPY order."""
        cols = [pair for c in self.layout.regulars for pair in storage_columns(c)]
        return cols + ROW_META

    @cached_property
    def static_columns(self) -> list[tuple[str, str]]:
        cols = [pair for c in self.layout.statics for pair in storage_columns(c)]
        return [*cols, ("_del_ts", "bigint")]

    def create_tables(self) -> list[str]:
        schema = self.layout.schema
        keys = _columns(self.layout.key_names)
        part = _columns(self.layout.partition_names)
        body = self.key_columns(schema.primary_key) + [
            f"{ident(n)} {t}" + (f" NOT NULL DEFAULT {MIN_TS}" if n == "_del_ts" else "") for n, t in self.row_columns
        ]
        statements = [
            f"CREATE TABLE IF NOT EXISTS {self.rows} ({', '.join(body)}, PRIMARY KEY ({keys})) "
            f"WITH (fillfactor = {FILLFACTOR})",
        ]
        if self.has_statics:
            static_body = self.key_columns(schema.partition_key) + [
                f"{ident(n)} {t}" + (f" NOT NULL DEFAULT {MIN_TS}" if n == "_del_ts" else "")
                for n, t in self.static_columns
            ]
            statements.append(
                f"CREATE TABLE IF NOT EXISTS {self.statics} ({', '.join(static_body)}, PRIMARY KEY ({part})) "
                f"WITH (fillfactor = {FILLFACTOR})"
            )
        bounds = [
            f"{ident(prefix + c.name)} {pg_type(c.type)}" for prefix in ("_s__", "_e__") for c in self.layout.clustering
        ]
        tomb_body = [
            "_id text PRIMARY KEY",
            *self.key_columns(schema.partition_key),
            *bounds,
            "_s_len smallint NOT NULL",
            "_s_incl boolean NOT NULL",
            "_e_len smallint NOT NULL",
            "_e_incl boolean NOT NULL",
            "_ts bigint NOT NULL",
        ]
        statements.append(f"CREATE TABLE IF NOT EXISTS {self.tombstones} ({', '.join(tomb_body)})")
        statements.append(
            f"CREATE INDEX IF NOT EXISTS {ident(self.table + '__tombstones_partition')} ON {self.tombstones} ({part})"
        )
        return statements

    # -- merge -----------------------------------------------------------

    def merge_rows(self, stage: str) -> str:
        return self._merge(self.rows, stage, self.layout.key_names, self.layout.regulars, with_liveness=True)

    def merge_statics(self, stage: str) -> str:
        return self._merge(self.statics, stage, self.layout.partition_names, self.layout.statics, with_liveness=False)

    def _merge(
        self, target: str, stage: str, keys: Sequence[str], columns: Sequence[Column], *, with_liveness: bool
    ) -> str:
        """``INSERT ... ON CONFLICT DO UPDATE`` that keeps, per cell, Cassandra's winner.

        Each guard compares writetimes first: that decides almost every cell
        with one integer comparison, and the tie-break tuple (tombstone, has
        expiry, expiry, value text) is evaluated only at equal writetimes.
        ``CASE`` treats a NULL guard as false, which is what a missing cell
        (NULL writetime in the stage) must give. The ``WHERE`` skips rows the
        batch does not change (re-deliveries, replica duplicates): no new row
        version is written for them.
        """
        all_columns = list(keys) + [n for n, _ in (self.row_columns if with_liveness else self.static_columns)]
        names = _columns(all_columns)
        sets = []
        changes = []
        for column in columns:
            c = ident(column.name)
            ts = ident(column.name + "__ts")
            newer = _newer(f"EXCLUDED.{ts}", f"t.{ts}")
            if column.type.multi_cell:
                sets.append(f"{c} = {ident(self.schema)}.headrace_merge_elements(t.{c}, EXCLUDED.{c})")
                sets.append(f"{ts} = greatest(t.{ts}, EXCLUDED.{ts})")
                changes += [f"EXCLUDED.{c} IS NOT NULL", newer]
                continue
            exp = ident(column.name + "__exp")
            new = f"(EXCLUDED.{c} IS NULL, EXCLUDED.{exp} IS NOT NULL, coalesce(EXCLUDED.{exp}, 0))"
            old = f"(t.{c} IS NULL, t.{exp} IS NOT NULL, coalesce(t.{exp}, 0))"
            guard = (
                f"{newer} OR (EXCLUDED.{ts} = t.{ts} AND ({new} > {old} "
                f"OR ({new} = {old} AND {_greater(column, f'EXCLUDED.{c}', f't.{c}')})))"
            )
            changes.append(guard)
            for target_column in (c, ts, exp):
                sets.append(
                    f"{target_column} = CASE WHEN {guard} THEN EXCLUDED.{target_column} ELSE t.{target_column} END"
                )
        if with_liveness:
            new = "(EXCLUDED._live_exp IS NOT NULL, coalesce(EXCLUDED._live_exp, 0))"
            old = "(t._live_exp IS NOT NULL, coalesce(t._live_exp, 0))"
            guard = f"{_newer('EXCLUDED._live_ts', 't._live_ts')} OR (EXCLUDED._live_ts = t._live_ts AND {new} > {old})"
            changes.append(guard)
            for target_column in ("_live_ts", "_live_exp"):
                sets.append(
                    f"{target_column} = CASE WHEN {guard} THEN EXCLUDED.{target_column} ELSE t.{target_column} END"
                )
        sets.append("_del_ts = greatest(t._del_ts, EXCLUDED._del_ts)")
        changes.append("EXCLUDED._del_ts > t._del_ts")
        conflict = _columns(keys)
        changed = " OR ".join(f"({c})" for c in changes)
        return (
            f"INSERT INTO {target} AS t ({names}) SELECT {names} FROM {stage} "
            f"ON CONFLICT ({conflict}) DO UPDATE SET {', '.join(sets)} WHERE {changed}"
        )

    # -- tombstones ------------------------------------------------------

    @cached_property
    def tombstone_columns(self) -> list[str]:
        bounds = [prefix + c.name for prefix in ("_s__", "_e__") for c in self.layout.clustering]
        return ["_id", *self.layout.partition_names, *bounds, "_s_len", "_s_incl", "_e_len", "_e_incl", "_ts"]

    def insert_tombstone(self) -> str:
        cols = self.tombstone_columns
        params = ", ".join(f"${i}" for i in range(1, len(cols) + 1))
        return (
            f"INSERT INTO {self.tombstones} ({', '.join(ident(c) for c in cols)}) VALUES ({params}) "
            f"ON CONFLICT (_id) DO UPDATE SET _ts = greatest({self.tombstones}._ts, EXCLUDED._ts)"
        )

    def tombstones_for_stage(self, stage: str) -> str:
        part = self.layout.partition_names
        match = " AND ".join(f"s.{ident(n)} = tb.{ident(n)}" for n in part)
        cols = ", ".join(f"tb.{ident(c)}" for c in self.tombstone_columns)
        return f"SELECT {cols} FROM {self.tombstones} tb WHERE EXISTS (SELECT 1 FROM {stage} s WHERE {match})"

    def apply_tombstone(
        self, start_len: int, start_incl: bool, end_len: int, end_incl: bool, within: str | None = None
    ) -> tuple[str, str]:
        """UPDATEs raising ``_del_ts`` of covered rows (and of statics for a partition deletion).

        Parameters: $1 = ts, then partition values, then start and end bound values.
        ``within``: a staging table; only rows whose key it holds are updated.
        """
        part = self.layout.partition_names
        where = [f"{ident(n)} = ${i}" for i, n in enumerate(part, start=2)]
        next_param = 2 + len(part)
        columns = self.layout.clustering
        if start_len > 0:
            where.append(_bound_predicate(columns[:start_len], next_param, start_incl, after=True))
            next_param += start_len
        if end_len > 0:
            where.append(_bound_predicate(columns[:end_len], next_param, end_incl, after=False))
        condition = " AND ".join([*where, "_del_ts < $1"])
        rows_condition, statics_condition = condition, condition
        if within is not None:
            keys = _columns(self.layout.key_names)
            rows_condition += f" AND ({keys}) IN (SELECT {keys} FROM {within})"
            statics_condition += f" AND ({_columns(part)}) IN (SELECT {_columns(part)} FROM {within})"
        rows = f"UPDATE {self.rows} SET _del_ts = $1 WHERE {rows_condition}"
        statics = ""
        if self.has_statics and start_len == 0 and end_len == 0:
            statics = f"UPDATE {self.statics} SET _del_ts = $1 WHERE {statics_condition}"
        return rows, statics

    # -- reading ---------------------------------------------------------

    def create_view(self) -> str:
        layout = self.layout
        keys = ", ".join(f"r.{ident(n)}" for n in layout.key_names)
        statics = [self._visible("st", c) for c in layout.statics]
        regulars = [self._visible("r", c) for c in layout.regulars]
        alive_parts = [f"(r._live_ts > r._del_ts AND (r._live_exp IS NULL OR r._live_exp > {NOW}))"]
        alive_parts += [f"{self._visible_expr('r', c)} IS NOT NULL" for c in layout.regulars]
        alive = " OR ".join(alive_parts)
        select_rows = ", ".join([keys, *statics, *regulars])
        if not self.has_statics:
            return f"CREATE VIEW {self.view} AS SELECT {select_rows} FROM {self.rows} r WHERE {alive}"
        part = layout.partition_names
        join = " AND ".join(f"st.{ident(n)} = r.{ident(n)}" for n in part)
        static_keys = [f"st.{ident(n)}" for n in part] + [
            f"NULL::{pg_type(c.type)} AS {ident(c.name)}" for c in layout.clustering
        ]
        static_nulls = [f"NULL::{self._view_type(c)} AS {ident(c.name)}" for c in layout.regulars]
        static_alive = " OR ".join(f"{self._visible_expr('st', c)} IS NOT NULL" for c in layout.statics)
        exists = " AND ".join(f"r.{ident(n)} = st.{ident(n)}" for n in part)
        return (
            f"CREATE VIEW {self.view} AS "
            f"SELECT {select_rows} FROM {self.rows} r LEFT JOIN {self.statics} st ON {join} WHERE {alive} "
            f"UNION ALL SELECT {', '.join(static_keys + statics + static_nulls)} FROM {self.statics} st "
            f"WHERE ({static_alive}) AND NOT EXISTS (SELECT 1 FROM {self.rows} r WHERE {exists} AND ({alive}))"
        )

    def _view_type(self, column: Column) -> str:
        return "jsonb" if column.type.multi_cell else pg_type(column.type)

    def _visible(self, alias: str, column: Column) -> str:
        return f"{self._visible_expr(alias, column)} AS {ident(column.name)}"

    def _visible_expr(self, alias: str, column: Column) -> str:
        c = f"{alias}.{ident(column.name)}"
        ts = f"{alias}.{ident(column.name + '__ts')}"
        if column.type.multi_cell:
            fields = "ARRAY[" + ", ".join(_literal(f) for f in column.type.field_names) + "]::text[]"
            return (
                f"{ident(self.schema)}.headrace_render({c}, greatest({ts}, {alias}._del_ts), "
                f"'{render_kind(column.type)}', {fields}, {NOW})"
            )
        exp = f"{alias}.{ident(column.name + '__exp')}"
        return f"CASE WHEN {ts} > {alias}._del_ts AND ({exp} IS NULL OR {exp} > {NOW}) THEN {c} END"


def _columns(names: Sequence[str]) -> str:
    """Quoted identifiers, comma-separated."""
    return ", ".join(ident(n) for n in names)


def _newer(new_ts: str, old_ts: str) -> str:
    """The new writetime is strictly newer, or the first one (NULL = no cell on that side)."""
    return f"{new_ts} > {old_ts} OR ({old_ts} IS NULL AND {new_ts} IS NOT NULL)"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _bound_predicate(columns: Sequence[Column], first_param: int, inclusive: bool, *, after: bool) -> str:
    """Rows at/after a start bound or at/before an end bound, in clustering order.

    Lexicographic over the bound's prefix; a DESC (reversed) column flips the
    comparison, because bounds are given in the table's clustering order.
    """

    def build(index: int) -> str:
        column = columns[index]
        name = ident(column.name)
        param = f"${first_param + index}"
        forward = after != column.reversed
        strict = ">" if forward else "<"
        if index == len(columns) - 1:
            op = strict + ("=" if inclusive else "")
            return f"{name} {op} {param}"
        return f"({name} {strict} {param} OR ({name} = {param} AND {build(index + 1)}))"

    return "(" + build(0) + ")"


FUNCTIONS = [
    # Per element keep the greatest (ts, tombstone, has expiry, expiry, value text): Cassandra's reconcile.
    """CREATE OR REPLACE FUNCTION {schema}.headrace_merge_elements(a jsonb, b jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
SELECT CASE WHEN a IS NULL THEN b WHEN b IS NULL THEN a ELSE (
  SELECT jsonb_object_agg(key, value) FROM (
    SELECT DISTINCT ON (key) key, value FROM (
      SELECT key, value FROM jsonb_each(a) UNION ALL SELECT key, value FROM jsonb_each(b)) e
    ORDER BY key, (value->>1)::bigint DESC, jsonb_typeof(value->0) = 'null' DESC,
             jsonb_typeof(value->2) <> 'null' DESC, coalesce((value->>2)::bigint, 0) DESC,
             (value->0)::text DESC) w) END
$$""",
    # The value a reader sees: live elements newer than the column/row deletion, not expired.
    """CREATE OR REPLACE FUNCTION {schema}.headrace_render(
    state jsonb, deleted_at bigint, kind text, fields text[], now_s bigint) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE AS $$
WITH live AS (
  SELECT key, (value->>0)::jsonb AS v FROM jsonb_each(coalesce(state, '{{}}'::jsonb))
  WHERE (value->>1)::bigint > deleted_at AND jsonb_typeof(value->0) <> 'null'
    AND (jsonb_typeof(value->2) = 'null' OR (value->>2)::bigint > now_s))
SELECT CASE
  WHEN NOT EXISTS (SELECT 1 FROM live) THEN NULL
  WHEN kind = 'list' THEN (SELECT jsonb_agg(v ORDER BY key COLLATE "C") FROM live)
  WHEN kind = 'set' THEN (SELECT jsonb_agg(key::jsonb ORDER BY key COLLATE "C") FROM live)
  WHEN kind = 'map_object' THEN (SELECT jsonb_object_agg(key::jsonb #>> '{{}}', v) FROM live)
  WHEN kind = 'map_pairs' THEN (SELECT jsonb_agg(jsonb_build_array(key::jsonb, v) ORDER BY key COLLATE "C") FROM live)
  ELSE (SELECT jsonb_object_agg(f, l.v) FROM unnest(fields) f LEFT JOIN live l ON l.key = f)
END
$$""",
]
