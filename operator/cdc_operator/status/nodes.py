"""The state of one Cassandra node's runtime, judged from its own report."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum

from pipeline_runtime.config.status import NodeStatus


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
