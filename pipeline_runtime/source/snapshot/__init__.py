"""Snapshot reads through CQL: tables that already hold data, as change events (docs/snapshot.md)."""

from pipeline_runtime.source.snapshot.events import SnapshotConverter, snapshot_node
from pipeline_runtime.source.snapshot.ranges import MAX_TOKEN, MIN_TOKEN, TokenRange, split_ring
from pipeline_runtime.source.snapshot.reader import SnapshotPage, SnapshotReader, SnapshotReadError

__all__ = [
    "MAX_TOKEN",
    "MIN_TOKEN",
    "SnapshotConverter",
    "SnapshotPage",
    "SnapshotReadError",
    "SnapshotReader",
    "TokenRange",
    "snapshot_node",
    "split_ring",
]
