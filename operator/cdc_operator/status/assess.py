"""Decide phase and conditions from an ``Observation``.

Order of precedence, most severe first: Paused (the user asked), Failed (nothing
can run until the user changes the spec or another pipeline: invalid spec,
Cassandra pods another pipeline reads, an object the API server refuses, no data volume), Pending with Degraded
True (a Secret or the Cassandra workload does not exist yet: it starts by itself
once it does), Degraded (changes flow but something needs attention, a failing
snapshot included), Pending (not every runtime reports yet), Snapshotting (every runtime reports and one still reads
what its tables held), Running.

Ready means every selected Cassandra pod has a runtime that reports, on the
current configuration, without errors. Degraded and Ready can both be True:
a lagging pipeline is running but needs attention. Each message names the
object and the field to fix or the command to look further.
"""

from __future__ import annotations

from dataclasses import dataclass

from cdc_operator.status.conditions import Verdict, conditions, false, true
from cdc_operator.status.nodes import PAUSED, NodeState, node_state
from cdc_operator.status.observation import Observation
from pipeline_runtime.config.status import ConditionType, NodeStatus, Phase, PipelineStatus, TableSnapshotStatus
from pipeline_runtime.config.status import SinkStatus as SinkSummary


@dataclass(frozen=True)
class _Issue:
    reason: str
    message: str


def assess(seen: Observation) -> PipelineStatus:
    """The operator's part of ``status`` (everything but ``nodes``)."""
    phase, verdicts = _decide(seen)
    current = _current(seen)
    verdicts[ConditionType.DEAD_LETTERS] = _dead_letters(seen)
    lags = [n.lag_seconds for n in current if n.lag_seconds is not None]
    ready = sum(1 for p in seen.pods if _state(seen, p) is NodeState.READY)
    return PipelineStatus(
        observed_generation=seen.generation,
        phase=phase,
        conditions=conditions(verdicts, seen.previous_conditions, seen.generation, seen.now),
        ready_nodes=f"{ready}/{len(seen.pods)}",
        max_lag_seconds=max(lags) if lags else None,
        events_per_second=round(sum(n.events_per_second for n in current), 3),
        dead_letters=sum(n.dead_letters for n in seen.nodes.values()),
        sinks=_sinks(seen),
        snapshot=snapshot_summary(current),
        config_hash=seen.config_hash,
    )


def _current(seen: Observation) -> list[NodeStatus]:
    """The reports of the runtimes of the selected pods (a removed pod's draining runtime not included)."""
    return [seen.nodes[p] for p in seen.pods if p in seen.nodes]


def snapshot_summary(nodes: list[NodeStatus]) -> str | None:
    """The snapshot over the nodes, for ``kubectl get``: '37% (1/3 tables)', 'done', or None when none runs.

    The share is token ranges written over all ranges the nodes read; a table counts as done when every
    node reporting it says done.
    """
    tables: dict[str, list[TableSnapshotStatus]] = {}
    for node in nodes:
        for table, progress in node.snapshot.items():
            tables.setdefault(table, []).append(progress)
    if not tables:
        return None
    done_tables = sum(1 for reports in tables.values() if all(r.state == "done" for r in reports))
    if done_tables == len(tables):
        return "done"
    done = sum(r.ranges_done for reports in tables.values() for r in reports)
    total = sum(r.ranges_total for reports in tables.values() for r in reports)
    share = f"{100 * done // total}%" if total else "0%"
    return f"{share} ({done_tables}/{len(tables)} tables)"


def _snapshotting(nodes: list[NodeStatus]) -> bool:
    return any(p.state in ("pending", "running") for node in nodes for p in node.snapshot.values())


def _dead_letters(seen: Observation) -> Verdict:
    """True while any runtime's dead-letter file holds events: rows a sink rejected are not in it."""
    holding = {pod: node for pod, node in sorted(seen.nodes.items()) if node.dead_letters}
    if not holding:
        return false("NoDeadLetters", "no sink rejected any row")
    where = ", ".join(
        f"{node.dead_letters} on {pod} in {node.dead_letter_file or 'its dead-letter file'}"
        for pod, node in holding.items()
    )
    total = sum(node.dead_letters for node in holding.values())
    return true(
        "EventsDeadLettered",
        f"{total} events were rejected by a sink and are not in it: {where}. Each line names the sink, table, "
        "reason and source position; fix the cause, replay or discard them, then remove the file",
    )


