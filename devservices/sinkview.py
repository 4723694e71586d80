"""Compare a sink's tables with Cassandra's, row by row, as ARCHITECTURE.md §4 states the oracle.

Each sink table is read as its users read it (PostgreSQL: the table;
ClickHouse: the view over FINAL that hides deleted and expired cells), and
Cassandra's ``SELECT *`` is passed through the pipeline's own ``Transformer``
(column selection, masking, renames: the very plan and maskers the runtime
applies to events). Both sides are then put in one canonical form (the JSON
form every sink stores collections in, ``pipeline_runtime.cql.canonical``),
keyed by primary key, and compared; ``differences`` describes the first few
differing rows readably.

``compare_pipeline`` does it for every table a pipeline selects, in every sink
it writes. Used by ``make demo``, the end-to-end tests on a real node (e2e/)
and by the sink benchmark's check that the rows landed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pipeline_runtime.app import build_transformer, table_selected
from pipeline_runtime.config.model import PipelineSpec, SinkSpec, SinkType
from pipeline_runtime.cql.canonical import dumps, loads, to_json
from pipeline_runtime.cql.schema import TableSchema
from pipeline_runtime.cql.types import CqlType, Kind
from pipeline_runtime.events import CollectionChange, ElementCell
from pipeline_runtime.secrets import SecretStore
from pipeline_runtime.sinks.base import TableNaming
from pipeline_runtime.source.schema.driver import DriverSchemaSource
from pipeline_runtime.source.schema.rows import build_schemas
from pipeline_runtime.transforms import Masker, Transformer

#: Types every sink stores as canonical JSON text (docs/sinks.md).
JSON_KINDS = frozenset({Kind.LIST, Kind.SET, Kind.MAP, Kind.TUPLE, Kind.UDT, Kind.DURATION, Kind.CUSTOM})

Row = dict[str, Any]
#: Canonical rows keyed by their canonical primary-key text.
Keyed = dict[str, Row]


def stored_as_json(cql_type: CqlType) -> bool:
    """Whether sinks store a column of ``cql_type`` as canonical JSON text."""
    if cql_type.kind is Kind.VECTOR:
        return cql_type.args[0].kind not in (Kind.FLOAT, Kind.DOUBLE, Kind.INT, Kind.BIGINT)
    return cql_type.kind in JSON_KINDS


def canonical(value: Any, cql_type: CqlType) -> Any:
    """A driver value in the canonical, comparable form."""
    return loads(dumps(to_json(value, cql_type)))


def from_sink(value: Any, cql_type: CqlType) -> Any:
    """A value read from a sink view in the same canonical form."""
    if value is None:
        return None
    if stored_as_json(cql_type) and isinstance(value, str):
        return loads(value)
    if cql_type.kind is Kind.VECTOR and value == []:
        return None
    return canonical(value, cql_type)


def keyed(schema: TableSchema, rows: Iterable[Mapping[str, Any]], *, sink: bool) -> Keyed:
    """Rows in canonical form keyed by primary key; ``sink``: rows read from a sink, else driver values."""
    convert = from_sink if sink else canonical
    out: Keyed = {}
    for row in rows:
        values = {c.name: convert(row.get(c.name), c.type) for c in schema.columns}
        out[dumps([values[c.name] for c in schema.primary_key])] = values
    return out


def _masked_value(masker: Masker, value: Any, cql_type: CqlType) -> Any:
    """A whole column value masked as the runtime masks its cells (collections element by element)."""
    if value is None or not cql_type.multi_cell:
        return masker.value(value)
    kind = cql_type.kind
    if kind is Kind.SET:
        elements = [ElementCell(v, None, 0) for v in value]
    elif kind is Kind.MAP:
        elements = [ElementCell(k, v, 0) for k, v in value.items()]
    elif kind is Kind.LIST:
        elements = [ElementCell(i, v, 0) for i, v in enumerate(value)]
    else:  # a non-frozen UDT: its fields are its elements
        elements = [ElementCell(name, getattr(value, name, None), 0) for name in cql_type.field_names]
    masked = masker.change(CollectionChange(None, tuple(elements)))
    assert isinstance(masked, CollectionChange)
    cells = [e for e in masked.elements if not e.deleted]
    if kind is Kind.SET:
        return {e.path for e in cells}
    if kind is Kind.MAP:
        return {e.path: e.value for e in cells}
    if kind is Kind.LIST:
        return [e.value for e in cells]
    return {e.path: e.value for e in cells}


def transformed(transformer: Transformer, schema: TableSchema, rows: Iterable[Mapping[str, Any]]) -> list[Row]:
    """Cassandra rows (driver values) after the pipeline's column selection, masking and renames."""
    plan = transformer.plan(schema)
    out = []
    for row in rows:
        new: Row = {}
        for column in schema.columns:
            if column.name not in plan.keep:
                continue
            value = row.get(column.name)
            masker = plan.maskers.get(column.name)
            new[plan.name(column.name)] = _masked_value(masker, value, column.type) if masker else value
        out.append(new)
    return out


