"""Operator command line and settings."""

from __future__ import annotations

from pathlib import Path

import pytest
from cdc_operator import reference
from cdc_operator.__main__ import parse
from cdc_operator.config import OperatorConfig


def test_default_is_clusterwide_standalone() -> None:
    options = parse([], env={})
    assert options.clusterwide and options.peering is None
    assert (options.health_port, options.metrics_port) == (8080, 9090)


def test_namespaces_from_flags_or_env() -> None:
    assert parse(["-n", "a", "-n", "b"], env={}).namespaces == ("a", "b")
    assert parse([], env={"HEADRACE_WATCH_NAMESPACES": "x, y"}).namespaces == ("x", "y")
    assert parse(["-A"], env={"HEADRACE_WATCH_NAMESPACES": "x"}).clusterwide


def test_peering_from_env() -> None:
    assert parse([], env={"HEADRACE_PEERING": "headrace"}).peering == "headrace"


def test_each_replica_has_its_own_peering_priority_unless_one_is_given() -> None:
    """Kopf pauses every replica when two share a priority: replicas draw theirs at random."""
    drawn = {parse(["--peering", "headrace"], env={}).priority for _ in range(50)}
    assert len(drawn) == 50 and all(0 < p < 2**31 for p in drawn)
    assert parse([], env={"HEADRACE_PEERING_PRIORITY": "7"}).priority == 7
    assert parse(["--priority", "9"], env={"HEADRACE_PEERING_PRIORITY": "7"}).priority == 9


def test_config_from_env() -> None:
    config = OperatorConfig.from_env({"HEADRACE_RECONCILE_INTERVAL_SECONDS": "2", "HEADRACE_RUNTIME_IMAGE": "img:1"})
    assert config.reconcile_interval_s == 2.0 and config.runtime_image == "img:1"
    assert config.drain_timeout_s == 3600.0
    with pytest.raises(ValueError, match="HEADRACE_DRAIN_TIMEOUT_SECONDS must be a positive"):
        OperatorConfig.from_env({"HEADRACE_DRAIN_TIMEOUT_SECONDS": "0"})


def test_docs_reference_is_current() -> None:
    doc = Path(__file__).resolve().parents[2] / "docs" / "operator.md"
    assert reference.main(["--check", str(doc)]) == 0, "run python -m cdc_operator.reference --write docs/operator.md"
    assert "`spec.sinks[].batchSize` | integer | `10000`" in doc.read_text()
