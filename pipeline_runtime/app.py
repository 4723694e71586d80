"""One runtime process: build the parts from a pipeline config and run them until stopped.

The same assembly serves Kubernetes (options from the operator's env and
ConfigMap) and a standalone run (``headrace run --config pipeline.yaml``).
Besides the runner it serves ``/healthz``, ``/readyz`` and ``/metrics``, and,
on Kubernetes, reports this node's status onto the CDCPipeline resource.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import Counter

from pipeline_runtime.checkpoint.cleanup import backlog_degraded, backlog_share
from pipeline_runtime.config.loader import LoadedPipeline
from pipeline_runtime.config.model import (
    LOCAL_CONTACT_POINT,
    CassandraSource,
    PipelineSpec,
    SinkSpec,
    SnapshotMode,
    TableSelector,
    selects,
)
from pipeline_runtime.config.quantity import quantity_bytes
from pipeline_runtime.config.status import NodeSinkStatus, NodeStatus
from pipeline_runtime.config.status import Position as StatusPosition
from pipeline_runtime.config.tls import ssl_context
from pipeline_runtime.cql.schema import TableSchema
from pipeline_runtime.errors import ConfigError, HeadraceError
from pipeline_runtime.observability.http import HealthServer
from pipeline_runtime.observability.metrics import Metrics, create_metrics
from pipeline_runtime.pipeline.replicas import ReplicaRouter
from pipeline_runtime.pipeline.runner import BatchPolicy, Runner, SnapshotFactory
from pipeline_runtime.pipeline.snapshot import INITIAL, Deliver, ReadMarks, SnapshotRun, SnapshotSettings
from pipeline_runtime.pipeline.transform import PlannedTransform
from pipeline_runtime.report.kubernetes import KubernetesStatusReporter
from pipeline_runtime.secrets import DEFAULT_SECRETS_DIR, SecretStore
from pipeline_runtime.sinks import registry as sink_registry
from pipeline_runtime.sinks.base import Sink, TableNaming
from pipeline_runtime.sinks.deadletter import JsonlDeadLetters
from pipeline_runtime.sinks.registry import Connection
from pipeline_runtime.sinks.retry import Backoff
from pipeline_runtime.source.claim import CdcRawClaim
from pipeline_runtime.source.connect import connect
from pipeline_runtime.source.ring import driver_ring, replication_factor
from pipeline_runtime.source.schema.driver import DriverSchemaSource
from pipeline_runtime.source.schema.registry import SchemaRegistry
from pipeline_runtime.source.snapshot import SnapshotReader
from pipeline_runtime.source.tailer import CdcRawSource, unread_bytes
from pipeline_runtime.transforms import Transformer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RuntimeOptions:
    """Where this runtime runs: which node's cdc_raw, where secrets are, what it serves."""

    node: str
    cdc_raw: Path
    secrets_dir: Path = DEFAULT_SECRETS_DIR
    http_host: str = "0.0.0.0"  # noqa: S104 - probes and Prometheus reach the pod's IP
    http_port: int = 8080
    #: The ConfigMap this runtime writes its NodeStatus into (the operator creates it; None: no reports).
    report_config_map: str | None = None
    report_interval: float = 10.0
    #: Where rows a sink rejects are kept (JSONL, one file per pipeline); default: beside cdc_raw,
    #: on the same persistent volume.
    dead_letter_dir: Path | None = None
    #: Longest wait between retries of an unavailable sink (seconds).
    retry_max_delay: float = 30.0
    #: Address of this node's own Cassandra (the operator sets it from the pod), used when the
    #: pipeline leaves ``contactPoint`` unset.
    cassandra_host: str | None = None
    #: ``headrace snapshot``: snapshot only these tables ('keyspace.table') under ``snapshot_generation``,
    #: then stop; no live capture.
    snapshot_only: tuple[str, ...] = ()
    snapshot_generation: str | None = None

    def dead_letter_file(self, pipeline: str) -> Path:
        folder = self.dead_letter_dir or self.cdc_raw.parent / "headrace-dead-letters"
        return folder / f"{pipeline}.jsonl"


