"""What a runtime Pod's status says, as the operator reads it (pure logic), and how it shows in status."""

from __future__ import annotations

from typing import Any

import pytest
from cdc_operator.status.assess import assess
from cdc_operator.status.pods import pod_problem, problems_by_cassandra_pod

from pipeline_runtime.config.status import ConditionStatus, ConditionType, Phase
from tests.operator.test_status import PODS, condition, observe, report


def pod(name: str = "shop-cassandra-0-abc", cassandra: str = "cassandra-0", **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {"headrace.io/cassandra-pod": cassandra}}, "status": status}


def waiting(reason: str, message: str = "", **extra: Any) -> dict[str, Any]:
    return {"name": "runtime", "state": {"waiting": {"reason": reason, "message": message}}, **extra}


@pytest.mark.parametrize(
    ("status", "says"),
    [
        (
            {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                                 "message": "0/3 nodes are available: 3 Insufficient memory."}]},
            "cannot be scheduled (Unschedulable): 0/3 nodes are available: 3 Insufficient memory.",
        ),
        (
            {"phase": "Pending", "containerStatuses": [waiting("ImagePullBackOff", 'Back-off pulling image "x:1"')]},
            'container runtime: ImagePullBackOff: Back-off pulling image "x:1"',
        ),
        (
            {"phase": "Running", "containerStatuses": [waiting(
                "CrashLoopBackOff", "back-off 5m0s", restartCount=7,
                lastState={"terminated": {"reason": "OOMKilled", "exitCode": 137}},
            )]},
            "CrashLoopBackOff: back-off 5m0s (last exit: OOMKilled 137, 7 restarts)",
        ),
        ({"phase": "Failed", "reason": "Evicted", "message": "low on ephemeral-storage"}, "failed: Evicted low on"),
    ],
    ids=["unschedulable", "image-pull", "crash-loop-oom", "evicted"],
)  # fmt: skip
def test_a_pod_that_cannot_run_says_why(status: dict[str, Any], says: str) -> None:
    found = pod_problem(pod(**status))
    assert found is not None and says in found and "shop-cassandra-0-abc" in found


@pytest.mark.parametrize(
    "status",
    [
        {"phase": "Running", "containerStatuses": [{"name": "runtime", "state": {"running": {}}}]},
        {"phase": "Pending", "containerStatuses": [waiting("ContainerCreating")]},  # on its way
        {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}]},
    ],
)
def test_a_pod_on_its_way_or_running_has_no_problem(status: dict[str, Any]) -> None:
    assert pod_problem(pod(**status)) is None


def test_problems_are_keyed_by_the_cassandra_pod_the_runtime_serves() -> None:
    pods = [
        pod("b", "cassandra-1", phase="Pending", containerStatuses=[waiting("ErrImagePull")]),
        pod("a", "cassandra-0", phase="Running"),
    ]
    assert problems_by_cassandra_pod(pods, "headrace.io/cassandra-pod") == {
        "cassandra-1": "Pod b container runtime: ErrImagePull"
    }


def test_a_runtime_pod_that_cannot_run_makes_the_pipeline_degraded_with_its_reason() -> None:
    problem = "Pod shop-cassandra-1-x cannot be scheduled (Unschedulable): 0/1 nodes are available"
    status = assess(observe(nodes={PODS[0]: report()}, runtime_problems={PODS[1]: problem}))
    assert status.phase is Phase.DEGRADED
    degraded = condition(status, ConditionType.DEGRADED)
    assert degraded.status is ConditionStatus.TRUE and degraded.reason == "RuntimePodFailing"
    assert problem in degraded.message and "describe deployment/" in degraded.message
    # A runtime that reports is judged by its report, whatever an old Pod of it said.
    healthy = assess(observe(nodes={p: report() for p in PODS}, runtime_problems={PODS[1]: problem}))
    assert healthy.phase is Phase.RUNNING
