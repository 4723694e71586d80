"""One registry from a sink's ``type`` and ``writeMode`` to the class that writes it.

Each entry reads exactly the settings its sink honours from ``SinkSpec`` (the model and the CRD's
rules refuse the others: ``timescale`` outside TimescaleDB, ``timeColumn`` with append, TLS on
``chdb://`` when the sink is built). Database drivers load only when their sink is built.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass

from pipeline_runtime.config.model import SinkSpec, SinkType, TimescaleSpec, WriteMode
from pipeline_runtime.sinks.base import Sink, TableNaming


@dataclass(frozen=True)
class Connection:
    """What every sink gets besides its spec: the resolved connection URL, naming and TLS."""

    dsn: str
    naming: TableNaming
    tls: ssl.SSLContext | None
    #: Whether another runtime may write the same rows at the moment (ClickHouse settles its inserts then).
    concurrent_writers: Callable[[], bool] | None = None


Builder = Callable[[SinkSpec, Connection], Sink]


def _postgres(spec: SinkSpec, c: Connection) -> Sink:
    from pipeline_runtime.sinks.postgres import PostgresSink  # noqa: PLC0415

    return PostgresSink(spec.name, c.dsn, c.naming, tls=c.tls)


def _postgres_history(spec: SinkSpec, c: Connection) -> Sink:
    from pipeline_runtime.sinks.postgres.history import PostgresHistorySink  # noqa: PLC0415

    return PostgresHistorySink(spec.name, c.dsn, c.naming, tls=c.tls)


def _timescale(spec: SinkSpec, c: Connection) -> Sink:
    from pipeline_runtime.sinks.timescale import TimescaleSink  # noqa: PLC0415

    timescale = spec.timescale or TimescaleSpec()
    assert timescale.time_column is not None  # the model requires it with upsert
    return TimescaleSink(
        spec.name, c.dsn, timescale.time_column, c.naming, chunk_interval=timescale.chunk_interval, tls=c.tls
    )


def _timescale_history(spec: SinkSpec, c: Connection) -> Sink:
    from pipeline_runtime.sinks.timescale import TimescaleHistorySink  # noqa: PLC0415

    timescale = spec.timescale or TimescaleSpec()
    return TimescaleHistorySink(spec.name, c.dsn, c.naming, chunk_interval=timescale.chunk_interval, tls=c.tls)


def _clickhouse(spec: SinkSpec, c: Connection) -> Sink:
    from pipeline_runtime.sinks.clickhouse import ClickHouseSink  # noqa: PLC0415

    return ClickHouseSink(spec.name, c.dsn, c.naming, settle=c.concurrent_writers, tls=c.tls)


def _clickhouse_history(spec: SinkSpec, c: Connection) -> Sink:
    from pipeline_runtime.sinks.clickhouse.history import ClickHouseHistorySink  # noqa: PLC0415

    return ClickHouseHistorySink(spec.name, c.dsn, c.naming, tls=c.tls)


BUILDERS: dict[tuple[SinkType, WriteMode], Builder] = {
    (SinkType.POSTGRES, WriteMode.UPSERT): _postgres,
    (SinkType.POSTGRES, WriteMode.APPEND): _postgres_history,
    (SinkType.TIMESCALEDB, WriteMode.UPSERT): _timescale,
    (SinkType.TIMESCALEDB, WriteMode.APPEND): _timescale_history,
    (SinkType.CLICKHOUSE, WriteMode.UPSERT): _clickhouse,
    (SinkType.CLICKHOUSE, WriteMode.APPEND): _clickhouse_history,
}


def build(spec: SinkSpec, connection: Connection) -> Sink:
    """The sink object for ``spec``."""
    return BUILDERS[spec.type, spec.write_mode](spec, connection)