def _decide(seen: Observation) -> tuple[Phase, dict[ConditionType, Verdict]]:
    if seen.spec is None:
        return _failed("InvalidSpec", f"the spec is invalid, fix it and apply again: {seen.invalid_spec}")
    if seen.spec.paused:
        message = (
            "spec.paused is true: the runtimes are scaled to zero; set it to false to resume. Cassandra keeps "
            "writing cdc_raw meanwhile and rejects writes to CDC tables once it reaches cdc_total_space"
        )
        return Phase.PAUSED, {
            ConditionType.READY: false(PAUSED, message),
            ConditionType.PROGRESSING: false(PAUSED, message),
            ConditionType.DEGRADED: false(PAUSED, message),
        }
    fatal = _fatal(seen)
    if fatal is not None:
        return _failed(fatal.reason, fatal.message)
    missing = _missing(seen)
    if missing is not None:
        return Phase.PENDING, {
            ConditionType.READY: false(missing.reason, missing.message),
            ConditionType.PROGRESSING: false(missing.reason, missing.message),
            ConditionType.DEGRADED: true(missing.reason, missing.message),
        }
    if not seen.pods:
        message = (
            f"no live Cassandra pod matches {seen.source_description} in namespace {seen.namespace}; "
            "check spec.source.cassandra and the pods' labels"
        )
        return Phase.PENDING, {
            ConditionType.READY: false("NoCassandraPods", message),
            ConditionType.PROGRESSING: false("NoCassandraPods", message),
            ConditionType.DEGRADED: false("NoCassandraPods", message),
        }
    return _running(seen)


def _failed(reason: str, message: str) -> tuple[Phase, dict[ConditionType, Verdict]]:
    return Phase.FAILED, {
        ConditionType.READY: false(reason, message),
        ConditionType.PROGRESSING: false(reason, message),
        ConditionType.DEGRADED: true(reason, message),
    }


def _fatal(seen: Observation) -> _Issue | None:
    """What stops the pipeline until the user changes it or another pipeline."""
    if seen.read_elsewhere:
        return _Issue("CdcRawShared", _shared_message(seen))
    if seen.apply_rejected is not None:
        return _Issue(
            "ApplyRejected",
            f"the API server refused an object made from this spec: {seen.apply_rejected}; fix the field it "
            "names (spec.runtime is copied into each runtime Deployment) and apply again",
        )
    if seen.pods and len(seen.pods_without_data) == len(seen.pods):
        return _Issue("DataVolumeNotFound", _no_data_message(seen))
    return None


def _missing(seen: Observation) -> _Issue | None:
    """An object the pipeline needs that does not exist yet: it starts by itself once it does (Pending).

    With GitOps the Secret or the Cassandra workload is often applied after the pipeline; a phase
    of Failed would read as terminal. Degraded stays True so alerts still fire while it lasts.
    """
    if seen.source_problem:
        return _Issue("CassandraWorkloadNotFound", seen.source_problem)
    if seen.missing_secrets:
        listed = ", ".join(seen.missing_secrets)
        return _Issue(
            "SecretMissing",
            f"the spec references Secret keys that do not exist in namespace {seen.namespace}: {listed}; "
            "create them (kubectl create secret generic NAME --from-literal=KEY=...) or fix the references; "
            "the pipeline starts by itself once they exist",
        )
    return None


def _shared_message(seen: Observation) -> str:
    pods = ", ".join(sorted(seen.read_elsewhere))
    owners = sorted(set(seen.read_elsewhere.values()))
    return (
        f"Cassandra pods {pods} are already read by pipeline {', '.join(owners)} (created earlier). Each pipeline "
        "deletes the cdc_raw segments its own sinks committed, so two pipelines on one pod would lose data: no "
        f"runtime runs for this one. Add its sinks to {owners[0]} (sinks[].tables selects tables per sink), select "
        "other Cassandra pods, or delete one of the two pipelines"
    )


def _no_data_message(seen: Observation) -> str:
    volume = seen.spec.source.cassandra.data_volume if seen.spec else "?"
    return (
        f"Cassandra pods {', '.join(seen.pods_without_data)} have no PersistentVolumeClaim volume named {volume}; "
        "set spec.source.cassandra.dataVolume to the volume that holds cdc_raw"
    )


def _running(seen: Observation) -> tuple[Phase, dict[ConditionType, Verdict]]:
    issues = _issues(seen)
    waiting = [p for p in seen.pods if _state(seen, p) in (NodeState.STARTING, NodeState.ROLLING)]
    ready = [p for p in seen.pods if _state(seen, p) is NodeState.READY]
    verdicts = {
        ConditionType.READY: (
            true("AllRuntimesReady", f"{len(ready)}/{len(seen.pods)} runtimes report without errors")
            if len(ready) == len(seen.pods)
            else false("RuntimesNotReady", _not_ready_message(seen, ready))
        ),
        ConditionType.PROGRESSING: _progressing(seen, waiting),
        ConditionType.DEGRADED: (
            true(issues[0].reason, "; ".join(i.message for i in issues))
            if issues
            else false("AsExpected", "no lag, backlog or sink problem")
        ),
    }
    if issues:
        phase = Phase.DEGRADED
    elif len(ready) < len(seen.pods):
        phase = Phase.PENDING
    elif _snapshotting(_current(seen)):
        phase = Phase.SNAPSHOTTING
    else:
        phase = Phase.RUNNING
    return phase, verdicts


def _state(seen: Observation, pod: str) -> NodeState:
    if pod in seen.pods_without_data:
        return NodeState.NO_DATA
    return node_state(seen.nodes.get(pod), seen.config_hash, seen.now, seen.thresholds.report_stale_after)


