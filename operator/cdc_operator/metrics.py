"""The operator's Prometheus metrics: a closed set, so a misspelt name is an AttributeError, not a new series."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RECONCILES = Counter(
    "headrace_operator_reconciles",
    "Reconcile passes by trigger and result.",
    ["trigger", "result"],
)
RECONCILE_SECONDS = Histogram(
    "headrace_operator_reconcile_seconds",
    "Duration of one reconcile pass.",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
APPLIED = Counter(
    "headrace_operator_applied_objects",
    "Objects written with server-side apply, by kind.",
    ["kind"],
)
DELETED = Counter(
    "headrace_operator_deleted_objects",
    "Objects deleted by the operator (scale-down, cleanup), by kind.",
    ["kind"],
)
EVENTS_DROPPED = Counter(
    "headrace_operator_events_dropped",
    "Kubernetes Events the API server refused (the reconcile pass went on without them).",
)
PIPELINES = Gauge(
    "headrace_operator_pipelines",
    "Pipelines by phase, as last computed.",
    ["phase"],
)

_phases: dict[tuple[str, str], str] = {}


def record_phase(namespace: str, name: str, phase: str | None) -> None:
    """Remember one pipeline's phase (None: it is gone) and refresh the per-phase counts."""
    if phase is None:
        _phases.pop((namespace, name), None)
    else:
        _phases[(namespace, name)] = phase
    counts: dict[str, int] = {}
    for value in _phases.values():
        counts[value] = counts.get(value, 0) + 1
    for value in ("Pending", "Running", "Degraded", "Paused", "Failed"):
        PIPELINES.labels(phase=value).set(counts.get(value, 0))
