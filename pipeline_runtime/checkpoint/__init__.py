"""Sink-independent checkpoint logic: restart positions and the segment-cleanup rule.

The checkpoint writes themselves live inside each sink's transaction (see
``pipeline_runtime.sinks``); this package only decides from their answers.
"""

from pipeline_runtime.checkpoint.cleanup import Decision, SegmentStatus, Verdict, backlog_degraded, decide
from pipeline_runtime.checkpoint.positions import is_past, lowest_committed

__all__ = ["Decision", "SegmentStatus", "Verdict", "backlog_degraded", "decide", "is_past", "lowest_committed"]