@dataclass(frozen=True)
class Comparison:
    """The outcome of comparing one sink table with what Cassandra holds."""

    table: str
    sink: str
    expected: int
    actual: int
    missing: list[str]
    unexpected: list[str]
    changed: list[str]

    @property
    def equal(self) -> bool:
        return not (self.missing or self.unexpected or self.changed)


def compare(table: str, sink: str, expected: Keyed, actual: Keyed) -> Comparison:
    missing = sorted(k for k in expected if k not in actual)
    unexpected = sorted(k for k in actual if k not in expected)
    changed = sorted(k for k in expected if k in actual and expected[k] != actual[k])
    return Comparison(table, sink, len(expected), len(actual), missing, unexpected, changed)


def differences(
    result: Comparison, expected: Keyed, actual: Keyed, limit: int = 5, source: str = "Cassandra"
) -> list[str]:
    """Readable lines for the first ``limit`` differing rows of each kind (``source``: who holds ``expected``)."""
    if result.equal:
        return []
    lines = [
        f"{result.sink} {result.table}: {result.actual} rows, {source} {result.expected}; "
        f"{len(result.missing)} missing, {len(result.unexpected)} unexpected, {len(result.changed)} differ"
    ]
    for key in result.missing[:limit]:
        lines.append(f"  missing    key {key}: {source} has {dumps(expected[key])}")
    for key in result.unexpected[:limit]:
        lines.append(f"  unexpected key {key}: sink has {dumps(actual[key])}")
    for key in result.changed[:limit]:
        want, got = expected[key], actual[key]
        cells = ", ".join(
            f"{name}: sink {dumps(got[name])} != {source} {dumps(want[name])}"
            for name in want
            if want[name] != got.get(name)
        )
        lines.append(f"  differs    key {key}: {cells}")
    return lines


async def postgres_rows(dsn: str, namespace: str, table: str) -> list[Row]:
    """Every row of a PostgreSQL (or TimescaleDB) sink table; none when it does not exist yet."""
    import asyncpg  # noqa: PLC0415

    connection = await asyncpg.connect(dsn)
    try:
        query = f"SELECT * FROM {_pg_quote(namespace)}.{_pg_quote(table)}"  # noqa: S608 - quoted identifiers
        return [dict(r) for r in await connection.fetch(query)]
    except asyncpg.UndefinedTableError:
        return []
    finally:
        await connection.close()


def clickhouse_rows(client: Any, namespace: str, table: str, schema: TableSchema) -> list[Row]:
    """Every row of a ClickHouse sink's view (FINAL, deleted and expired cells hidden); none before it exists."""
    blobs = {c.name: "bytes" for c in schema.columns if c.type.kind is Kind.BLOB}
    try:
        query = f"SELECT * FROM {_ch_quote(namespace)}.{_ch_quote(table)}"  # noqa: S608 - quoted identifiers
        result = client.query(query, column_formats=blobs)
    except Exception as exc:
        if "UNKNOWN_TABLE" in str(exc) or "UNKNOWN_DATABASE" in str(exc):
            return []
        raise
    return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]


def _pg_quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _ch_quote(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


async def sink_rows(spec: SinkSpec, dsn: str, ch: Any, schema: TableSchema) -> Keyed:
    """One sink table as its users read it, canonical and keyed by primary key (``schema``: the sink side)."""
    naming = TableNaming(spec.target, dict(spec.table_mapping))
    namespace, table = naming.namespace(schema.keyspace), naming.table(schema.keyspace, schema.name)
    if spec.type is SinkType.CLICKHOUSE:
        rows = clickhouse_rows(ch, namespace, table, schema)
    else:
        rows = await postgres_rows(dsn, namespace, table)
    return keyed(schema, rows, sink=True)


async def compare_pipeline(
    spec: PipelineSpec, secrets: SecretStore, session: Any, ch: Any
) -> tuple[list[Comparison], list[str]]:
    """Every selected table in every sink against Cassandra's rows after the pipeline's transforms."""
    transformer = build_transformer(spec, secrets)
    schemas = [
        s for s in build_schemas(DriverSchemaSource(session).load()).values() if table_selected(spec.source.tables, s)
    ]
    results: list[Comparison] = []
    lines: list[str] = []
    for schema in sorted(schemas, key=lambda s: s.qualified_name):
        sink_schema = transformer.schema(schema)
        query = f'SELECT * FROM "{schema.keyspace}"."{schema.name}"'  # noqa: S608 - names from the schema
        rows = [r._asdict() for r in session.execute(query)]
        expected = keyed(sink_schema, transformed(transformer, schema, rows), sink=False)
        for sink in spec.sinks:
            actual = await sink_rows(sink, secrets.read(sink.connection_secret), ch, sink_schema)
            result = compare(schema.qualified_name, sink.name, expected, actual)
            results.append(result)
            lines.extend(differences(result, expected, actual))
    return results, lines
