"""Which cdc_raw segments may be deleted, and deleting them.

A segment and its idx go only when the idx says COMPLETED (Cassandra will
write nothing more to it) and the position every sink has committed is at or
past the segment's durable end. Anything else stays: a stalled sink makes the
backlog grow, which the runtime reports, instead of losing data.
"""

from __future__ import annotations

import logging

from pipeline_runtime.events import Position
from pipeline_runtime.pipeline.protocols import SegmentFile

log = logging.getLogger(__name__)


def deletable(segments: list[SegmentFile], committed: Position | None) -> list[SegmentFile]:
    """The segments fully delivered to every sink (``committed`` is their lowest position)."""
    if committed is None:
        return []
    done = []
    for segment in segments:
        if not segment.completed:
            continue
        if segment.segment_id < committed.segment_id or (
            segment.segment_id == committed.segment_id and committed.offset >= segment.durable_offset
        ):
            done.append(segment)
    return done


def delete_segments(segments: list[SegmentFile]) -> int:
    """Delete the log, then the idx, of each segment; returns how many were removed.

    The log goes first: a crash in between leaves an idx without a log, which
    the source ignores, never a log without its COMPLETED idx.
    """
    removed = 0
    for segment in segments:
        try:
            segment.log.unlink(missing_ok=True)
            segment.index.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("cannot delete consumed segment", extra={"segment": segment.log.name, "error": str(exc)})
            continue
        removed += 1
    return removed
