"""Every sink type and write mode has one entry in the registry, and each gets the class that writes it."""

from __future__ import annotations

import itertools

import pytest

from pipeline_runtime.config.model import SecretRef, SinkSpec, SinkType, TimescaleSpec, WriteMode
from pipeline_runtime.sinks.base import TableNaming
from pipeline_runtime.sinks.registry import BUILDERS, Connection, build

EXPECTED = {
    (SinkType.POSTGRES, WriteMode.UPSERT): "PostgresSink",
    (SinkType.POSTGRES, WriteMode.APPEND): "PostgresHistorySink",
    (SinkType.TIMESCALEDB, WriteMode.UPSERT): "TimescaleSink",
    (SinkType.TIMESCALEDB, WriteMode.APPEND): "TimescaleHistorySink",
    (SinkType.CLICKHOUSE, WriteMode.UPSERT): "ClickHouseSink",
    (SinkType.CLICKHOUSE, WriteMode.APPEND): "ClickHouseHistorySink",
}


def test_every_type_and_mode_is_registered() -> None:
    assert set(BUILDERS) == set(itertools.product(SinkType, WriteMode))


@pytest.mark.parametrize(("kind", "mode"), sorted(EXPECTED))
def test_each_entry_builds_its_sink_with_the_settings_it_honours(kind: SinkType, mode: WriteMode) -> None:
    timescale = None
    if kind is SinkType.TIMESCALEDB:
        timescale = TimescaleSpec(time_column="at" if mode is WriteMode.UPSERT else None, chunk_interval="1 day")
    spec = SinkSpec(
        name="s", type=kind, write_mode=mode, connection_secret=SecretRef(name="x", key="dsn"), timescale=timescale
    )
    dsn = "chdb:///tmp/unused" if kind is SinkType.CLICKHOUSE else "postgresql://u@h/db"
    sink = build(spec, Connection(dsn, TableNaming("target"), None, lambda: False))
    assert type(sink).__name__ == EXPECTED[kind, mode] and sink.name == "s"
    if kind is SinkType.TIMESCALEDB:
        assert sink.chunk_interval == "1 day"  # type: ignore[attr-defined]
        assert getattr(sink, "time_column", "at") == "at"
