"""The scale-down policy for runtimes whose Cassandra pod went away."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cdc_operator.scaledown import Action, RuntimeDeployment, decide

from pipeline_runtime.config.status import NodeStatus

NOW = datetime(2026, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)


def runtime(gone: datetime | None = None) -> RuntimeDeployment:
    return RuntimeDeployment("shop-cassandra-2", "cassandra-2", gone)


def test_live_pod_keeps_its_runtime() -> None:
    assert decide(runtime(), ["cassandra-2"], {}, NOW, HOUR) is Action.KEEP


def test_pod_back_after_restart_unmarks() -> None:
    assert decide(runtime(NOW - timedelta(minutes=1)), ["cassandra-2"], {}, NOW, HOUR) is Action.UNMARK


def test_gone_pod_is_marked_first_not_deleted() -> None:
    assert decide(runtime(), ["cassandra-0"], {}, NOW, HOUR) is Action.MARK_GONE


def test_a_terminating_pod_is_not_gone_yet() -> None:
    # Its Cassandra may still sync CDC data while it shuts down: no drain (and no deletion) before the pod is gone.
    drained = {"cassandra-2": NodeStatus(unread_bytes=0, last_report_time=NOW)}
    assert decide(runtime(), [], drained, NOW, HOUR, present_pods=["cassandra-2"]) is Action.KEEP
    gone = NOW - timedelta(minutes=5)
    assert decide(runtime(gone), [], drained, NOW, HOUR, present_pods=["cassandra-2"]) is Action.KEEP
    assert decide(runtime(gone), [], drained, NOW, HOUR, present_pods=[]) is Action.DELETE


def test_backlog_left_keeps_draining() -> None:
    gone = NOW - timedelta(minutes=5)
    nodes = {"cassandra-2": NodeStatus(cdc_raw_bytes=10_000, last_report_time=NOW - timedelta(seconds=3))}
    assert decide(runtime(gone), [], nodes, NOW, HOUR) is Action.KEEP


def test_drained_after_gone_is_deleted() -> None:
    gone = NOW - timedelta(minutes=5)
    nodes = {"cassandra-2": NodeStatus(cdc_raw_bytes=0, last_report_time=NOW - timedelta(seconds=3))}
    assert decide(runtime(gone), [], nodes, NOW, HOUR) is Action.DELETE


def test_empty_report_from_before_the_pod_left_does_not_count() -> None:
    gone = NOW - timedelta(minutes=5)
    nodes = {"cassandra-2": NodeStatus(cdc_raw_bytes=0, last_report_time=gone - timedelta(seconds=1))}
    assert decide(runtime(gone), [], nodes, NOW, HOUR) is Action.KEEP


def test_segments_without_cdc_data_left_by_a_clean_shutdown_do_not_keep_a_drained_runtime() -> None:
    # Found on a real node: a scaled-down Cassandra leaves its last segments (no idx) in cdc_raw.
    gone = NOW - timedelta(minutes=5)
    drained = NodeStatus(cdc_raw_bytes=2 << 20, unread_bytes=0, last_report_time=NOW - timedelta(seconds=3))
    assert decide(runtime(gone), [], {"cassandra-2": drained}, NOW, HOUR) is Action.DELETE
    unread = NodeStatus(cdc_raw_bytes=2 << 20, unread_bytes=512, last_report_time=NOW - timedelta(seconds=3))
    assert decide(runtime(gone), [], {"cassandra-2": unread}, NOW, HOUR) is Action.KEEP


def test_drain_timeout_deletes() -> None:
    nodes = {"cassandra-2": NodeStatus(cdc_raw_bytes=10_000, last_report_time=NOW)}
    assert decide(runtime(NOW - HOUR), [], nodes, NOW, HOUR) is Action.DELETE
