"""Where a runtime restarts: the lowest committed position over its sinks.

Each sink keeps its own checkpoint per (pipeline, node). A runtime must not
skip anything any sink has not committed, so it restarts each node from the
minimum over the sinks; a sink with no checkpoint for the node forces a
start from the beginning of the oldest segment still in cdc_raw (None). The
sinks ahead of that point see some events again, which their idempotent
writes absorb.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from pipeline_runtime.events import Position


def lowest_committed(
    per_sink: Mapping[str, Mapping[str, Position]], nodes: Iterable[str] | None = None
) -> dict[str, Position | None]:
    """Per node: the smallest position committed by every sink, or None if a sink has none."""
    wanted = set(nodes) if nodes is not None else {n for positions in per_sink.values() for n in positions}
    out: dict[str, Position | None] = {}
    for node in sorted(wanted):
        found = [positions.get(node) for positions in per_sink.values()]
        out[node] = lowest(found) if found else None
    return out


def lowest(positions: Iterable[Position | None]) -> Position | None:
    """The smallest of ``positions``, or None if any is None (from the beginning). Needs at least one."""
    found = list(positions)
    return None if any(p is None for p in found) else min(p for p in found if p is not None)


def is_past(position: Position | None, segment_id: int, end_offset: int) -> bool:
    """Whether ``position`` lies at or beyond the end of that segment's data."""
    if position is None:
        return False
    return position.segment_id > segment_id or (position.segment_id == segment_id and position.offset >= end_offset)
