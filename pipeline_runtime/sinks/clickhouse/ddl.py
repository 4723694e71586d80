"""Create and evolve a table's storage in ClickHouse; refuse drops and retypes.

Runs synchronously (the sink calls it in a worker thread). New Cassandra
columns become ``ADD COLUMN IF NOT EXISTS`` and the view is replaced in one
statement; a column that vanished or changed type raises ``SchemaDriftError``
and changes nothing. Every statement is safe to run concurrently with the same
statement from another runtime; should ClickHouse still report that an object
already exists (a race it lost), the error is retryable and the next attempt
finds the object.
"""

from __future__ import annotations

from typing import Any

from pipeline_runtime.errors import SchemaDriftError
from pipeline_runtime.sinks.clickhouse.sql import TableSql, ident

_META = frozenset({"_del_ts", "_version", "is_deleted", "_live_ts", "_live_exp"})


def ensure_tables(client: Any, sql: TableSql) -> None:
    for statement in sql.create_tables():
        client.command(statement)
    table = f"{sql.database}.{sql.table}"
    evolve(client, sql.database, sql.table + "__state", sql.state, sql.state_columns, table)
    if sql.has_statics:
        evolve(client, sql.database, sql.table + "__static", sql.statics, sql.static_columns, table)
    # Several runtimes (every replica's, every pipeline's) run this at once: each statement must
    # succeed whoever ran it first, so no DROP-then-CREATE window and no plain ADD COLUMN.
    client.command(sql.create_view())


def evolve(  # noqa: PLR0917 - where, what and how to name it
    client: Any,
    database: str,
    name: str,
    qualified: str,
    expected: list[tuple[str, str]],
    table: str,
    own: frozenset[str] = _META,
) -> None:
    """Add the ``expected`` columns table ``database.name`` (``qualified``) lacks; raise on drift.

    ``table`` names the Cassandra table in the ``SchemaDriftError``; ``own`` are the sink's own columns.
    """
    result = client.query(
        "SELECT name, type FROM system.columns WHERE database = %(db)s AND table = %(table)s ORDER BY position",
        parameters={"db": database, "table": name},
    )
    existing = dict(result.result_rows)
    wanted = dict(expected)
    for column, found in existing.items():
        if column in own:
            continue
        if column not in wanted:
            base = column.removesuffix("__ts").removesuffix("__exp").removesuffix("__state")
            raise SchemaDriftError(
                table,
                base,
                "the sink has this column but the Cassandra table (after transforms) does not: "
                "it was dropped or excluded; drop it from the sink or restore it",
            )
        if wanted[column] != found:
            raise SchemaDriftError(
                table,
                column,
                f"sink type {found} differs from {wanted[column]} mapped from Cassandra: migrate it by hand",
            )
    missing = [(n, t) for n, t in expected if n not in existing]
    if missing:
        # Added before the bookkeeping columns would be nicer to read, but ADD COLUMN appends; order is irrelevant.
        adds = ", ".join(f"ADD COLUMN IF NOT EXISTS {ident(n)} {t}" for n, t in missing)
        client.command(f"ALTER TABLE {qualified} {adds}")
