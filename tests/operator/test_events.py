"""Which Events a status change posts (pure): transitions only, never steady states."""

from __future__ import annotations

from datetime import UTC, datetime

from cdc_operator.handlers.events import event_body
from cdc_operator.status.assess import assess
from cdc_operator.status.events import MAX_MESSAGE, Notice, changed_fields, notices

from pipeline_runtime.config.status import PipelineStatus
from tests.operator.test_status import observe, report

RUNNING = assess(observe())


def test_the_same_status_again_posts_nothing() -> None:
    assert notices(RUNNING, assess(observe())) == []
    missing = assess(observe(missing_secrets=["s/k"]))
    assert notices(missing, assess(observe(missing_secrets=["s/k"]))) == []


def test_a_problem_is_a_warning_with_its_reason_and_the_recovery_is_normal() -> None:
    missing = assess(observe(missing_secrets=["shop-sinks/postgres-dsn"]))
    (warning,) = notices(RUNNING, missing)
    assert (warning.type, warning.reason) == ("Warning", "SecretMissing")
    assert warning.message.startswith("Pending: ") and "shop-sinks/postgres-dsn" in warning.message
    back = notices(missing, RUNNING)
    assert Notice("Normal", "Recovered", "no longer degraded (SecretMissing); phase Running") in back
    assert any(n.reason == "Running" and n.type == "Normal" for n in back)


def test_a_new_reason_while_degraded_is_posted() -> None:
    lagging = assess(observe(nodes={p: report(lag_seconds=500.0) for p in ("cassandra-0", "cassandra-1")}))
    assert lagging.phase.value == "Degraded"
    (first,) = [n for n in notices(RUNNING, lagging) if n.type == "Warning"]
    assert first.reason == "LagOverThreshold"
    failing = assess(
        observe(
            nodes={p: report(lag_seconds=500.0, last_error="sink pg: refused") for p in ("cassandra-0", "cassandra-1")}
        )
    )
    (second,) = notices(lagging, failing)
    assert (second.type, second.reason) == ("Warning", "RuntimeError")
    assert notices(failing, failing) == []


def test_a_new_configuration_is_a_rollout_naming_the_changed_fields() -> None:
    rolled = assess(observe(config_hash="h2"))
    (rollout,) = [n for n in notices(RUNNING, rolled, ["spec.sinks[0].batchSize"]) if n.reason == "Rollout"]
    assert rollout.message == (
        "configuration changed (spec.sinks[0].batchSize): the runtimes restart with config hash h2"
    )
    assert not [n for n in notices(PipelineStatus(), RUNNING) if n.reason == "Rollout"]  # the first hash is no change


def test_changed_fields_are_dotted_paths_and_bounded() -> None:
    old = {"sinks": [{"name": "pg", "batchSize": 1000}], "source": {"tables": [{"keyspace": "a"}]}}
    new = {"sinks": [{"name": "pg", "batchSize": 5000}], "source": {"tables": [{"keyspace": "a"}, {"keyspace": "b"}]}}
    assert changed_fields(old, new) == ["spec.sinks[0].batchSize", "spec.source.tables"]
    many = changed_fields({f"k{i}": 1 for i in range(12)}, {f"k{i}": 2 for i in range(12)}, limit=3)
    assert many == ["spec.k0", "spec.k1", "spec.k10", "and 9 more"]
    assert changed_fields(old, old) == []


def test_messages_fit_the_api_servers_limit_and_the_event_names_the_pipeline() -> None:
    long = assess(observe(missing_secrets=[f"secret-{i}/key" for i in range(200)]))
    (warning,) = notices(RUNNING, long)
    assert len(warning.message) == MAX_MESSAGE
    pipeline = {"metadata": {"name": "shop", "namespace": "data", "uid": "u-1"}}
    body = event_body(pipeline, warning, datetime(2026, 1, 1, tzinfo=UTC))
    assert body["involvedObject"] == {
        "apiVersion": "headrace.io/v1alpha1", "kind": "CDCPipeline", "name": "shop", "namespace": "data", "uid": "u-1",
    }  # fmt: skip
    assert (body["type"], body["reason"], body["lastTimestamp"]) == ("Warning", "SecretMissing", "2026-01-01T00:00:00Z")
