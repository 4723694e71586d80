"""The source's rules for cdc_raw files: idx mid-rewrite, retryable errors, backlog, reclaimable segments, durable time.

Pure logic on files written here or copied from the recordings; the same
behaviour against a real Cassandra is in tests/integration/source/test_cdc_raw_live.py.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path

import pytest

from pipeline_runtime.checkpoint.cleanup import SegmentStatus, Verdict, decide
from pipeline_runtime.errors import DecodeError, SchemaError, SegmentCorruptError, SegmentHeaderError
from pipeline_runtime.events import ChangeEvent, Position
from pipeline_runtime.pipeline.cleanup import consumed, delete_segments
from pipeline_runtime.source.cdc_index import IndexPending, IndexState, probe_index
from pipeline_runtime.source.commitlog.descriptor import crc_of_ints
from pipeline_runtime.source.commitlog.segment import SegmentReader
from pipeline_runtime.source.errors import CdcRawUnavailableError, IndexFileError, MutationDecodeError
from pipeline_runtime.source.orphans import OrphanFacts, holds_no_entries, may_reclaim
from pipeline_runtime.source.schema.driver import SchemaUnavailableError
from pipeline_runtime.source.schema.registry import SchemaRegistry
from pipeline_runtime.source.schema.rows import SchemaRows
from pipeline_runtime.source.tailer import CdcRawSource, CdcRawTailer, IndexStatus, SegmentInfo, TailerSettings
from tests.unit.source.fixture_data import FIXTURES, copy_recording, drain, events_of, registry


def header(segment_id: int, version: int = 7, params: bytes = b"{}") -> bytes:
    """A segment header as ``CommitLogDescriptor.writeHeader`` writes it."""
    crc = zlib.crc32(params, crc_of_ints(version, segment_id, segment_id >> 32, len(params)))
    return struct.pack(">iqH", version, segment_id, len(params)) + params + struct.pack(">I", crc)


def leftover(segment_id: int, size: int = 4096) -> bytes:
    """What a graceful stop leaves in cdc_raw (measured on 5.0.8): header, one empty sync section, zeros."""
    head = header(segment_id)
    marker = struct.pack(">iI", len(head) + 8, crc_of_ints(segment_id, segment_id >> 32, len(head)))
    return (head + marker).ljust(size, b"\0")


def recording_id(folder: Path) -> int:
    (log,) = folder.glob("*.log")
    return int(log.name.split("-")[2][:-4])


# -- _cdc.idx -------------------------------------------------------------------------------------


def test_probe_index_tells_missing_pending_and_read_apart(tmp_path: Path) -> None:
    idx = tmp_path / "CommitLog-7-1_cdc.idx"
    assert probe_index(idx) is None
    idx.write_text("")
    assert probe_index(idx) == IndexPending("")
    idx.write_text("12\nCOMPLETED")
    os.utime(idx, (1_700_000_000.25, 1_700_000_000.25))
    assert probe_index(idx) == IndexState(12, True, 1_700_000_000.25)


def test_an_empty_idx_keeps_the_last_offset_and_never_fails(tmp_path: Path) -> None:
    folder = copy_recording("v7", tmp_path)
    (log,) = folder.glob("*.log")
    (idx,) = folder.glob("*.idx")
    ends = [e.end for e in SegmentReader(log).read()]
    idx.write_text(str(ends[50]))
    tailer = CdcRawTailer(folder, "n", registry("v7"))
    first = drain(tailer)
    assert sum(b.entries for b in first) == 51
    idx.write_text("")  # Cassandra truncated it and has not written the offset yet
    for _ in range(30):  # far more than the old 20 bounded retries: still no error
        assert tailer.poll() is None
    assert tailer.counters.index_not_ready == 30
    idx.write_text(str(ends[-1]) + "\nCOMPLETED")
    rest = drain(tailer)
    assert sum(b.entries for b in rest) == len(ends) - 51
    assert rest[-1].completed_segment is not None


def test_an_unreadable_idx_is_a_retryable_error_and_damage_is_not(tmp_path: Path) -> None:
    folder = copy_recording("v7", tmp_path)
    (idx,) = folder.glob("*.idx")
    idx.unlink()
    idx.mkdir()  # exists, but reading it fails with an OSError
    with pytest.raises(IndexFileError) as caught:
        CdcRawTailer(folder, "n", registry("v7")).poll()
    assert caught.value.retryable is True
    for fatal in (
        SegmentCorruptError("s", 0, "crc"),
        SegmentHeaderError("s", 0, "crc"),
        MutationDecodeError("s", 0, "body"),
        DecodeError("body"),
        SchemaError("table"),
    ):
        assert fatal.retryable is False, fatal


def test_an_unlistable_cdc_raw_is_a_retryable_error(tmp_path: Path) -> None:
    not_a_folder = tmp_path / "cdc_raw"
    not_a_folder.write_text("")
    with pytest.raises(CdcRawUnavailableError) as caught:
        CdcRawTailer(not_a_folder, "n", registry("v7")).poll()
    assert caught.value.retryable is True
    assert CdcRawTailer(tmp_path / "missing", "n", registry("v7")).poll() is None


# -- backlog --------------------------------------------------------------------------------------


def test_backlog_counts_every_segment_whatever_its_idx_says(tmp_path: Path) -> None:
    folder = copy_recording("v7", tmp_path)
    base = recording_id(folder)
    (folder / f"CommitLog-7-{base + 1}.log").write_bytes(leftover(base + 1, 8192))
    (folder / f"CommitLog-7-{base + 1}_cdc.idx").write_text("")  # mid-rewrite
    (folder / f"CommitLog-7-{base + 2}.log").write_bytes(leftover(base + 2, 4096))  # no idx (the spare)
    backlog = CdcRawSource(folder, "n", registry("v7")).backlog()
    assert [s.segment_id for s in backlog] == [base, base + 1, base + 2]
    assert [s.index_status for s in backlog] == [IndexStatus.READ, IndexStatus.UNREADABLE, IndexStatus.MISSING]
    sizes = {p.name: p.stat().st_size for p in folder.iterdir()}
    assert backlog[0].size == sizes[backlog[0].log.name] + sizes[backlog[0].index.name]
    assert backlog[1].size == 8192 and backlog[2].size == 4096
    assert [s.completed for s in backlog] == [False, False, False]
    assert not any(s.reclaimable for s in backlog)


# -- reclaimable segments -------------------------------------------------------------------------


def test_leftover_segments_are_reclaimable_only_when_every_rule_holds(tmp_path: Path) -> None:
    cdc_raw = tmp_path / "cdc_raw"
    commitlog = tmp_path / "commitlog"
    cdc_raw.mkdir()
    commitlog.mkdir()
    newer = cdc_raw / "CommitLog-7-200.log"
    newer.write_bytes(leftover(200))
    (cdc_raw / "CommitLog-7-200_cdc.idx").write_text("28")
    left = cdc_raw / "CommitLog-7-100.log"
    left.write_bytes(leftover(100))
    source = CdcRawSource(cdc_raw, "n", registry("v7"), settle_seconds=0)

    def reclaimable() -> bool:
        return {s.segment_id: s for s in source.backlog()}[100].reclaimable

    assert reclaimable()
    os.link(left, commitlog / left.name)  # still in the commitlog directory: Cassandra may write it
    assert not reclaimable()
    (commitlog / left.name).unlink()
    idx = cdc_raw / "CommitLog-7-100_cdc.idx"
    idx.write_text("")  # an idx, even mid-rewrite: CDC data was synced in it
    assert not reclaimable()
    idx.unlink()
    newer.rename(cdc_raw / "CommitLog-7-50.log")  # no newer segment: Cassandra may not have moved on
    assert not reclaimable()
    (cdc_raw / "CommitLog-7-50.log").rename(newer)
    assert reclaimable()
    (cdc_raw / "CommitLog-7-200_cdc.idx").unlink()  # the newer one is only the spare: Cassandra may still write 100
    assert not reclaimable()
    (cdc_raw / "CommitLog-7-200_cdc.idx").write_text("28")
    assert reclaimable()
    # Its link count changed a moment ago (Cassandra may be cleaning it up itself): wait until it settles.
    assert not {s.segment_id: s for s in CdcRawSource(cdc_raw, "n", registry("v7")).backlog()}[100].reclaimable


def test_holds_no_entries_reads_the_segment(tmp_path: Path) -> None:
    path = tmp_path / "CommitLog-7-100.log"
    path.write_bytes(leftover(100))
    assert holds_no_entries(path, 100)
    assert not holds_no_entries(path, 101)  # the header names another segment
    path.write_bytes(b"")
    assert holds_no_entries(path, 100)  # a compressed spare has nothing written yet
    path.write_bytes(bytes(4096))
    assert holds_no_entries(path, 100)
    unsynced = bytearray(leftover(100))
    unsynced[200] = 1  # bytes past the end of data: a mutation written but not synced yet
    path.write_bytes(bytes(unsynced))
    assert not holds_no_entries(path, 100)
    path.write_bytes(b"\x01" + bytes(100))  # not a header: cannot prove anything
    assert not holds_no_entries(path, 100)
    folder = copy_recording("v7", tmp_path / "rec")
    (log,) = folder.glob("*.log")
    assert not holds_no_entries(log, recording_id(folder))  # real entries
    lz4 = copy_recording("v7-lz4", tmp_path / "lz4")
    (log,) = lz4.glob("*.log")
    assert not holds_no_entries(log, recording_id(lz4))


def test_may_reclaim_reads_the_file_last() -> None:
    reads: list[int] = []

    def empty() -> bool:
        reads.append(1)
        return True

    assert not may_reclaim(OrphanFacts(has_index=True, links=1, newer_segment=True), empty)
    assert not may_reclaim(OrphanFacts(has_index=False, links=2, newer_segment=True), empty)
    assert not may_reclaim(OrphanFacts(has_index=False, links=1, newer_segment=False), empty)
    assert not may_reclaim(OrphanFacts(has_index=False, links=1, newer_segment=True, settled=False), empty)
    assert reads == []
    assert may_reclaim(OrphanFacts(has_index=False, links=1, newer_segment=True), empty)
    assert not may_reclaim(OrphanFacts(has_index=False, links=1, newer_segment=True), lambda: False)


def test_cleanup_deletes_reclaimable_segments_without_any_commit(tmp_path: Path) -> None:
    assert decide(SegmentStatus(1, 0, False, reclaimable=True), {}).verdict is Verdict.DELETE
    assert decide(SegmentStatus(1, 0, False, reclaimable=True), {"pg": None}).verdict is Verdict.DELETE
    assert decide(SegmentStatus(1, 0, False), {"pg": Position(9, 9)}).verdict is Verdict.KEEP_OPEN
    assert decide(SegmentStatus(1, 100, True), {"pg": Position(1, 50)}).verdict is Verdict.KEEP_UNCOMMITTED
    cdc_raw = tmp_path / "cdc_raw"
    cdc_raw.mkdir()
    (cdc_raw / "CommitLog-7-100.log").write_bytes(leftover(100))
    (cdc_raw / "CommitLog-7-200.log").write_bytes(leftover(200))  # written by the running node
    (cdc_raw / "CommitLog-7-200_cdc.idx").write_text("28")
    (cdc_raw / "CommitLog-7-300.log").write_bytes(leftover(300))  # the spare of the running node
    backlog = CdcRawSource(cdc_raw, "n", registry("v7"), settle_seconds=0).backlog()
    chosen = consumed(backlog, {"pg": None})
    assert [s.segment_id for s in chosen] == [100]
    assert delete_segments(chosen) == 1
    assert sorted(p.name for p in cdc_raw.iterdir()) == [
        "CommitLog-7-200.log",
        "CommitLog-7-200_cdc.idx",
        "CommitLog-7-300.log",
    ]
    stale = SegmentInfo(5, cdc_raw / "CommitLog-7-5.log", cdc_raw / "CommitLog-7-5_cdc.idx", 0, False, 0)
    assert consumed([stale], {"pg": Position(9, 9)}) == []


# -- durable time ---------------------------------------------------------------------------------


def test_batches_carry_the_idx_mtime_of_the_read_that_covered_them(tmp_path: Path) -> None:
    folder = copy_recording("v7", tmp_path)
    (log,) = folder.glob("*.log")
    (idx,) = folder.glob("*.idx")
    ends = [e.end for e in SegmentReader(log).read()]
    synced_first, synced_last = 1_700_000_100.5, 1_700_000_200.5
    idx.write_text(str(ends[50]))
    os.utime(idx, (synced_first, synced_first))
    tailer = CdcRawTailer(folder, "n", registry("v7"), settings=TailerSettings(max_entries=10))
    assert tailer.unread_durable_at() == synced_first  # durable, nothing read yet
    batch = tailer.poll()
    assert batch is not None and batch.durable_at == synced_first
    assert tailer.unread_durable_at() == synced_first  # 41 entries of that sync still queued
    first = [batch, *drain(tailer)]
    assert {b.durable_at for b in first} == {synced_first}
    assert tailer.unread_durable_at() is None  # caught up
    idx.write_text(str(ends[-1]) + "\nCOMPLETED")
    os.utime(idx, (synced_last, synced_last))
    assert tailer.unread_durable_at() == synced_last
    rest = drain(tailer)
    assert {b.durable_at for b in rest if b.entries} == {synced_last}
    assert rest[-1].completed_segment is not None and rest[-1].durable_at is None


# -- retryable schema errors ----------------------------------------------------------------------


class FlakySchema:
    """``system_schema`` as a node that answers, then is unreachable, then answers again (the driver boundary)."""

    def __init__(self, partial: SchemaRows, full: SchemaRows) -> None:
        self.answers: list[SchemaRows | None] = [partial, None, full]

    def load(self) -> SchemaRows:
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if answer is None:
            raise SchemaUnavailableError("system_schema: node unreachable")
        return answer


def test_an_unreachable_schema_is_retryable_and_skips_no_entry(tmp_path: Path) -> None:
    folder = copy_recording("v7", tmp_path)
    full = SchemaRows.from_json(json.loads((FIXTURES / "v7" / "schema.json").read_text()))
    ops = {row["id"] for row in full.tables if row["keyspace_name"] == "fx" and row["table_name"] == "ops"}
    partial = SchemaRows(
        tables=[r for r in full.tables if r["id"] not in ops],
        views=full.views,
        columns=[r for r in full.columns if not (r["keyspace_name"] == "fx" and r["table_name"] == "ops")],
        dropped_columns=full.dropped_columns,
        types=full.types,
    )
    schema = SchemaRegistry(FlakySchema(partial, full), selector=lambda s: s.keyspace == "fx", min_refresh_interval=0)
    # One entry per poll, so the failing lookup is the first of its poll and the error surfaces
    # (later in a poll, the entries before it are delivered first and the error comes next time).
    tailer = CdcRawTailer(folder, "node-1", schema, settings=TailerSettings(max_entries=1))
    events: list[ChangeEvent] = []
    with pytest.raises(SchemaUnavailableError) as caught:
        while (batch := tailer.poll()) is not None:
            events.extend(batch.events)
    assert caught.value.retryable is True
    while (batch := tailer.poll()) is not None:  # the node answers again: the same tailer carries on
        events.extend(batch.events)
    assert events == events_of("v7")
