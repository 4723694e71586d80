"""ClickHouse sink (clickhouse-connect; the chdb engine in tests): merged whole-row states, idempotent inserts."""

from pipeline_runtime.sinks.clickhouse.sink import ClickHouseSink

__all__ = ["ClickHouseSink"]
