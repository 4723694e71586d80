"""cdc_raw's file life against a real Cassandra 5.0: graceful restarts, idx rewrites under load, durable time.

- Every graceful stop leaves Cassandra's spare segment in cdc_raw (header,
  one empty sync section, no idx, one link). The source must prove it empty
  and the cleanup reclaim it, restart after restart, losing nothing.
- Cassandra truncates and rewrites ``_cdc.idx`` at every sync: a tailer that
  polls a fast-syncing node under steady writes catches it empty and must
  carry on.
- ``SourceBatch.durable_at`` is when Cassandra synced the data, not the
  writetime the client chose.
"""

from __future__ import annotations

import itertools
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devservices.cassandra import CassandraNode
from pipeline_runtime.events import ChangeEvent, Position
from pipeline_runtime.observability.metrics import create_metrics
from pipeline_runtime.pipeline.cleanup import consumed, delete_segments
from pipeline_runtime.source.commitlog.descriptor import SEGMENT_NAME
from pipeline_runtime.source.schema.driver import DriverSchemaSource
from pipeline_runtime.source.schema.registry import SchemaRegistry
from pipeline_runtime.source.tailer import CdcRawSource, CdcRawTailer, SourceBatch, TailerSettings

pytestmark = pytest.mark.cassandra

_counter = itertools.count()


def create_keyspace(session: Any, prefix: str) -> str:
    name = f"{prefix}_{next(_counter)}_{uuid.uuid4().hex[:6]}"
    session.execute(f"CREATE KEYSPACE {name} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}")
    return name


def keyspace_registry(session: Any, keyspace: str) -> SchemaRegistry:
    return SchemaRegistry(DriverSchemaSource(session), selector=lambda schema: schema.keyspace == keyspace)


def keys_of(events: list[ChangeEvent], keyspace: str) -> set[int]:
    return {int(e.partition_key["k"]) for e in events if e.keyspace == keyspace}


def follow(
    tailer: CdcRawTailer,
    until: Callable[[], bool],
    on_batch: Callable[[SourceBatch], None],
    timeout: float = 60.0,
    idle: float = 0.01,
) -> None:
    """Poll until ``until()`` holds after an idle poll (nothing more durable), or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch = tailer.poll()
        if batch is not None:
            on_batch(batch)
            continue
        if until():
            return
        time.sleep(idle)
    raise AssertionError(f"not done after {timeout:.0f}s")


# -- graceful restarts ------------------------------------------------------------------------------


@pytest.fixture
def own_node(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[CassandraNode]:
    """A node of this test's own, in a folder of its own, since the test stops and starts it."""
    node = CassandraNode(workdir=tmp_path / "node", compat_mode="CASSANDRA_4", commitlog_compression=request.param)
    try:
        node.start()
        yield node
    finally:
        node.stop()


def listing(folder: Path) -> list[tuple[str, int, int]]:
    """Name, size and link count of each file (for failure messages)."""
    return [(p.name, p.stat().st_size, p.stat().st_nlink) for p in sorted(folder.iterdir())]


def segment_id(path: Path) -> int:
    match = SEGMENT_NAME.match(path.name)
    assert match is not None
    return int(match.group(2))


@pytest.mark.parametrize("own_node", [None, "LZ4Compressor"], ids=["plain", "lz4"], indirect=True)
def test_graceful_restarts_leave_no_segment_behind(own_node: CassandraNode) -> None:
    from cassandra.cluster import Cluster  # noqa: PLC0415

    node = own_node
    session = node.session()
    keyspace = create_keyspace(session, "restarts")
    session.execute(f"CREATE TABLE {keyspace}.t (k int PRIMARY KEY, v text) WITH cdc = true")
    # The runtime's own connection, which outlives Cassandra's restarts (the driver reconnects).
    runtime_cluster = Cluster([node.host], port=node.port, protocol_version=5)
    try:
        registry = keyspace_registry(runtime_cluster.connect(), keyspace)
        source = CdcRawSource(node.cdc_raw_dir, "n", registry)
        tailer = CdcRawTailer(node.cdc_raw_dir, "n", registry)
        metrics = create_metrics()
        labels = {"pipeline": "p", "node": "n"}
        written: set[int] = set()
        seen: set[int] = set()
        committed: Position | None = None
        backlog_bytes: list[float] = []

        def on_batch(batch: SourceBatch) -> None:
            nonlocal committed
            seen.update(keys_of(batch.events, keyspace))
            committed = batch.position or committed

        def write(round_: int) -> None:
            insert = session.prepare(f"INSERT INTO {keyspace}.t (k, v) VALUES (?, ?)")
            keys = range(round_ * 1000, round_ * 1000 + 200)
            for k in keys:
                session.execute(insert, (k, "v" * 100))
            written.update(keys)

        def clean_up() -> int:
            """What the runner does after each commit, and the gauge the observer sets."""
            removed = delete_segments(consumed(source.backlog(), {"sink": committed}))
            metrics.cdc_raw_bytes.labels(**labels).set(sum(s.size for s in source.backlog()))
            return removed

        write(0)
        follow(tailer, lambda: written <= seen, on_batch)
        clean_up()
        leaks = 0
        round_ = 0
        # Three restarts, more (up to six) until one left a segment behind: whether a stop leaves the spare
        # depends on whether the allocator thread prepared a new one after the drain switched segments.
        while round_ < 3 or (leaks == 0 and round_ < 6):
            round_ += 1
            assert node.process is not None
            node.stop()
            assert node.process.process is not None
            assert node.process.process.returncode != -signal.SIGKILL  # drained and stopped by itself
            follow(tailer, lambda: True, on_batch)  # the tailer keeps polling while Cassandra is down
            if round_ == 1:
                # A runtime starting now reads the COMPLETED segments; their data became durable at the idx mtime.
                fresh: list[SourceBatch] = []
                follow(CdcRawTailer(node.cdc_raw_dir, "n", registry), lambda: True, fresh.append)
                with_entries = [b for b in fresh if b.entries and b.position is not None]
                assert with_entries
                for batch in with_entries:
                    assert batch.position is not None
                    (idx,) = node.cdc_raw_dir.glob(f"CommitLog-*-{batch.position.segment_id}_cdc.idx")
                    assert batch.durable_at == os.stat(idx).st_mtime
                fresh_keys = keys_of([e for b in fresh for e in b.events], keyspace)
                assert fresh_keys and fresh_keys <= written
            started_ms = int(time.time() * 1000)
            node.start()
            session = node.session()
            assert not any(s.reclaimable for s in source.backlog())  # no CDC data synced by the new run yet
            write(round_)
            follow(tailer, lambda: written <= seen, on_batch)
            left_behind = [s for s in source.backlog() if s.reclaimable]
            # At most the spare segment of the run just stopped: no idx, no entry, one link.
            assert len(left_behind) <= 1, (left_behind, listing(node.cdc_raw_dir), listing(node.commitlog_dir))
            leaks += len(left_behind)
            for segment in left_behind:
                assert segment.segment_id < started_ms and segment.index_status == "missing"
                assert segment.size == node.commitlog_segment_mib * 1024 * 1024 or node.commitlog_compression
            assert clean_up() >= len(left_behind)
            assert not any(segment.log.exists() for segment in left_behind)
            remaining = sorted(node.cdc_raw_dir.glob("CommitLog-*.log"))
            # Nothing of an earlier run is left: every segment belongs to the running Cassandra.
            assert all(segment_id(p) >= started_ms for p in remaining), listing(node.cdc_raw_dir)
            backlog_bytes.append(metrics.registry.get_sample_value("headrace_cdc_raw_bytes", labels) or 0.0)
        assert leaks >= 1, "no graceful stop left a segment behind: the test did not exercise the reclaim"
        assert seen == written
        assert {row.k for row in session.execute(f"SELECT k FROM {keyspace}.t")} == written
        # The backlog does not grow from one restart to the next (a leaked 1 MiB segment per restart would).
        assert backlog_bytes[-1] <= backlog_bytes[0] + 64 * 1024, backlog_bytes
    finally:
        runtime_cluster.shutdown()