def with_contact_point(source: CassandraSource, node_host: str | None) -> CassandraSource:
    """``source`` with its contact point decided: the pipeline's, else the node's own Cassandra,
    else 127.0.0.1 (a runtime beside Cassandra, run standalone)."""
    if source.contact_point is not None:
        return source
    return source.model_copy(update={"contact_point": node_host or LOCAL_CONTACT_POINT})


#: How long ``check_connections`` waits for a sink to open.
SINK_CHECK_SECONDS = 20.0


def table_selected(selectors: list[TableSelector], schema: TableSchema) -> bool:
    """Whether ``spec.source.tables`` selects the table (shell wildcards in both names)."""
    return selects(selectors, schema.keyspace, schema.name)


def sink_tables(spec: PipelineSpec) -> dict[str, Callable[[str, str], bool]]:
    """Per sink with ``sinks[].tables``: whether it receives a table."""
    return {s.name: functools.partial(selects, s.tables) for s in spec.sinks if s.tables is not None}


def build_sink(spec: SinkSpec, secrets: SecretStore, concurrent_writers: Callable[[], bool] | None = None) -> Sink:
    """The sink object for one ``spec.sinks[]`` entry (connection URL from its Secret), from the registry.

    ``concurrent_writers``: whether another runtime may write the same rows at the moment (ClickHouse
    then settles its inserts; None: assume so).
    """
    connection = Connection(
        dsn=secrets.read(spec.connection_secret),
        naming=TableNaming(spec.target, dict(spec.table_mapping)),
        tls=ssl_context(spec.tls, secrets.read, f"sink {spec.name}: tls"),
        concurrent_writers=concurrent_writers,
    )
    return sink_registry.build(spec, connection)


def build_transformer(spec: PipelineSpec, secrets: SecretStore) -> Transformer:
    hash_key = secrets.read_bytes(spec.transforms.hash_key_secret) if spec.transforms.hash_key_secret else None
    return Transformer(spec.transforms, hash_key)


