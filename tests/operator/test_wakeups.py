"""Which pipelines a watched change concerns (the pure part of the operator's watches)."""

from __future__ import annotations

import asyncio
import logging

from cdc_operator import naming
from cdc_operator.handlers.watch import QuietWatches
from cdc_operator.wakeups import Interest, Wakeups

CASSANDRA = {"app": "cassandra", "statefulset.kubernetes.io/pod-name": "cassandra-0"}


def enrolled(*keys: tuple[str, str]) -> Wakeups:
    wakeups = Wakeups()
    for key in keys:
        wakeups.enrol(key)
    return wakeups


def test_an_object_labelled_with_a_pipeline_concerns_that_pipeline_only() -> None:
    wakeups = enrolled(("a", "shop"), ("a", "other"), ("b", "shop"))
    labels = {naming.LABEL_PIPELINE: "shop", "app": "cassandra"}
    assert wakeups.concerned("a", labels, pod=False) == [("a", "shop")]
    assert wakeups.concerned("a", labels, pod=True) == [("a", "shop")]
    assert wakeups.concerned("c", labels, pod=False) == []


def test_a_long_pipeline_name_matches_its_fitted_label() -> None:
    name = "p" * 80
    wakeups = enrolled(("a", name))
    assert wakeups.concerned("a", {naming.LABEL_PIPELINE: naming.fit(name)}, pod=False) == [("a", name)]
    assert wakeups.concerned("a", {naming.LABEL_PIPELINE: name}, pod=False) == []


def test_a_cassandra_pod_concerns_the_pipelines_whose_selector_matches_in_its_namespace() -> None:
    wakeups = enrolled(("a", "shop"), ("a", "billing"), ("a", "fresh"), ("b", "shop"))
    wakeups.note(("a", "shop"), Interest({"app": "cassandra"}))
    wakeups.note(("a", "billing"), Interest({"app": "cassandra", "dc": "dc2"}))
    wakeups.note(("b", "shop"), Interest({"app": "cassandra"}))
    # ("a", "fresh") has had no pass yet: its selector is unknown, and its first pass is on its way anyway.
    assert wakeups.concerned("a", CASSANDRA, pod=True) == [("a", "shop")]
    assert sorted(wakeups.concerned("a", CASSANDRA | {"dc": "dc2"}, pod=True)) == [("a", "billing"), ("a", "shop")]
    # Only pods are matched against Cassandra selectors.
    assert wakeups.concerned("a", CASSANDRA, pod=False) == []


def test_an_empty_selector_concerns_no_pod() -> None:
    wakeups = enrolled(("a", "shop"))
    wakeups.note(("a", "shop"), Interest({}))
    assert wakeups.concerned("a", CASSANDRA, pod=True) == []


def test_wake_sets_the_signal_of_enrolled_pipelines_and_leave_forgets_them() -> None:
    wakeups = Wakeups()
    signal = wakeups.enrol(("a", "shop"))
    assert wakeups.enrol(("a", "shop")) is signal
    wakeups.note(("a", "shop"), Interest({"app": "cassandra"}, waiting_on_unwatched=True))
    wakeups.wake([("a", "shop"), ("a", "unknown")])
    assert signal.is_set()
    wakeups.leave(("a", "shop"))
    assert wakeups.interest(("a", "shop")) == Interest()
    assert wakeups.concerned("a", CASSANDRA, pod=True) == []
    # A note made before the loop enrols (the create handler's pass): a change meanwhile is kept for the loop.
    wakeups.note(("a", "shop"), Interest({"app": "cassandra"}))
    wakeups.wake(wakeups.concerned("a", CASSANDRA, pod=True))
    assert wakeups.enrol(("a", "shop")).is_set()


def test_signals_wake_a_waiting_loop() -> None:
    async def scenario() -> bool:
        wakeups = Wakeups()
        signal = wakeups.enrol(("a", "shop"))
        waiter = asyncio.create_task(signal.wait())
        await asyncio.sleep(0)
        wakeups.wake(wakeups.concerned("a", {naming.LABEL_PIPELINE: "shop"}, pod=True))
        await asyncio.wait_for(waiter, 1)
        return waiter.done()

    assert asyncio.run(scenario())


def test_in_namespace_lists_every_enrolled_pipeline_there() -> None:
    wakeups = enrolled(("a", "shop"), ("a", "billing"), ("b", "shop"))
    assert sorted(wakeups.in_namespace("a")) == [("a", "billing"), ("a", "shop")]
    assert wakeups.in_namespace("c") == []


def test_the_watch_handlers_success_lines_are_dropped_and_nothing_else() -> None:
    def record(message: str) -> logging.LogRecord:
        return logging.LogRecord("kopf.objects", logging.INFO, __file__, 1, message, None, None)

    quiet = QuietWatches()
    assert not quiet.filter(record("Handler 'pod_changed' succeeded."))
    assert not quiet.filter(record("Handler 'deployment_changed' succeeded."))
    assert quiet.filter(record("Handler 'created' succeeded."))
    assert quiet.filter(record("Handler 'pod_changed' failed with an exception and will try again in 60 seconds"))
