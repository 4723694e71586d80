"""What happens to a runtime whose Cassandra pod went away: the scale-down policy.

A Cassandra pod disappears for two reasons that look alike from outside: a
restart (the StatefulSet recreates it under the same name within minutes) and a
scale-down or decommission (it never comes back, but its PVC and the cdc_raw
segments on it stay). Deleting the runtime at once would lose neither data nor
positions (checkpoints live in the sinks), but it would strand the backlog of
a decommissioned node until someone brings the pod back. So:

1. When the pod is gone, the operator stamps the runtime Deployment with
   ``headrace.io/cassandra-pod-gone-since`` and keeps it. A runtime that is
   still running keeps draining cdc_raw (its affinity only constrains
   scheduling).
2. If the pod comes back, the stamp is removed and nothing else changes.
3. The Deployment is deleted once its runtime reports, after the stamp, an
   empty cdc_raw (drained), or when the drain timeout has passed (operator
   setting ``HEADRACE_DRAIN_TIMEOUT_SECONDS``, default one hour; a paused
   pipeline cannot drain and waits for it). Its ``status.nodes`` entry is
   removed with it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from pipeline_runtime.config.status import NodeStatus


class Action(StrEnum):
    KEEP = "keep"
    MARK_GONE = "mark-gone"
    UNMARK = "unmark"
    DELETE = "delete"


@dataclass(frozen=True)
class RuntimeDeployment:
    """An existing runtime Deployment, as far as the policy cares."""

    name: str
    cassandra_pod: str
    gone_since: datetime | None


def decide(
    deployment: RuntimeDeployment,
    live_pods: Sequence[str],
    nodes: Mapping[str, NodeStatus],
    now: datetime,
    drain_timeout: timedelta,
    *,
    present_pods: Collection[str] = (),
) -> Action:
    """The next step for one Deployment.

    ``present_pods``: pods that still exist, terminating ones included. A pod
    is gone only once its object is: while it terminates, Cassandra may still
    sync CDC data (its shutdown writes the last idx), so a drain cannot start.
    """
    if deployment.cassandra_pod in live_pods:
        return Action.UNMARK if deployment.gone_since is not None else Action.KEEP
    if deployment.gone_since is None:
        return Action.KEEP if deployment.cassandra_pod in present_pods else Action.MARK_GONE
    if now - deployment.gone_since >= drain_timeout:
        return Action.DELETE
    if deployment.cassandra_pod in present_pods:
        return Action.KEEP
    report = nodes.get(deployment.cassandra_pod)
    if report is not None and report.last_report_time is not None and report.last_report_time > deployment.gone_since:
        return Action.DELETE if report.left_to_drain == 0 else Action.KEEP
    return Action.KEEP