# -- idx rewrites under load ------------------------------------------------------------------------


def test_tailer_follows_a_fast_syncing_node_under_steady_writes(cassandra_v7: CassandraNode) -> None:
    """Cassandra (50 ms periodic sync) rewrites each idx 20 times a second; the tailer polls every 2 ms for 20 s."""
    session = cassandra_v7.session()
    keyspace = create_keyspace(session, "steady")
    session.execute(f"CREATE TABLE {keyspace}.t (k int PRIMARY KEY, v text) WITH cdc = true")
    insert = session.prepare(f"INSERT INTO {keyspace}.t (k, v) VALUES (?, ?)")
    tailer = CdcRawTailer(
        cassandra_v7.cdc_raw_dir, "n", keyspace_registry(session, keyspace), settings=TailerSettings(max_entries=500)
    )
    follow(tailer, lambda: True, lambda batch: None, timeout=120)  # catch up with what other tests wrote
    written: list[int] = []
    stop = threading.Event()
    failures: list[BaseException] = []

    def writer() -> None:
        try:
            for k in itertools.count():
                if stop.is_set():
                    return
                session.execute(insert, (k, "w" * 80))
                written.append(k)
        except BaseException as exc:  # reported by the test below
            failures.append(exc)

    thread = threading.Thread(target=writer, daemon=True)
    seen: set[int] = set()
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            batch = tailer.poll()  # any error fails the test
            if batch is None:
                time.sleep(0.002)
            else:
                seen.update(keys_of(batch.events, keyspace))
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not failures
    follow(tailer, lambda: set(written) <= seen, lambda batch: seen.update(keys_of(batch.events, keyspace)), 60, 0.002)
    assert len(written) > 1000
    assert seen == set(written)
    # The race happened and was survived: reads that found an idx empty or half-written.
    assert tailer.counters.index_not_ready > 0


# -- durable time -----------------------------------------------------------------------------------


def test_durable_at_is_when_cassandra_synced_not_the_writetime(cassandra_v7: CassandraNode) -> None:
    session = cassandra_v7.session()
    keyspace = create_keyspace(session, "durable")
    session.execute(f"CREATE TABLE {keyspace}.t (k int PRIMARY KEY, v int) WITH cdc = true")
    tailer = CdcRawTailer(cassandra_v7.cdc_raw_dir, "n", keyspace_registry(session, keyspace))
    follow(tailer, lambda: True, lambda batch: None, timeout=120)
    three_hours_ago = int((time.time() - 3 * 3600) * 1_000_000)
    before = time.time()
    session.execute(f"INSERT INTO {keyspace}.t (k, v) VALUES (1, 1) USING TIMESTAMP {three_hours_ago}")
    after = time.time()
    found: list[SourceBatch] = []
    follow(
        tailer,
        lambda: bool(found),
        lambda batch: found.append(batch) if keys_of(batch.events, keyspace) else None,
    )
    (batch,) = found
    (event,) = [e for e in batch.events if e.keyspace == keyspace]
    assert event.max_timestamp == three_hours_ago
    assert batch.durable_at is not None
    # Synced after the write was sent (mtime granularity aside) and within a few sync periods of it.
    assert before - 0.05 <= batch.durable_at <= after + 5.0
    assert batch.durable_at - event.max_timestamp / 1e6 > 3 * 3600 - 60
    assert tailer.unread_durable_at() is None  # everything durable was read
