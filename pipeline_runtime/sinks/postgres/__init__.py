"""PostgreSQL sink (asyncpg): COPY into staging, one merge, checkpoint in the same transaction."""

from pipeline_runtime.sinks.postgres.sink import PostgresSink

__all__ = ["PostgresSink"]
