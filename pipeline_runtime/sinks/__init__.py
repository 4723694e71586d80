"""Sinks with exactly-once effect: PostgreSQL, TimescaleDB and ClickHouse.

The interface (lifecycle, batches with checkpoints, health) is described and
defined in ``base.py``; ``writer.BatchWriter`` adds retries, bisection and
dead letters around any sink. Concrete sinks live in ``postgres``,
``timescale`` and ``clickhouse`` and are imported from there, so that
importing this package does not load every database driver.
"""

from pipeline_runtime.sinks.base import Batch, Checkpoint, Sink, SinkHealth, SinkState, TableNaming

__all__ = ["Batch", "Checkpoint", "Sink", "SinkHealth", "SinkState", "TableNaming"]
