"""Create and evolve a table's storage in PostgreSQL.

New Cassandra columns are added (with their ``__ts``/``__exp`` companions)
and the view is rebuilt. A column that disappeared or changed type is never
applied: ``SchemaDriftError`` names the table, the column and the change, and
the runtime turns it into a Degraded condition for a human to resolve. All
DDL runs under one advisory lock, so runtimes of several nodes starting at
once do not race each other's CREATE statements.
"""

from __future__ import annotations

import asyncpg

from pipeline_runtime.errors import SchemaDriftError
from pipeline_runtime.sinks.postgres.sql import FUNCTIONS, TableSql, ident, storage_columns
from pipeline_runtime.sinks.postgres.typemap import pg_type

DDL_LOCK = 0x4845414452414345  # "HEADRACE": one key for all Headrace DDL in a database

_EXISTING = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod) AS type
FROM pg_attribute a
WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""


async def ensure_tables(conn: asyncpg.Connection, sql: TableSql) -> None:
    """Create the table's storage and view, or add new columns; raise on drift."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", DDL_LOCK)
    await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {ident(sql.schema)}")
    for function in FUNCTIONS:
        await conn.execute(function.format(schema=ident(sql.schema)))
    for statement in sql.create_tables():
        await conn.execute(statement)
    layout = sql.layout
    key_types = {c.name: pg_type(c.type) for c in layout.schema.primary_key}
    rows = {n: t for c in layout.regulars for n, t in storage_columns(c)}
    qualified = f"{sql.schema}.{sql.table}"
    expected = {**key_types, **rows, "_live_ts": "bigint", "_live_exp": "bigint", "_del_ts": None}
    await evolve(conn, qualified, sql.rows, expected)
    if sql.has_statics:
        part = {c.name: pg_type(c.type) for c in layout.schema.partition_key}
        statics = {n: t for c in layout.statics for n, t in storage_columns(c)}
        await evolve(conn, qualified, sql.statics, {**part, **statics, "_del_ts": None})
    await conn.execute(f"DROP VIEW IF EXISTS {sql.view}")
    await conn.execute(sql.create_view())


async def evolve(conn: asyncpg.Connection, qualified: str, table: str, expected: dict[str, str | None]) -> None:
    """Add the ``expected`` columns ``table`` lacks; raise ``SchemaDriftError`` (naming ``qualified``) on drift.

    A column expected with type None is the sink's own and is left as it is.
    """
    existing = {r["attname"]: r["type"] for r in await conn.fetch(_EXISTING, table)}
    for name, found in existing.items():
        if name in expected and expected[name] is None:
            continue
        wanted = expected.get(name)
        if wanted is None:
            raise SchemaDriftError(
                qualified,
                name.removesuffix("__ts").removesuffix("__exp"),
                "the sink has this column but the Cassandra table (after transforms) does not: "
                "it was dropped or excluded; drop it from the sink or restore it",
            )
        if wanted != found:
            raise SchemaDriftError(
                qualified,
                name,
                f"sink type {found} differs from {wanted} mapped from Cassandra: the type changed; "
                "migrate the sink column by hand",
            )
    missing = [(n, t) for n, t in expected.items() if n not in existing and t is not None]
    if missing:
        adds = ", ".join(f"ADD COLUMN {ident(n)} {t}" for n, t in missing)
        await conn.execute(f"ALTER TABLE {table} {adds}")
