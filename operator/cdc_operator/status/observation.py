"""Everything the operator saw in one reconcile pass, as plain data for the pure status logic."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pipeline_runtime.config.model import PipelineSpec
from pipeline_runtime.config.status import Condition, NodeStatus


@dataclass(frozen=True)
class Thresholds:
    """Operator-wide limits; the per-pipeline lag threshold comes from ``spec.runtime.maxLagSeconds``."""

    report_stale_after: timedelta = timedelta(seconds=120)
    """A runtime silent for longer is considered not running (runtimes report every few seconds)."""
    cdc_raw_share_warning: float = 0.8
    """Share of cdc_total_space above which Cassandra is close to rejecting CDC writes."""


@dataclass(frozen=True)
class Observation:
    """One reconcile pass's view of a pipeline."""

    namespace: str
    generation: int
    now: datetime
    spec: PipelineSpec | None
    """None when the spec failed validation (``invalid_spec`` says why)."""
    invalid_spec: str | None = None
    source_description: str = ""
    """How pods are selected, in words, e.g. ``pods with labels app=cassandra``."""
    source_problem: str | None = None
    """The workload named by the spec is missing, or similar: nothing can be discovered."""
    pods: Sequence[str] = ()
    """Live Cassandra pods selected by the spec."""
    pods_without_data: Sequence[str] = ()
    missing_secrets: Sequence[str] = ()
    """``<secret>`` or ``<secret>/<key>`` for each reference that cannot be mounted."""
    draining: Mapping[str, str] = field(default_factory=dict)
    """Cassandra pod -> runtime Deployment kept to drain after its pod went away."""
    deployments: Mapping[str, str] = field(default_factory=dict)
    """Cassandra pod -> runtime Deployment name, for messages that tell the user where to look."""
    runtime_problems: Mapping[str, str] = field(default_factory=dict)
    """Cassandra pod -> what its runtime Pod's status says is wrong (unschedulable, image, crash loop)."""
    read_elsewhere: Mapping[str, str] = field(default_factory=dict)
    """Cassandra pod -> the pipeline created earlier that already reads its cdc_raw."""
    apply_rejected: str | None = None
    """The API server refused an object rendered from the spec (422, 400, an admission policy): its words."""
    nodes: Mapping[str, NodeStatus] = field(default_factory=dict)
    previous_conditions: Sequence[Condition] = ()
    config_hash: str | None = None
    thresholds: Thresholds = Thresholds()
