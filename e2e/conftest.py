"""On a failed step, show the cluster as a user would look at it: pods, events, the operator's log."""

from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import Any

import pytest


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    report = yield
    if report.when == "call" and report.failed:
        item.stash[FAILED] = True
    return report


FAILED = pytest.StashKey[bool]()


@pytest.fixture(autouse=True)
def cluster_state_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if not request.node.stash.get(FAILED, False) or "world" not in request.fixturenames:
        return
    world = request.getfixturevalue("world")
    for args in (
        ("get", "pods", "-o", "wide"),
        ("get", "cdcpipelines", "-o", "yaml"),
        ("get", "events", "--sort-by=.lastTimestamp"),
        ("logs", "deployment/headrace", "--tail=60"),
    ):
        print(f"\n$ kubectl {' '.join(args)}\n{world.kubectl(*args, check=False)[-6000:]}")
