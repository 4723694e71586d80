"""Phase and conditions from what the operator observed (pure; time is a parameter)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cdc_operator import naming
from cdc_operator.handlers.reconcile import status_patch, with_offsets_reset, with_snapshot_request
from cdc_operator.handlers.reports import parse_report
from cdc_operator.status.assess import assess
from cdc_operator.status.nodes import reports_in_force
from cdc_operator.status.observation import Observation, Thresholds
from pydantic import ValidationError

from pipeline_runtime.config.model import PipelineSpec
from pipeline_runtime.config.status import (
    REPORT_KEY,
    ConditionStatus,
    ConditionType,
    NodeSinkStatus,
    NodeStatus,
    Phase,
    PipelineStatus,
    TableSnapshotStatus,
)

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
SPEC = PipelineSpec.model_validate(
    {
        "source": {"cassandra": {"podSelector": {"app": "cassandra"}}, "tables": [{"keyspace": "shop"}]},
        "sinks": [{"name": "pg", "type": "postgres", "connectionSecret": {"name": "s", "key": "k"}}],
        "runtime": {"maxLagSeconds": 30},
    }
)
PODS = ["cassandra-0", "cassandra-1"]


def report(**overrides: Any) -> NodeStatus:
    values: dict[str, Any] = {
        "last_report_time": NOW - timedelta(seconds=5),
        "lag_seconds": 1.5,
        "events_per_second": 100.0,
        "config_hash": "h1",
        "sinks": {"pg": NodeSinkStatus(healthy=True, rows_written=10, last_commit_time=NOW - timedelta(seconds=2))},
    }
    values.update(overrides)
    return NodeStatus(**values)


def observe(**overrides: Any) -> Observation:
    values: dict[str, Any] = {
        "namespace": "data",
        "generation": 3,
        "now": NOW,
        "spec": SPEC,
        "source_description": "pods with labels app=cassandra",
        "pods": PODS,
        "config_hash": "h1",
        "nodes": {p: report() for p in PODS},
    }
    values.update(overrides)
    return Observation(**values)


def condition(status: Any, kind: ConditionType) -> Any:
    return next(c for c in status.conditions if c.type == kind)


def test_all_reporting_is_running_and_ready() -> None:
    status = assess(observe())
    assert status.phase is Phase.RUNNING
    assert condition(status, ConditionType.READY).status is ConditionStatus.TRUE
    assert condition(status, ConditionType.DEGRADED).status is ConditionStatus.FALSE
    assert condition(status, ConditionType.PROGRESSING).status is ConditionStatus.FALSE
    assert status.ready_nodes == "2/2"
    assert status.events_per_second == 200.0
    assert status.max_lag_seconds == 1.5
    assert status.observed_generation == 3
    assert status.sinks["pg"].rows_written == 20


def test_no_reports_yet_is_pending_and_progressing() -> None:
    status = assess(observe(nodes={}))
    assert status.phase is Phase.PENDING
    assert condition(status, ConditionType.PROGRESSING).status is ConditionStatus.TRUE
    ready = condition(status, ConditionType.READY)
    assert ready.status is ConditionStatus.FALSE and "cassandra-0 (no report yet)" in ready.message
    assert status.ready_nodes == "0/2"


def test_lag_over_threshold_is_degraded_with_advice() -> None:
    status = assess(observe(nodes={"cassandra-0": report(lag_seconds=95.0), "cassandra-1": report()}))
    assert status.phase is Phase.DEGRADED
    degraded = condition(status, ConditionType.DEGRADED)
    assert degraded.status is ConditionStatus.TRUE and degraded.reason == "LagOverThreshold"
    assert "cassandra-0 lags 95s" in degraded.message and "maxLagSeconds is 30" in degraded.message
    assert condition(status, ConditionType.READY).status is ConditionStatus.TRUE
    assert status.max_lag_seconds == 95.0


def test_cdc_raw_nearly_full() -> None:
    status = assess(observe(nodes={"cassandra-0": report(cdc_raw_share=0.85, cdc_raw_bytes=3_500_000_000)}))
    degraded = condition(status, ConditionType.DEGRADED)
    assert degraded.reason == "CdcRawNearlyFull" and "85%" in degraded.message


def test_unreachable_sink_names_sink_and_error() -> None:
    failing = report(last_error="connection refused", sinks={"pg": NodeSinkStatus(healthy=False)})
    status = assess(observe(nodes={"cassandra-0": failing, "cassandra-1": report()}))
    assert status.phase is Phase.DEGRADED
    degraded = condition(status, ConditionType.DEGRADED)
    assert degraded.reason == "SinkUnreachable"
    assert "sink pg fails on cassandra-0: connection refused" in degraded.message
    assert condition(status, ConditionType.READY).status is ConditionStatus.FALSE
    assert status.sinks["pg"].healthy is False


def test_silent_runtime_is_degraded() -> None:
    old = report(last_report_time=NOW - timedelta(minutes=10))
    status = assess(observe(nodes={"cassandra-0": old, "cassandra-1": report()}))
    degraded = condition(status, ConditionType.DEGRADED)
    assert degraded.reason == "RuntimeNotReporting" and "logs deployment/cassandra-0" in degraded.message


def test_old_config_means_rolling() -> None:
    status = assess(observe(config_hash="h2"))
    assert status.phase is Phase.PENDING
    progressing = condition(status, ConditionType.PROGRESSING)
    assert progressing.reason == "Reconciling" and "h2" in progressing.message


def test_no_pods() -> None:
    status = assess(observe(pods=[], nodes={}))
    assert status.phase is Phase.PENDING
    ready = condition(status, ConditionType.READY)
    assert ready.reason == "NoCassandraPods" and "app=cassandra" in ready.message and "data" in ready.message
    assert status.ready_nodes == "0/0"


@pytest.mark.parametrize(
    ("overrides", "reason", "hint"),
    [
        ({"pods_without_data": PODS}, "DataVolumeNotFound", "dataVolume"),
        ({"read_elsewhere": {PODS[0]: "orders"}}, "CdcRawShared", f"{PODS[0]} are already read by pipeline orders"),
        ({"spec": None, "invalid_spec": "spec.sinks: too short"}, "InvalidSpec", "spec.sinks"),
    ],
)
def test_blocking_problems_fail(overrides: dict[str, Any], reason: str, hint: str) -> None:
    status = assess(observe(**overrides))
    assert status.phase is Phase.FAILED
    degraded = condition(status, ConditionType.DEGRADED)
    assert degraded.status is ConditionStatus.TRUE and degraded.reason == reason and hint in degraded.message
    assert condition(status, ConditionType.READY).status is ConditionStatus.FALSE


@pytest.mark.parametrize(
    ("overrides", "reason", "hint"),
    [
        ({"missing_secrets": ["shop-sinks/postgres-dsn"]}, "SecretMissing", "kubectl create secret"),
        ({"source_problem": "StatefulSet x does not exist"}, "CassandraWorkloadNotFound", "does not exist"),
    ],
)
def test_a_missing_object_is_pending_and_degraded_not_failed(overrides: dict[str, Any], reason: str, hint: str) -> None:
    """It recovers by itself once the object exists (GitOps often applies it after the pipeline)."""
    status = assess(observe(**overrides))
    assert status.phase is Phase.PENDING
    degraded = condition(status, ConditionType.DEGRADED)
    assert degraded.status is ConditionStatus.TRUE and degraded.reason == reason and hint in degraded.message
    ready = condition(status, ConditionType.READY)
    assert ready.status is ConditionStatus.FALSE and ready.reason == reason


def test_paused_wins() -> None:
    status = assess(observe(spec=SPEC.model_copy(update={"paused": True}), missing_secrets=["x"]))
    assert status.phase is Phase.PAUSED
    assert condition(status, ConditionType.READY).reason == "Paused"
    assert (
        "rejects writes to CDC tables once it reaches cdc_total_space" in condition(status, ConditionType.READY).message
    )


def test_reports_describe_the_present_neither_while_paused_nor_right_after() -> None:
    """Paused runtimes are scaled to zero: their last reports are history, also at the first pass after resume."""
    nodes = {pod: report() for pod in PODS}
    assert reports_in_force(False, [], nodes) == nodes
    paused_status = assess(observe(spec=SPEC.model_copy(update={"paused": True}), nodes={}))
    assert reports_in_force(True, paused_status.conditions, nodes) == {}
    assert paused_status.ready_nodes == f"0/{len(PODS)}" and paused_status.max_lag_seconds is None
    # The first pass after spec.paused turned false still sees the Paused condition: old reports do not count.
    assert reports_in_force(False, paused_status.conditions, nodes) == {}
    resumed = assess(observe(nodes={}, previous_conditions=paused_status.conditions))
    assert resumed.phase is Phase.PENDING and resumed.ready_nodes == f"0/{len(PODS)}"
    # From then on the runtimes' fresh reports count again.
    assert reports_in_force(False, resumed.conditions, nodes) == nodes


def test_transition_time_kept_while_status_holds() -> None:
    first = assess(observe())
    patient = Thresholds(report_stale_after=timedelta(hours=1))
    later = assess(observe(now=NOW + timedelta(minutes=5), previous_conditions=first.conditions, thresholds=patient))
    assert condition(later, ConditionType.READY).last_transition_time == NOW
    flipped = assess(observe(now=NOW + timedelta(minutes=5), nodes={}, previous_conditions=first.conditions))
    assert condition(flipped, ConditionType.READY).last_transition_time == NOW + timedelta(minutes=5)


def test_draining_runtime_shows_in_progressing() -> None:
    status = assess(
        observe(
            pods=["cassandra-0"],
            draining={"cassandra-1": "shop-cassandra-1"},
            nodes={"cassandra-0": report(), "cassandra-1": report(cdc_raw_bytes=4096)},
        )
    )
    progressing = condition(status, ConditionType.PROGRESSING)
    assert progressing.reason == "Draining" and "4096 bytes" in progressing.message
    assert status.ready_nodes == "1/1"


def test_dead_letters_raise_their_own_condition_with_count_and_file() -> None:
    letters = report(dead_letters=3, dead_letter_file="/var/lib/cassandra/headrace-dead-letters/shop.jsonl")
    status = assess(observe(nodes={"cassandra-0": letters, "cassandra-1": report(dead_letters=1)}))
    dead = condition(status, ConditionType.DEAD_LETTERS)
    assert dead.status is ConditionStatus.TRUE and dead.reason == "EventsDeadLettered"
    assert dead.message.startswith("4 events were rejected by a sink")
    assert "3 on cassandra-0 in /var/lib/cassandra/headrace-dead-letters/shop.jsonl" in dead.message
    assert "1 on cassandra-1" in dead.message
    assert status.dead_letters == 4
    assert status.phase is Phase.RUNNING  # changes still flow; the condition is what asks for attention


def test_no_dead_letters_is_a_false_condition() -> None:
    status = assess(observe())
    dead = condition(status, ConditionType.DEAD_LETTERS)
    assert (dead.status, dead.reason, status.dead_letters) == (ConditionStatus.FALSE, "NoDeadLetters", 0)


def snapshot_report(**tables: tuple[str, int, int]) -> NodeStatus:
    """A report whose snapshot holds ``table=(state, ranges done, ranges total)``."""
    progress = {
        name.replace("_", "."): TableSnapshotStatus(
            state=state, ranges_done=done, ranges_total=total, last_error="read timeout" if state == "failed" else None
        )
        for name, (state, done, total) in tables.items()
    }
    return report(snapshot=progress)


def test_a_snapshot_running_on_any_node_is_snapshotting_with_its_share_of_ranges() -> None:
    nodes = {
        "cassandra-0": snapshot_report(shop_a=("done", 4, 4), shop_b=("running", 1, 4)),
        "cassandra-1": snapshot_report(shop_a=("done", 4, 4), shop_b=("pending", 0, 4)),
    }
    status = assess(observe(nodes=nodes))
    assert status.phase is Phase.SNAPSHOTTING
    assert status.snapshot == "56% (1/2 tables)"  # 9 of 16 ranges; shop.b is not done everywhere
    assert condition(status, ConditionType.READY).status is ConditionStatus.TRUE


def test_a_finished_snapshot_is_running_and_says_done() -> None:
    nodes = {p: snapshot_report(shop_a=("done", 4, 4)) for p in PODS}
    status = assess(observe(nodes=nodes))
    assert status.phase is Phase.RUNNING
    assert status.snapshot == "done"
    assert assess(observe()).snapshot is None  # no runtime reports a snapshot


def test_a_failing_snapshot_is_degraded_with_the_error_and_what_to_do() -> None:
    nodes = {"cassandra-0": snapshot_report(shop_a=("failed", 1, 4)), "cassandra-1": report()}
    status = assess(observe(nodes=nodes))
    assert status.phase is Phase.DEGRADED
    degraded = condition(status, ConditionType.DEGRADED)
    assert degraded.reason == "SnapshotFailed"
    assert "shop.a on cassandra-0 fails: read timeout" in degraded.message
    assert "spec.source.snapshot.rowsPerSecond" in degraded.message
    assert status.snapshot == "25% (0/1 tables)"


def test_the_snapshot_annotation_becomes_the_request_and_a_too_long_one_is_refused() -> None:
    assert with_snapshot_request(SPEC, None) is SPEC
    asked = with_snapshot_request(SPEC, "2026-12-04")
    assert asked.source.snapshot.request == "2026-12-04"
    assert asked.model_copy(update={"source": SPEC.source}) == SPEC  # nothing else changed
    with pytest.raises(ValidationError, match=r"source\.snapshot\.request"):
        with_snapshot_request(SPEC, "x" * 254)


def test_a_sink_is_healthy_only_once_every_runtime_reported_on_it() -> None:
    assert assess(observe(nodes={})).sinks["pg"].healthy is None  # nothing known yet: not "healthy"
    assert assess(observe(nodes={PODS[0]: report()})).sinks["pg"].healthy is None
    assert assess(observe()).sinks["pg"].healthy is True
    broken = report(sinks={"pg": NodeSinkStatus(healthy=False, rows_written=0)})
    assert assess(observe(nodes={PODS[0]: broken})).sinks["pg"].healthy is False


def test_a_report_config_map_parses_to_its_pod_and_status_and_nonsense_to_none() -> None:
    good = report()
    meta = {"name": "shop-cassandra-0-report", "annotations": {naming.ANNOTATION_CASSANDRA_POD: "cassandra-0"}}
    body = {"metadata": meta, "data": {REPORT_KEY: good.model_dump_json(by_alias=True)}}
    assert parse_report(body) == ("cassandra-0", good)
    assert parse_report({"metadata": meta}) is None  # created, not written yet
    assert parse_report({"metadata": meta, "data": {REPORT_KEY: '{"lagSeconds": "soon"}'}}) is None
    assert parse_report({"metadata": {"name": "x"}, "data": body["data"]}) is None  # no Cassandra pod named


def test_the_status_patch_writes_the_reports_and_deletes_entries_no_longer_reported() -> None:
    previous = PipelineStatus(nodes={"cassandra-0": report(), "cassandra-9": report()})
    patch = status_patch(previous, previous, {"cassandra-0": report(lag_seconds=3.0)})
    assert patch is not None
    nodes = patch["status"]["nodes"]
    assert nodes["cassandra-9"] is None and nodes["cassandra-0"]["lagSeconds"] == 3.0
    same = {"cassandra-0": previous.nodes["cassandra-0"], "cassandra-9": previous.nodes["cassandra-9"]}
    assert status_patch(previous, previous, same) is None


def test_the_reset_offsets_annotation_becomes_a_one_time_request() -> None:
    assert with_offsets_reset(SPEC, None) is SPEC
    earliest = with_offsets_reset(SPEC, "earliest").source.offsets_reset
    assert earliest is not None and (earliest.request, earliest.to, earliest.nodes, earliest.sinks) == (
        "earliest",
        "earliest",
        [],
        [],
    )
    again = with_offsets_reset(SPEC, "1733312345678:0@second").source.offsets_reset
    assert again is not None and (again.request, again.to) == ("1733312345678:0@second", "1733312345678:0")
    with pytest.raises(ValidationError, match=r"offsetsReset\.to"):
        with_offsets_reset(SPEC, "yesterday")


def test_an_offsets_reset_must_name_sinks_of_the_pipeline() -> None:
    document = SPEC.model_dump(by_alias=True, mode="json")
    document["source"]["offsetsReset"] = {"request": "r", "to": "earliest", "sinks": ["pg", "nope"]}
    with pytest.raises(ValidationError, match=r"source\.offsetsReset\.sinks: no sink named nope"):
        PipelineSpec.model_validate(document)