@dataclass
class Runtime:
    """The parts of one running runtime, kept for health, metrics and status reports."""

    pipeline: LoadedPipeline
    options: RuntimeOptions
    metrics: Metrics = field(default_factory=create_metrics)
    runner: Runner | None = None
    source: CdcRawSource | None = None
    dead_letters: JsonlDeadLetters | None = None
    session: Any = None
    http: HealthServer | None = None
    started_at: float = field(default_factory=time.monotonic)
    _counts_seen: dict[str, int] = field(default_factory=dict)
    #: Whether a selected keyspace keeps more than one replica (None until connected).
    _replicated: bool | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Connect, replicate and serve until ``stop`` is set (or a fatal error)."""
        spec = self.pipeline.spec
        secrets = SecretStore(self.options.secrets_dir)
        sinks = [build_sink(s, secrets, self._concurrent_writers) for s in spec.sinks]
        transformer = build_transformer(spec, secrets)
        self.http = http = HealthServer(
            self.metrics.registry, self.readiness, self.options.http_host, self.options.http_port
        )
        await http.start()
        reporter = asyncio.create_task(self._observe_forever())
        try:
            self.session = await self._connect(secrets, stop)
            if self.session is None:
                return
            registry = await asyncio.to_thread(
                SchemaRegistry,
                DriverSchemaSource(self.session),
                lambda schema: schema.cdc and table_selected(spec.source.tables, schema),
            )
            keyspaces = {s.keyspace for s in registry.schemas.values() if registry.selector(s)}
            self._replicated = any(replication_factor(self.session, k) > 1 for k in keyspaces)
            self.dead_letters = JsonlDeadLetters(
                self.options.dead_letter_file(self.pipeline.name),
                max_bytes=quantity_bytes(spec.runtime.dead_letters.max_size),
            )
            claim = CdcRawClaim(self.options.cdc_raw, self.pipeline.name, self.options.node)
            self.source = CdcRawSource(self.options.cdc_raw, self.options.node, registry, claim=claim)
            batch_size = min(s.batch_size for s in spec.sinks)
            flush = min(s.flush_interval_ms for s in spec.sinks) / 1000
            transform = PlannedTransform(transformer, self.source, self._count_dropped)
            self.runner = Runner(
                pipeline=self.pipeline.name,
                node=self.options.node,
                source=self.source,
                transform=transform,
                sinks=sinks,
                metrics=self.metrics,
                dead_letters=self.dead_letters,
                batching=BatchPolicy(max_events=batch_size, max_wait=flush),
                backoff=Backoff(maximum=self.options.retry_max_delay),
                snapshot=self._snapshot_factory(registry, transform),
                replicas=self._replica_router(),
                receives=sink_tables(self.pipeline.spec),
                sink_batching={
                    s.name: BatchPolicy(max_events=s.batch_size, max_wait=s.flush_interval_ms / 1000)
                    for s in spec.sinks
                },
            )
            await self.runner.run(stop, live=not self.options.snapshot_only)
        finally:
            reporter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reporter
            if (report_to := self.options.report_config_map) is not None:
                await self._report_once(report_to)
            await http.stop()
            if self.source is not None and self.source.claim is not None:
                self.source.claim.release()
            if self.session is not None:
                self.session.cluster.shutdown()

    def _concurrent_writers(self) -> bool:
        """Whether another runtime may write the same rows: in any replicated keyspace (ClickHouse then
        settles each insert), with or without replicaDedup. With dedup on an owner cannot know when
        another runtime writes its ranges (a takeover ending, held changes from before its node's
        return, a token without a known owner, another sink's catch-up), so both sides always settle."""
        return self._replicated is not False  # not connected yet: assume the worst

    def _replica_router(self) -> ReplicaRouter | None:
        """Replica dedup (docs/replicas.md), or None when every replica's runtime writes every change."""
        source = self.pipeline.spec.source
        if not source.replica_dedup:
            return None
        assert self.source is not None
        local = self._local_address()
        session = self.session
        return ReplicaRouter(
            ring=lambda: driver_ring(session, local),
            schema=self.source.schema,
            margin=float(source.replica_margin_seconds),
            takeover=float(source.replica_takeover_seconds),
        )

    def _local_address(self) -> str | None:
        """This runtime's own Cassandra node: the operator's pod address, else the pipeline's contact point."""
        return (
            self.options.cassandra_host or with_contact_point(self.pipeline.spec.source.cassandra, None).contact_point
        )

    def _snapshot_factory(self, registry: SchemaRegistry, transform: PlannedTransform) -> SnapshotFactory | None:
        """What the snapshot reads (docs/snapshot.md), or None when nothing is to be read."""
        settings = self.pipeline.spec.source.snapshot
        only = self.options.snapshot_only
        if only:
            generation = self.options.snapshot_generation or "manual"
        elif settings.request:
            generation = f"request-{settings.request}"
        elif settings.mode is SnapshotMode.INITIAL:
            generation = INITIAL
        else:
            return None
        selected = [s for s in registry.schemas.values() if registry.selector(s)]
        if only:
            unknown = sorted(set(only) - {s.qualified_name for s in selected})
            if unknown:
                raise ConfigError(f"not a selected table with CDC on: {', '.join(unknown)}")
            selected = [s for s in selected if s.qualified_name in only]
        local = self._local_address()

        fetch_size = settings.fetch_size
        if settings.rows_per_second:
            # Throttled: pages of at most a quarter second's rows, so Cassandra sees no bursts.
            fetch_size = min(fetch_size, max(100, settings.rows_per_second // 4))

        def open_reader(schema: TableSchema) -> SnapshotReader:
            return SnapshotReader(
                self.session,
                schema,
                self.options.node,
                fetch_size,
                consistency=settings.consistency.value,
                local_address=local,
            )

        def factory(deliver: Deliver, read_marks: ReadMarks) -> SnapshotRun:
            return SnapshotRun(
                pipeline=self.pipeline.name,
                node=self.options.node,
                tables=selected,
                open_reader=open_reader,
                transform=transform,
                deliver=deliver,
                read_marks=read_marks,
                metrics=self.metrics,
                settings=SnapshotSettings(generation=generation, rows_per_second=settings.rows_per_second),
            )

        return factory

    async def _connect(self, secrets: SecretStore, stop: asyncio.Event) -> Any:
        """A Cassandra session, retried with backoff until it works or ``stop`` is set."""
        delay = 0.5
        while not stop.is_set():
            try:
                source = with_contact_point(self.pipeline.spec.source.cassandra, self.options.cassandra_host)
                return await asyncio.to_thread(connect, source, secrets.read)
            except HeadraceError as exc:
                if not exc.retryable:
                    raise
                log.warning("Cassandra unavailable, retrying", extra={"error": str(exc), "retry_in": delay})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                delay = min(delay * 2, 30.0)
        return None

    # -- health and status ------------------------------------------------------------------------

    def readiness(self) -> list[str]:
        """Why the runtime is not ready (empty when it is): source readable and sinks reachable."""
        reasons = []
        if not os.access(self.options.cdc_raw, os.R_OK | os.X_OK):
            reasons.append(f"cdc_raw {self.options.cdc_raw} is not readable")
        if self.runner is None:
            reasons.append("starting: connecting to Cassandra")
            return reasons
        stuck = self.runner.stuck_sinks()
        reasons += stuck
        for sink in self.runner.sinks:
            health = sink.health()
            if not health.healthy and not any(reason.startswith(f"sink {sink.name}:") for reason in stuck):
                reasons.append(f"sink {sink.name} is {health.state}: {health.last_error or 'not open yet'}")
        return reasons

    def _cdc_raw_readable(self) -> bool:
        return self.options.cdc_raw.is_dir() and os.access(self.options.cdc_raw, os.R_OK | os.X_OK)

    def node_status(self) -> NodeStatus:
        """This node's entry for ``status.nodes``."""
        backlog = self.source.backlog() if self.source is not None else []
        cdc_bytes = sum(s.size for s in backlog)
        share = backlog_share(cdc_bytes, self._cdc_total_space())
        labels = {"pipeline": self.pipeline.name, "node": self.options.node}
        self.metrics.cdc_raw_bytes.labels(**labels).set(cdc_bytes)
        self.metrics.cdc_raw_share.labels(**labels).set(share)
        runner = self.runner
        if runner is None:
            return NodeStatus(cdc_raw_bytes=cdc_bytes, cdc_raw_share=share, last_report_time=dt.datetime.now(dt.UTC))
        lag = runner.lag_seconds()
        committed = runner.progress.committed
        sinks = {}
        for sink in runner.sinks:
            health = sink.health()
            lane = runner.lanes.get(sink.name)
            position = lane.committed if lane is not None else None
            sinks[sink.name] = NodeSinkStatus(
                healthy=health.healthy and sink.name not in runner.sink_errors,
                last_commit_time=health.last_commit,
                rows_written=health.rows_written,
                position=StatusPosition(segment_id=position.segment_id, offset=position.offset) if position else None,
                lag_seconds=runner.sink_lag_seconds(sink.name),
                behind=lane is not None and not lane.attached,
            )
        return NodeStatus(
            position=StatusPosition(segment_id=committed.segment_id, offset=committed.offset) if committed else None,
            lag_seconds=lag,
            events_per_second=runner.progress.events_per_second(time.monotonic()),
            cdc_raw_bytes=cdc_bytes,
            cdc_raw_share=share,
            # Unknown (None) when cdc_raw cannot be read: an empty listing must not read as drained.
            unread_bytes=unread_bytes(backlog, committed) if self._cdc_raw_readable() else None,
            last_error=runner.progress.last_error,
            last_report_time=dt.datetime.now(dt.UTC),
            config_hash=os.environ.get("HEADRACE_CONFIG_HASH"),
            dead_letters=self.dead_letters.count if self.dead_letters is not None else 0,
            dead_letter_file=str(self.dead_letters.path) if self.dead_letters is not None else None,
            sinks=sinks,
            snapshot=runner.snapshot.status() if runner.snapshot is not None else {},
            replicas=runner.replicas.status() if runner.replicas is not None else {},
            held_changes=len(runner.replicas.held) if runner.replicas is not None else 0,
        )

    async def _report_once(self, config_map: str) -> None:
        reporter = KubernetesStatusReporter(self.pipeline.namespace, config_map)
        await reporter.report(self.node_status())

    async def _observe_forever(self) -> None:
        """Refresh gauges, warn about the backlog, and report status (on Kubernetes), every interval."""
        while True:
            status = self.node_status()
            self._export_source_counts()
            if backlog_degraded(status.cdc_raw_bytes, self._cdc_total_space()):
                log.warning(
                    "cdc_raw backlog is high: Cassandra rejects CDC writes when it is full",
                    extra={"cdc_raw_bytes": status.cdc_raw_bytes, "share": round(status.cdc_raw_share, 3)},
                )
            if (report_to := self.options.report_config_map) is not None:
                await self._report_once(report_to)
            await asyncio.sleep(self.options.report_interval)

    def _cdc_total_space(self) -> int:
        return self.pipeline.spec.source.cassandra.cdc_total_space_mb * 1024 * 1024

    def _count_dropped(self, table: str, reason: str, cells: int) -> None:
        labels = {"pipeline": self.pipeline.name, "node": self.options.node}
        self.metrics.cells_dropped.labels(**labels, table=table, reason=reason).inc(cells)

    def _export_source_counts(self) -> None:
        """The source's cumulative counts (skipped updates, idx reads that found the file being
        rewritten, segments without CDC data) as the metrics' increments since the last export."""
        source = self.source
        if source is None:
            return
        totals: list[tuple[str, Counter, dict[str, str], int]] = [
            ("index_not_ready", self.metrics.index_not_ready, {}, source.counters.index_not_ready),
            ("without_cdc", self.metrics.segments_without_cdc, {}, source.counters.segments_without_cdc),
        ]
        for reason, count in source.decode_stats.skipped.items():
            totals.append((f"skipped:{reason}", self.metrics.events_skipped, {"table": "*", "reason": reason}, count))
        labels = {"pipeline": self.pipeline.name, "node": self.options.node}
        for key, metric, extra, count in totals:
            seen = self._counts_seen.get(key, 0)
            if count > seen:
                metric.labels(**labels, **extra).inc(count - seen)
                self._counts_seen[key] = count


async def check_connections(pipeline: LoadedPipeline, options: RuntimeOptions) -> list[tuple[str, str | None]]:
    """One (what, problem or None) per sink: opened as the runtime opens it, then closed.

    Opening connects, authenticates, verifies TLS, checks what the sink needs (the TimescaleDB
    extension) and creates the checkpoint table when missing (the privilege the runtime needs).
    """
    secrets = SecretStore(options.secrets_dir)
    out: list[tuple[str, str | None]] = []
    for spec in pipeline.spec.sinks:
        what = f"sink {spec.name} ({spec.type}, {spec.write_mode})"
        try:
            sink = build_sink(spec, secrets, concurrent_writers=lambda: False)
            try:
                await asyncio.wait_for(sink.open(), SINK_CHECK_SECONDS)
            finally:
                await sink.close()
        except (HeadraceError, TimeoutError) as exc:
            out.append((what, str(exc) or f"no answer within {SINK_CHECK_SECONDS} s"))
        else:
            out.append((what, None))
    return out


def check_config(pipeline: LoadedPipeline, options: RuntimeOptions) -> list[str]:
    """Problems a user can fix before starting: unreadable secrets, a missing cdc_raw."""
    problems = []
    secrets = SecretStore(options.secrets_dir)
    for sink in pipeline.spec.sinks:
        try:
            secrets.read(sink.connection_secret)
        except ConfigError as exc:
            problems.append(f"sink {sink.name}: {exc}")
    if not options.cdc_raw.is_dir():
        problems.append(f"cdc_raw directory {options.cdc_raw} does not exist")
    return problems
