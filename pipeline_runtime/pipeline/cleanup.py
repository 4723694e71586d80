"""Deleting the cdc_raw segments every sink holds, by the checkpoint's rule.

The rule itself (COMPLETED and committed past its end by every sink, or proved
to hold nothing and to be written no more) lives in
``pipeline_runtime.checkpoint.cleanup``; this module applies it to the files.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from pipeline_runtime.checkpoint.cleanup import SegmentStatus, Verdict, decide
from pipeline_runtime.events import Position
from pipeline_runtime.source.tailer import SegmentInfo

log = logging.getLogger(__name__)


def consumed(segments: list[SegmentInfo], committed: Mapping[str, Position | None]) -> list[SegmentInfo]:
    """The segments that ``decide`` allows to delete, given each sink's committed position."""
    return [
        s
        for s in segments
        if decide(
            SegmentStatus(s.segment_id, s.durable_offset, s.completed, s.size, reclaimable=s.reclaimable), committed
        ).verdict
        is Verdict.DELETE
    ]


def delete_segments(segments: list[SegmentInfo]) -> int:
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