def _not_ready_message(seen: Observation, ready: list[str]) -> str:
    others = [p for p in seen.pods if p not in ready]
    states = ", ".join(f"{p} ({_state(seen, p).value})" for p in others)
    return f"{len(ready)}/{len(seen.pods)} runtimes ready; waiting for {states}"


def _progressing(seen: Observation, waiting: list[str]) -> Verdict:
    parts = []
    if waiting:
        parts.append(f"runtimes starting or rolling to config {seen.config_hash}: {', '.join(waiting)}")
    for pod, deployment in sorted(seen.draining.items()):
        left = seen.nodes[pod].left_to_drain if pod in seen.nodes else 0
        parts.append(f"Deployment {deployment} drains {left} bytes of CDC data left by removed pod {pod}")
    if parts:
        return true("Reconciling" if waiting else "Draining", "; ".join(parts))
    return false("Reconciled", f"every runtime runs config {seen.config_hash}")


def _issues(seen: Observation) -> list[_Issue]:
    """Problems that make the pipeline Degraded, in the order the user should look at them."""
    assert seen.spec is not None
    issues: list[_Issue] = []
    if seen.pods_without_data:
        issues.append(_Issue("DataVolumeNotFound", _no_data_message(seen)))
    max_lag = seen.spec.runtime.max_lag_seconds
    share = seen.thresholds.cdc_raw_share_warning
    for pod in seen.pods:
        node = seen.nodes.get(pod)
        deployment = seen.deployments.get(pod, pod)
        state = _state(seen, pod)
        problem = seen.runtime_problems.get(pod)
        if problem is not None and state is not NodeState.READY:
            issues.append(
                _Issue(
                    "RuntimePodFailing",
                    f"the runtime of {pod} does not run: {problem}; "
                    f"see kubectl -n {seen.namespace} describe deployment/{deployment} and its pods",
                )
            )
        if state is NodeState.SILENT and node is not None:
            issues.append(
                _Issue(
                    "RuntimeNotReporting",
                    f"runtime of {pod} last reported at {node.last_report_time}; "
                    f"check kubectl -n {seen.namespace} logs deployment/{deployment}",
                )
            )
        if node is None:
            continue
        for sink, health in sorted(node.sinks.items()):
            if not health.healthy:
                detail = f": {node.last_error}" if node.last_error else ""
                issues.append(
                    _Issue(
                        "SinkUnreachable",
                        f"sink {sink} fails on {pod}{detail}; check the sink server and its connectionSecret",
                    )
                )
        if node.last_error and all(h.healthy for h in node.sinks.values()):
            issues.append(
                _Issue(
                    "RuntimeError",
                    f"runtime of {pod} reports: {node.last_error}; "
                    f"see kubectl -n {seen.namespace} logs deployment/{deployment}",
                )
            )
        for table, progress in sorted(node.snapshot.items()):
            if progress.state == "failed":
                issues.append(
                    _Issue(
                        "SnapshotFailed",
                        f"the snapshot of {table} on {pod} fails: {progress.last_error or 'no detail'}; the runtime "
                        "retries with backoff from its last written page. Check Cassandra on that node (nodetool "
                        "status, read timeouts in its log), lower spec.source.snapshot.rowsPerSecond or fetchSize, "
                        "or remove a dropped table from spec.source.tables",
                    )
                )
        if node.cdc_raw_share > share:
            issues.append(
                _Issue(
                    "CdcRawNearlyFull",
                    f"cdc_raw on {pod} holds {node.cdc_raw_bytes} bytes, {node.cdc_raw_share:.0%} of cdc_total_space; "
                    "Cassandra rejects writes to CDC tables at 100%: fix the sinks above or raise cdc_total_space",
                )
            )
        if node.lag_seconds is not None and node.lag_seconds > max_lag:
            issues.append(
                _Issue(
                    "LagOverThreshold",
                    f"{pod} lags {node.lag_seconds:.0f}s behind (spec.runtime.maxLagSeconds is {max_lag}); "
                    "check sink throughput (sinks[].batchSize) and the runtime's CPU",
                )
            )
    order = [
        "SinkUnreachable",
        "CdcRawNearlyFull",
        "RuntimeError",
        "RuntimeNotReporting",
        "SnapshotFailed",
        "LagOverThreshold",
    ]
    return sorted(issues, key=lambda i: order.index(i.reason) if i.reason in order else -1)


def _sinks(seen: Observation) -> dict[str, SinkSummary]:
    """Aggregate each sink over the current nodes: healthy everywhere, oldest last commit, total rows."""
    if seen.spec is None:
        return {}
    summary = {}
    reports = _current(seen)
    for sink in seen.spec.sinks:
        views = [r.sinks[sink.name] for r in reports if sink.name in r.sinks]
        commits = [v.last_commit_time for v in views if v.last_commit_time is not None]
        if not all(v.healthy for v in views):
            healthy: bool | None = False
        else:  # unknown until every selected pod's runtime has reported on the sink
            healthy = True if views and len(views) == len(seen.pods) else None
        summary[sink.name] = SinkSummary(
            healthy=healthy,
            last_commit_time=min(commits) if commits and len(commits) == len(views) else None,
            rows_written=sum(v.rows_written for v in views),
        )
    return summary
