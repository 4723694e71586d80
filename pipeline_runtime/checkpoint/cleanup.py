"""When a cdc_raw segment may be deleted, and when the backlog turns Degraded.

The rule (README, 'How it works'; docs/runtime.md): a segment and its ``_cdc.idx`` go only when the idx says
COMPLETED (Cassandra will write no more into it) and every sink has
committed past the segment's end. The one exception is a segment the source
proved *reclaimable* (``pipeline_runtime.source.orphans``): no idx, no entry,
and no longer written by Cassandra, such as the spare segment every graceful
Cassandra stop leaves behind. It holds nothing any sink needs, so it goes
without waiting for a commit. Otherwise the segment stays and counts
towards the backlog; past a share of ``cdc_total_space`` the pipeline turns
Degraded, early enough for a human to act before Cassandra blocks writes.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from pipeline_runtime.checkpoint.positions import is_past
from pipeline_runtime.events import Position

#: Degraded when the backlog uses this share of cdc_total_space (Cassandra blocks writes at 100%).
DEGRADED_SHARE = 0.8


class Verdict(enum.StrEnum):
    DELETE = "delete"
    KEEP_OPEN = "keep-open"
    """The idx does not say COMPLETED yet."""
    KEEP_UNCOMMITTED = "keep-uncommitted"
    """At least one sink has not committed past the segment's end."""


@dataclass(frozen=True, slots=True)
class SegmentStatus:
    """What the watcher knows of one segment in cdc_raw."""

    segment_id: int
    end_offset: int
    """Offset of the end of its data, as the idx gives it."""
    completed: bool
    size_bytes: int = 0
    reclaimable: bool = False
    """Proved by the source to hold no entry and to be written no more (no idx, one link, a newer segment)."""


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    behind: tuple[str, ...] = ()
    """The sinks that hold the segment back."""


def decide(segment: SegmentStatus, committed: Mapping[str, Position | None]) -> Decision:
    """Delete a COMPLETED segment that every sink has committed past, or one proved reclaimable (it holds nothing)."""
    if segment.reclaimable:
        return Decision(Verdict.DELETE)
    if not segment.completed:
        return Decision(Verdict.KEEP_OPEN)
    behind = tuple(sorted(s for s, p in committed.items() if not is_past(p, segment.segment_id, segment.end_offset)))
    if behind or not committed:
        return Decision(Verdict.KEEP_UNCOMMITTED, behind)
    return Decision(Verdict.DELETE)


def backlog_share(backlog_bytes: int, cdc_total_space_bytes: int) -> float:
    """The share of cdc_total_space the kept segments use."""
    return backlog_bytes / cdc_total_space_bytes if cdc_total_space_bytes > 0 else 1.0


def backlog_degraded(backlog_bytes: int, cdc_total_space_bytes: int, threshold: float = DEGRADED_SHARE) -> bool:
    return backlog_share(backlog_bytes, cdc_total_space_bytes) >= threshold
