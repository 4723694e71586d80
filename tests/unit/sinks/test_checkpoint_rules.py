"""Restart positions and the segment-cleanup rule."""

from __future__ import annotations

from pipeline_runtime.checkpoint import SegmentStatus, Verdict, backlog_degraded, decide, lowest_committed
from pipeline_runtime.events import Position


def test_lowest_committed_over_sinks() -> None:
    per_sink = {
        "pg": {"a": Position(5, 10), "b": Position(3, 0)},
        "ch": {"a": Position(4, 99), "b": Position(3, 1)},
        "late": {"a": Position(9, 0)},
    }
    assert lowest_committed(per_sink) == {"a": Position(4, 99), "b": None}


def test_segment_deleted_only_when_completed_and_all_sinks_past() -> None:
    segment = SegmentStatus(segment_id=7, end_offset=1000, completed=True)
    assert decide(segment, {"pg": Position(7, 1000), "ch": Position(8, 0)}).verdict is Verdict.DELETE
    held = decide(segment, {"pg": Position(7, 999), "ch": Position(8, 0)})
    assert held.verdict is Verdict.KEEP_UNCOMMITTED and held.behind == ("pg",)
    assert decide(segment, {"pg": None}).verdict is Verdict.KEEP_UNCOMMITTED
    open_segment = SegmentStatus(segment_id=7, end_offset=1000, completed=False)
    assert decide(open_segment, {"pg": Position(9, 0)}).verdict is Verdict.KEEP_OPEN
    assert decide(segment, {}).verdict is Verdict.KEEP_UNCOMMITTED


def test_backlog_degraded_threshold() -> None:
    assert not backlog_degraded(79, 100)
    assert backlog_degraded(80, 100)
