"""The typed ``status`` of a CDCPipeline: what runtimes report and what the operator concludes.

Each runtime writes its ``NodeStatus`` as JSON (``REPORT_KEY``) into a report
ConfigMap of its own, the one object its ServiceAccount may write; the operator
reads every report of the pipeline and writes the whole ``status``: ``nodes``
(the reports, keyed by Cassandra pod), phase, conditions, the summary fields the
printer columns show, and ``sinks`` aggregated over the nodes.

The CRD's status schema is generated from this module, so a field the runtime
reports but this model lacks is pruned by the API server: add it here first.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class _Status(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        # Ignore fields from a newer runtime instead of failing the whole status.
        extra="ignore",
        frozen=True,
        use_attribute_docstrings=True,
    )


class Phase(StrEnum):
    """The pipeline's one-word state, in the order the operator checks them."""

    PENDING = "Pending"
    """Runtimes are being created or have not reported yet."""
    RUNNING = "Running"
    """Every runtime reports and nothing is degraded."""
    DEGRADED = "Degraded"
    """Changes flow, but something needs attention (lag, backlog, an unhealthy sink)."""
    SNAPSHOTTING = "Snapshotting"
    """Changes flow and at least one runtime is still reading what its tables held (the snapshot)."""
    PAUSED = "Paused"
    """spec.paused is true; runtimes are scaled to zero."""
    FAILED = "Failed"
    """Nothing can run until the user fixes the spec or a missing Secret."""


