"""Headrace's Prometheus metrics: a closed, typed set.

Every metric the runtime exports is an attribute of ``Metrics``; a misspelt
metric is an AttributeError at import time, not a silently new series. All
names carry the ``headrace_`` prefix and the pipeline and node as labels;
per-table and per-sink metrics add ``table`` / ``sink``.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_BATCH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass(frozen=True)
class Metrics:
    """The runtime's metrics, registered in one registry."""

    registry: CollectorRegistry
    events_decoded: Counter
    events_written: Counter
    events_failed: Counter
    events_skipped: Counter
    events_dead_lettered: Counter
    cells_dropped: Counter
    decode_errors: Counter
    batches: Counter
    batch_seconds: Histogram
    retries: Counter
    lag_seconds: Gauge
    committed_segment: Gauge
    committed_offset: Gauge
    sink_lag_seconds: Gauge
    sink_committed_segment: Gauge
    sink_committed_offset: Gauge
    cdc_raw_bytes: Gauge
    cdc_raw_share: Gauge
    segments_deleted: Counter
    segments_reclaimed: Counter
    segments_without_cdc: Counter
    index_not_ready: Counter
    snapshot_rows: Counter
    snapshot_ranges: Gauge
    snapshot_seconds: Gauge
    replica_events: Counter
    replica_held: Gauge


def create_metrics(registry: CollectorRegistry | None = None) -> Metrics:
    """Create and register every metric (a fresh registry unless one is given)."""
    registry = registry or CollectorRegistry()
    node = ["pipeline", "node"]
    return Metrics(
        registry=registry,
        events_decoded=Counter(
            "headrace_events_decoded",
            "Change events decoded from the commitlog",
            [*node, "table", "op"],
            registry=registry,
        ),
        events_written=Counter(
            "headrace_events_written",
            "Change events a sink committed (dead letters excluded)",
            [*node, "table", "sink", "op"],
            registry=registry,
        ),
        events_failed=Counter(
            "headrace_events_failed",
            "Change events in sink write attempts that failed and will be retried (each attempt counted as it fails)",
            [*node, "table", "sink"],
            registry=registry,
        ),
        events_skipped=Counter(
            "headrace_events_skipped",
            "Updates not replicated, by reason (counter table, view, not selected)",
            [*node, "table", "reason"],
            registry=registry,
        ),
        events_dead_lettered=Counter(
            "headrace_events_dead_lettered",
            "Events a sink rejected row by row, kept in the dead-letter file instead",
            [*node, "table", "sink"],
            registry=registry,
        ),
        cells_dropped=Counter(
            "headrace_cells_dropped",
            "Cells not replicated on purpose, by table and reason (column_not_in_schema)",
            [*node, "table", "reason"],
            registry=registry,
        ),
        decode_errors=Counter(
            "headrace_decode_errors", "Segments or mutations that failed to decode", [*node, "kind"], registry=registry
        ),
        batches=Counter("headrace_batches", "Batches committed to a sink", [*node, "sink"], registry=registry),
        batch_seconds=Histogram(
            "headrace_batch_seconds",
            "Time to write and commit one batch",
            [*node, "sink"],
            buckets=_BATCH_BUCKETS,
            registry=registry,
        ),
        retries=Counter(
            "headrace_retries",
            "Failed sink calls that will be retried, counted as each fails",
            [*node, "sink"],
            registry=registry,
        ),
        lag_seconds=Gauge(
            "headrace_lag_seconds",
            "Seconds since the oldest change not yet committed in every sink became durable in the commitlog "
            "(0 when caught up)",
            node,
            registry=registry,
        ),
        committed_segment=Gauge(
            "headrace_committed_segment_id", "Segment id of the lowest committed position", node, registry=registry
        ),
        committed_offset=Gauge(
            "headrace_committed_offset", "Offset of the lowest committed position", node, registry=registry
        ),
        sink_lag_seconds=Gauge(
            "headrace_sink_lag_seconds",
            "Seconds since the oldest change not yet committed in this sink became durable in the commitlog",
            [*node, "sink"],
            registry=registry,
        ),
        sink_committed_segment=Gauge(
            "headrace_sink_committed_segment_id",
            "Segment id of the position committed in this sink",
            [*node, "sink"],
            registry=registry,
        ),
        sink_committed_offset=Gauge(
            "headrace_sink_committed_offset",
            "Offset of the position committed in this sink",
            [*node, "sink"],
            registry=registry,
        ),
        cdc_raw_bytes=Gauge("headrace_cdc_raw_bytes", "Bytes held in cdc_raw", node, registry=registry),
        cdc_raw_share=Gauge(
            "headrace_cdc_raw_share", "cdc_raw bytes as a share of cdc_total_space (0-1)", node, registry=registry
        ),
        segments_deleted=Counter(
            "headrace_segments_deleted",
            "cdc_raw segments deleted after every sink committed past them",
            node,
            registry=registry,
        ),
        segments_reclaimed=Counter(
            "headrace_segments_reclaimed",
            "Empty cdc_raw segments left by graceful Cassandra stops, proved empty and deleted",
            node,
            registry=registry,
        ),
        segments_without_cdc=Counter(
            "headrace_segments_without_cdc",
            "cdc_raw segments passed over unread: no _cdc.idx while a later segment has one (no CDC data synced)",
            node,
            registry=registry,
        ),
        index_not_ready=Counter(
            "headrace_cdc_index_not_ready",
            "_cdc.idx reads that found the file empty or half-written (Cassandra rewriting it); read again next poll",
            node,
            registry=registry,
        ),
        snapshot_rows=Counter(
            "headrace_snapshot_rows",
            "Rows a snapshot read through CQL and every sink committed",
            [*node, "table"],
            registry=registry,
        ),
        snapshot_ranges=Gauge(
            "headrace_snapshot_ranges",
            "Token ranges of a table's snapshot on this node, by state (done, total)",
            [*node, "table", "state"],
            registry=registry,
        ),
        snapshot_seconds=Gauge(
            "headrace_snapshot_seconds",
            "Seconds a table's snapshot has run in this runtime (stops growing when it is done)",
            [*node, "table"],
            registry=registry,
        ),
        replica_events=Counter(
            "headrace_replica_events",
            "Changes by what replica dedup did with them: written (this node is primary), held (another"
            " node's runtime writes them), covered (dropped: its runtime wrote them), taken_over (written here)",
            [*node, "disposition"],
            registry=registry,
        ),
        replica_held=Gauge(
            "headrace_replica_held",
            "Changes held for other nodes' runtimes (replica dedup): the checkpoint waits at the oldest",
            node,
            registry=registry,
        ),
    )
