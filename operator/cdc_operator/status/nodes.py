"""The state of one Cassandra node's runtime, judged from its own report."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from pipeline_runtime.config.status import Condition, ConditionType, NodeStatus

#: The reason of the Ready condition while spec.paused holds (status/assess.py).
PAUSED = "Paused"


class NodeState(StrEnum):
    STARTING = "no report yet"
    ROLLING = "running an older config"
    SILENT = "not reporting"
    FAILING = "reporting an error"
    READY = "ready"
    NO_DATA = "no data volume"


def node_state(report: NodeStatus | None, config_hash: str | None, now: datetime, stale_after: timedelta) -> NodeState:
    """STARTING until the first report; a report older than ``stale_after`` means the runtime stopped."""
    if report is None or report.last_report_time is None:
        return NodeState.STARTING
    reported = report.last_report_time
    if reported.tzinfo is None:
        # Kubernetes timestamps are UTC; a runtime that forgot the zone still meant UTC.
        reported = reported.replace(tzinfo=UTC)
    if now - reported > stale_after:
        return NodeState.SILENT
    if report.config_hash and config_hash and report.config_hash != config_hash:
        return NodeState.ROLLING
    if report.last_error or not all(s.healthy for s in report.sinks.values()):
        return NodeState.FAILING
    return NodeState.READY


def reports_in_force(
    paused: bool, previous: Sequence[Condition], nodes: Mapping[str, NodeStatus]
) -> dict[str, NodeStatus]:
    """The runtimes' reports that describe the present.

    None while the pipeline is paused (its runtimes are scaled to zero: their last lag, events/s
    and readiness are history), and none at the first pass after a pause is lifted (a report from
    before the pause must not make a runtime that has not started yet count as ready).
    """
    was_paused = any(c.type == ConditionType.READY and c.reason == PAUSED for c in previous)
    return {} if paused or was_paused else dict(nodes)