class ConditionType(StrEnum):
    READY = "Ready"
    PROGRESSING = "Progressing"
    DEGRADED = "Degraded"
    DEAD_LETTERS = "DeadLetters"


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(_Status):
    """A Kubernetes-style condition (metav1.Condition's fields)."""

    type: ConditionType
    """Ready, Progressing, Degraded or DeadLetters."""
    status: ConditionStatus
    """True, False or Unknown."""
    reason: str = Field(pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$", max_length=1024)
    """CamelCase reason, stable for automation."""
    message: str = Field(default="", max_length=32768)
    """What is wrong and what to do about it."""
    last_transition_time: datetime
    """When status last changed."""
    observed_generation: int = Field(default=0, ge=0)
    """metadata.generation the condition was computed for."""


class Position(_Status):
    """A point in one node's commitlog: the end of an entry."""

    segment_id: int = Field(ge=0)
    """Commitlog segment id."""
    offset: int = Field(ge=0)
    """Byte offset of the end of the last delivered entry."""


class NodeSinkStatus(_Status):
    """One sink as seen by one runtime."""

    healthy: bool = True
    """The last write succeeded."""
    last_commit_time: datetime | None = None
    """When the runtime last committed a batch to this sink."""
    rows_written: int = Field(default=0, ge=0)
    """Rows written by this runtime since it started."""
    position: Position | None = None
    """The commitlog position committed in this sink (each sink has its own)."""
    lag_seconds: float | None = Field(default=None, ge=0)
    """Seconds since the oldest change not yet in this sink became durable in the commitlog."""
    behind: bool = False
    """The sink fell behind the shared reader and re-reads cdc_raw from its own position."""


class TableSnapshotStatus(_Status):
    """One table's snapshot on one node (written by the runtime)."""

    state: str = Field(default="pending", pattern=r"^(pending|running|done|failed)$")
    """pending, running, done or failed (failed retries with backoff; lastError says why)."""
    rows_read: int = Field(default=0, ge=0)
    """Rows read and written to every sink by this runtime since it started."""
    ranges_done: int = Field(default=0, ge=0)
    """Token ranges of this node written to every sink."""
    ranges_total: int = Field(default=0, ge=0)
    """Token ranges this node reads (those it is primary replica for)."""
    rows_per_second: float = Field(default=0.0, ge=0)
    """Read rate since the table's first page arrived in this runtime (what rowsPerSecond limits)."""
    eta_seconds: float | None = Field(default=None, ge=0)
    """Estimated time left (from the share of token ranges read), or null when unknown."""
    last_error: str | None = None
    """Why the last attempt failed, or null."""


#: The key of a runtime's report ConfigMap that holds its NodeStatus as JSON (runtime writes, operator reads).
REPORT_KEY = "status.json"


class NodeStatus(_Status):
    """What one runtime reports about its Cassandra node (written by the runtime)."""

    position: Position | None = None
    """Lowest position committed by every sink."""
    lag_seconds: float | None = Field(default=None, ge=0)
    """Age of the oldest change not yet committed to every sink."""
    events_per_second: float = Field(default=0.0, ge=0)
    """Recent decode rate."""
    cdc_raw_bytes: int = Field(default=0, ge=0)
    """Bytes waiting in cdc_raw."""
    cdc_raw_share: float = Field(default=0.0, ge=0)
    """cdcRawBytes divided by cdc_total_space (1.0 = Cassandra rejects CDC writes)."""
    unread_bytes: int | None = Field(default=None, ge=0)
    """Bytes of CDC data in cdc_raw not yet committed by every sink (0: drained); null before the first read."""

    @property
    def left_to_drain(self) -> int:
        """What a removed pod's runtime still has to read: unreadBytes, or all of cdc_raw when not reported."""
        return self.unread_bytes if self.unread_bytes is not None else self.cdc_raw_bytes

    last_error: str | None = None
    """The last error the runtime could not recover from by retrying, or null."""
    last_report_time: datetime | None = None
    """When the runtime wrote this entry; a stale time means the runtime is not running."""
    config_hash: str | None = None
    """The configuration hash the runtime runs with (tells whether a rollout finished)."""
    dead_letters: int = Field(default=0, ge=0)
    """Events sinks rejected row by row, kept in deadLetterFile (counted from the file, so restarts keep it)."""
    dead_letter_file: str | None = None
    """Where this runtime keeps dead letters (one JSON line each, with the reason and source position)."""
    sinks: dict[str, NodeSinkStatus] = {}
    """Per sink name."""
    snapshot: dict[str, TableSnapshotStatus] = {}
    """Per 'keyspace.table' being or already snapshotted by this runtime."""
    replicas: dict[str, str] = {}
    """With replicaDedup, per Cassandra node (host id) of the ring: what this runtime does with the changes
    of its token ranges: writing (its own node's), standby (held until that node's runtime wrote them) or
    taking over (that runtime is silent: written here)."""
    held_changes: int = Field(default=0, ge=0)
    """With replicaDedup: changes held for other nodes' runtimes; the checkpoint waits at the oldest."""


class SinkStatus(_Status):
    """One sink over all nodes (written by the operator)."""

    healthy: bool | None = None
    """Every runtime's last write to this sink succeeded; false when one failed; absent until every runtime reports."""
    last_commit_time: datetime | None = None
    """The oldest of the runtimes' last commit times: every node has committed since."""
    rows_written: int = Field(default=0, ge=0)
    """Sum over the runtimes."""


class PipelineStatus(_Status):
    """status of a CDCPipeline."""

    observed_generation: int = Field(default=0, ge=0)
    """metadata.generation the operator last acted on."""
    phase: Phase = Phase.PENDING
    """Pending, Running, Degraded, Paused or Failed."""
    conditions: list[Condition] = []
    """Ready, Progressing, Degraded and DeadLetters."""
    nodes: dict[str, NodeStatus] = {}
    """Per Cassandra pod: its runtime's last report, copied here by the operator."""
    sinks: dict[str, SinkStatus] = {}
    """Per sink name, aggregated by the operator."""
    ready_nodes: str = "0/0"
    """Runtimes reporting without error / Cassandra pods selected (for kubectl get)."""
    max_lag_seconds: float | None = None
    """Largest lag over the nodes (for kubectl get)."""
    events_per_second: float = 0.0
    """Sum of the nodes' rates (for kubectl get)."""
    dead_letters: int = Field(default=0, ge=0)
    """Dead-lettered events over the nodes (for kubectl get); the DeadLetters condition says where."""
    snapshot: str | None = None
    """Snapshot progress over the nodes, as token ranges done (for kubectl get): '37% (1/3 tables)', 'done'."""
    config_hash: str | None = None
    """Hash of the configuration the operator rendered last."""
