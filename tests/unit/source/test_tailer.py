"""Following cdc_raw: growth of the durable offset, COMPLETED, restart from a position, idx races."""

from __future__ import annotations

import asyncio
from pathlib import Path

from pipeline_runtime.events import Position
from pipeline_runtime.source.cdc_index import IndexState, parse_index
from pipeline_runtime.source.commitlog.segment import SegmentReader
from pipeline_runtime.source.tailer import (
    CdcRawSource,
    CdcRawTailer,
    IndexStatus,
    SegmentInfo,
    TailerSettings,
    unread_bytes,
)
from tests.unit.source.fixture_data import copy_recording, drain, events_of, registry


def test_parse_index() -> None:
    assert parse_index("1234") == IndexState(1234, False)
    assert parse_index("1234\nCOMPLETED") == IndexState(1234, True)
    assert parse_index("1234\nCOMP") == IndexState(1234, False)
    assert parse_index("") is None
    assert parse_index("x1") is None


def test_follows_the_idx_offset_and_completion(tmp_path: Path) -> None:
    folder = copy_recording("v7", tmp_path)
    (log,) = folder.glob("*.log")
    (idx,) = folder.glob("*.idx")
    ends = [e.end for e in SegmentReader(log).read()]
    idx.write_text(str(ends[50]))
    tailer = CdcRawTailer(folder, "n", registry("v7"), settings=TailerSettings(max_entries=7))
    first = drain(tailer)
    assert first[-1].position == Position(int(log.name.split("-")[2][:-4]), ends[50])
    assert sum(b.entries for b in first) == 51
    assert tailer.poll() is None
    idx.write_text(str(ends[-1]) + "\nCOMPLETED")
    rest = drain(tailer)
    assert sum(b.entries for b in rest) == len(ends) - 51
    assert rest[-1].completed_segment is not None and rest[-1].events == []
    events = [e for b in first + rest for e in b.events if e.keyspace == "fx"]
    assert len(events) == len([e for e in events_of("v7") if e.keyspace == "fx"])
    assert tailer.poll() is None


def test_restart_from_a_committed_position_skips_what_was_delivered(tmp_path: Path) -> None:
    folder = copy_recording("v8", tmp_path)
    everything = [e for b in drain(CdcRawTailer(folder, "n", registry("v8"))) for e in b.events]
    middle = everything[len(everything) // 2].source.position
    resumed = [e for b in drain(CdcRawTailer(folder, "n", registry("v8"), start=middle)) for e in b.events]
    assert resumed == [e for e in everything if e.source.position > middle]
    assert resumed


def test_segments_without_idx_are_skipped_once_a_later_one_has_data(tmp_path: Path) -> None:
    folder = copy_recording("v7", tmp_path)
    (log,) = folder.glob("*.log")
    segment_id = int(log.name.split("-")[2][:-4])
    (folder / f"CommitLog-7-{segment_id - 1}.log").write_bytes(bytes(64))
    tailer = CdcRawTailer(folder, "n", registry("v7"))
    events = [e for b in drain(tailer) for e in b.events]
    assert events and {e.source.position.segment_id for e in events} == {segment_id}
    assert tailer.counters.segments_without_cdc == 1  # passed over on purpose, and counted


async def test_async_source_yields_batches_then_heartbeats(tmp_path: Path) -> None:
    folder = copy_recording("v7-lz4", tmp_path)
    source = CdcRawSource(folder, "n", registry("v7-lz4"), TailerSettings(poll_interval=0.01), idle_heartbeat=0.05)
    seen = []
    async with asyncio.timeout(10):
        async for batch in source.read(None):
            seen.append(batch)
            if not batch.events and batch.entries == 0:
                break
    assert sum(len(b.events) for b in seen) == len(events_of("v7-lz4"))
    assert seen[-1].position == seen[-2].position
    assert [s.segment_id for s in source.backlog()] == [seen[0].position.segment_id if seen[0].position else 0]
    assert source.schema("fx", "ops").name == "ops"


async def test_source_counts_accumulate_over_every_read(tmp_path: Path) -> None:
    """The runner turns these into metrics: they must not restart from zero when it calls ``read`` again."""
    folder = copy_recording("v7", tmp_path)
    source = CdcRawSource(folder, "n", registry("v7"), TailerSettings(poll_interval=0.01), idle_heartbeat=0.05)

    async def read_once() -> None:
        async with asyncio.timeout(10):
            async for batch in source.read(None):
                if not batch.events and batch.entries == 0 and batch.completed_segment is None:
                    return

    await read_once()
    once = dict(source.decode_stats.skipped)
    assert once and all(count > 0 for count in once.values())  # counter-table updates, walked and not reported
    await read_once()
    assert source.decode_stats.skipped == {reason: 2 * count for reason, count in once.items()}
    assert source.tailer is not None and source.tailer.stats is source.decode_stats


def _segment(segment_id: int, durable: int, status: IndexStatus = IndexStatus.READ, size: int = 1 << 20) -> SegmentInfo:
    return SegmentInfo(
        segment_id, Path(f"{segment_id}.log"), Path(f"{segment_id}_cdc.idx"), durable, False, size, status
    )


def test_unread_bytes_count_cdc_data_past_the_committed_position_only() -> None:
    backlog = [
        _segment(1, 900),  # committed past: nothing left
        _segment(2, 700),  # committed up to 300: 400 left
        _segment(3, 250),  # not started: all 250
        _segment(4, 0, IndexStatus.MISSING),  # no CDC data synced: nothing to read
        _segment(5, 0, IndexStatus.UNREADABLE, size=4096),  # unknown: counts whole
    ]
    assert unread_bytes(backlog, Position(2, 300)) == 400 + 250 + 4096
    assert unread_bytes(backlog, None) == 900 + 700 + 250 + 4096
    assert unread_bytes([_segment(4, 0, IndexStatus.MISSING)], Position(3, 10)) == 0
