"""Two Cassandra tables never land in one sink table: a mapping (or two keyspaces under one target) that
would put them there is refused by the sink, naming both tables, before anything is written."""

from __future__ import annotations

import uuid

import pytest

from pipeline_runtime.cql.schema import ColumnKind, TableSchema
from pipeline_runtime.errors import ConfigError
from pipeline_runtime.sinks.base import Sink, TableNaming
from pipeline_runtime.sinks.clickhouse import ClickHouseSink
from pipeline_runtime.sinks.clickhouse.history import ClickHouseHistorySink
from pipeline_runtime.sinks.postgres import PostgresSink
from pipeline_runtime.sinks.postgres.history import PostgresHistorySink
from tests.integration.sinks.workload import column

pytestmark = [pytest.mark.postgres, pytest.mark.clickhouse]


def table(keyspace: str, name: str) -> TableSchema:
    return TableSchema(
        keyspace, name, uuid.uuid4(), (column("id", "int", ColumnKind.PARTITION_KEY, 0), column("v", "text"))
    )


def sinks(postgres_dsn: str, chdb_dsn: str, naming: TableNaming) -> list[Sink]:
    return [
        PostgresSink("pg", postgres_dsn, naming),
        PostgresHistorySink("pg-history", postgres_dsn, naming),
        ClickHouseSink("ch", chdb_dsn, naming),
        ClickHouseHistorySink("ch-history", chdb_dsn, naming),
    ]


@pytest.mark.parametrize("kind", range(4), ids=["postgres", "postgres-append", "clickhouse", "clickhouse-append"])
async def test_a_second_table_onto_a_taken_name_is_refused(postgres_dsn: str, chdb_dsn: str, kind: int) -> None:
    target = f"naming_{uuid.uuid4().hex[:8]}"
    naming = TableNaming(target=target, mapping={"shop.orders": "items"})
    sink = sinks(postgres_dsn, chdb_dsn, naming)[kind]
    await sink.open()
    try:
        await sink.ensure_table(table("shop", "orders"))
        await sink.ensure_table(table("shop", "orders"))  # the same table again (a schema change): fine
        with pytest.raises(ConfigError, match=rf"sink {sink.name}: tables shop.orders and shop.items would both land"):
            await sink.ensure_table(table("shop", "items"))
        with pytest.raises(ConfigError, match=r"tables shop.orders and crm.items would both land"):
            await sink.ensure_table(table("crm", "items"))  # another keyspace under the same target
        await sink.ensure_table(table("crm", "clients"))
    finally:
        await sink.close()
