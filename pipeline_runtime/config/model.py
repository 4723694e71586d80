"""The one typed model of a pipeline: runtime YAML, CRD schema and docs all come from it.

Field names are snake_case in Python and camelCase on the wire (YAML, the
Kubernetes resource). Secrets are never values here, only references: a
``SecretRef`` names a Kubernetes Secret and key, which the runtime reads from
a mounted file or an environment variable.
"""

from __future__ import annotations

import fnmatch
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from pipeline_runtime.config.quantity import quantity_bytes

Name = Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)]
#: A Kubernetes quantity (``resource.Quantity``'s grammar): ``500m``, ``1``, ``512Mi``, ``1e3``.
Quantity = Annotated[
    str,
    Field(
        pattern=r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$",
        max_length=64,
    ),
]
#: A size in bytes as a Kubernetes quantity without exponent or fraction suffixes: ``256Mi``, ``1G``, ``1048576``.
ByteSize = Annotated[str, Field(pattern=r"^[0-9]+(\.[0-9]+)?([KMGTPE]i|[kMGTPE])?$", max_length=32)]
#: The smallest ``runtime.deadLetters.maxSize``.
MIN_DEAD_LETTER_BYTES = 1 << 20
#: A container image reference: [registry[:port]/]path[:tag][@sha256:digest], lower-case path.
IMAGE_PATTERN = (
    r"^[a-zA-Z0-9]([a-zA-Z0-9.-]*[a-zA-Z0-9])?(:[0-9]+)?(/[a-z0-9]+([._-]+[a-z0-9]+)*)*"
    r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?$"
)
#: Resource names a runtime container may request.
RESOURCE_NAMES = ("cpu", "memory", "ephemeral-storage")


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        use_attribute_docstrings=True,
    )


class SecretRef(_Model):
    """A key in a Kubernetes Secret, mounted as a file for the runtime."""

    name: Name
    """Secret name."""
    key: str = Field(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")
    """Key inside the Secret."""


class TLSSpec(_Model):
    """TLS towards a server."""

    enabled: bool = False
    """Use TLS."""
    ca_secret: SecretRef | None = None
    """CA bundle (PEM) that signs the server's certificate."""
    client_cert_secret: SecretRef | None = None
    """Client certificate (PEM) for mutual TLS."""
    client_key_secret: SecretRef | None = None
    """Client private key (PEM) for mutual TLS."""
    insecure_skip_verify: bool = False
    """Do not verify the server certificate (tests only)."""


class ResourceRef(_Model):
    """A workload that owns the Cassandra pods."""

    kind: Annotated[str, Field(pattern=r"^(StatefulSet|CassandraDatacenter)$")] = "StatefulSet"
    """StatefulSet, or cass-operator's CassandraDatacenter."""
    name: Name
    """Name of the workload in the pipeline's namespace."""


#: Where a runtime looks for CQL when neither the pipeline nor the operator names a host.
LOCAL_CONTACT_POINT = "127.0.0.1"


class CassandraSource(_Model):
    """Which Cassandra pods to read and how to reach their schema."""

    pod_selector: dict[str, str] | None = None
    """Label selector (matchLabels) of the Cassandra pods."""
    workload: ResourceRef | None = None
    """Alternatively, the StatefulSet or CassandraDatacenter that owns the pods."""
    data_volume: Name = "server-data"
    """Name of the data volume in the Cassandra pod spec; its PVC is mounted into the runtime."""
    cdc_raw_path: str = "cdc_raw"
    """Path of cdc_raw inside the data volume."""
    contact_point: str | None = Field(default=None, min_length=1)
    """Host that answers CQL, for system_schema; unset: the node's own Cassandra pod, or 127.0.0.1 standalone."""
    port: int = Field(default=9042, ge=1, le=65535)
    """CQL native port."""
    local_datacenter: str | None = None
    """Datacenter for the driver's load balancing."""
    credentials_secret: str | None = None
    """Secret with keys 'username' and 'password' for CQL."""
    tls: TLSSpec = TLSSpec()
    """TLS for CQL."""
    cdc_total_space_mb: int = Field(default=4096, ge=1)
    """cassandra.yaml cdc_total_space, to report the backlog's share of it."""

    @model_validator(mode="after")
    def _one_pod_source(self) -> CassandraSource:
        if self.pod_selector is not None and self.workload is not None:
            raise ValueError("set either podSelector or workload, not both")
        return self


class TableSelector(_Model):
    """Tables to capture; ``*`` and ``?`` wildcards are allowed in both names."""

    keyspace: str = Field(min_length=1)
    """Keyspace name or pattern."""
    table: str = Field(default="*", min_length=1)
    """Table name or pattern."""


def selects(selectors: list[TableSelector], keyspace: str, table: str) -> bool:
    """Whether any of ``selectors`` matches ``keyspace.table`` (shell wildcards in both names)."""
    return any(fnmatch.fnmatchcase(keyspace, s.keyspace) and fnmatch.fnmatchcase(table, s.table) for s in selectors)


class SnapshotMode(StrEnum):
    INITIAL = "initial"
    """Snapshot each selected table once (also tables selected later), beside live capture."""
    NEVER = "never"
    """Only changes made after the pipeline starts reach the sinks."""


class Consistency(StrEnum):
    """CQL consistency levels a snapshot may read at."""

    ONE = "ONE"
    LOCAL_ONE = "LOCAL_ONE"
    QUORUM = "QUORUM"
    LOCAL_QUORUM = "LOCAL_QUORUM"
    EACH_QUORUM = "EACH_QUORUM"
    ALL = "ALL"


class SnapshotSpec(_Model):
    """Reading what tables already hold when the pipeline starts (docs/snapshot.md)."""

    mode: SnapshotMode = SnapshotMode.INITIAL
    """initial (snapshot each selected table once) or never."""
    consistency: Consistency = Consistency.LOCAL_QUORUM
    """Read consistency: LOCAL_QUORUM sees every write acknowledged at QUORUM, even by a replica that
    missed it, without crossing datacenters."""
    fetch_size: int = Field(default=5000, ge=100, le=100_000)
    """Rows per page; one page is written to the sinks as one batch with its progress. With a
    rowsPerSecond limit, pages hold at most a quarter second's rows (and at least 100)."""
    rows_per_second: int = Field(default=20_000, ge=0)
    """Most rows read per second by one runtime (0: no limit), to protect Cassandra's latency."""
    request: str = Field(default="", max_length=253)
    """A new value re-snapshots every selected table once (the operator sets it from the
    headrace.io/snapshot annotation); rows already right stay unchanged."""


class OffsetsReset(_Model):
    """Set the runtimes' committed positions in the sinks once, as they start (docs/runtime.md#offsets)."""

    request: str = Field(min_length=1, max_length=253)
    """Identifies this reset: each runtime applies a request once (it keeps the last one it applied in
    cdc_raw/.headrace-offsets-reset-<pipeline>) and a new value applies again. The operator sets it from the
    headrace.io/reset-offsets annotation."""
    to: str = Field(pattern=r"^(earliest|[0-9]+:[0-9]+)$", max_length=64)
    """earliest: read again all that cdc_raw holds; SEGMENT:OFFSET: go on from there (a segment id is the
    time its segment was created, in ms, so 1733312345678:0 also means: from segments created after it).
    Writes are idempotent, so reading again is safe; moving forward skips what lies between."""
    nodes: list[str] = Field(default=[], max_length=256)
    """Only these nodes (Cassandra pods); empty: every node."""
    sinks: list[str] = Field(default=[], max_length=32)
    """Only these sinks; empty: every sink."""


class SourceSpec(_Model):
    """Where changes come from."""

    cassandra: CassandraSource
    """The Cassandra nodes."""
    tables: list[TableSelector] = Field(min_length=1)
    """Tables to capture."""
    snapshot: SnapshotSpec = SnapshotSpec()
    offsets_reset: OffsetsReset | None = None
    """A one-time change of the committed positions, applied by each runtime as it starts."""
    """What tables already hold: read once through CQL and merged with live changes."""
    replica_dedup: bool = False
    """on: each runtime writes only the changes of the token ranges its node is primary replica for and
    holds the rest until their runtime has written them (about one write per change, not one per replica);
    off: every replica's runtime writes every change (docs/replicas.md)."""
    replica_takeover_seconds: int = Field(default=60, ge=5, le=3600)
    """With replicaDedup: a node's runtime silent this long has its ranges written by the other replicas'."""
    replica_margin_seconds: int = Field(default=15, ge=0, le=600)
    """With replicaDedup: clock skew between nodes plus the commitlog sync period (10 s by default)."""

    @model_validator(mode="after")
    def _tables_once(self) -> SourceSpec:
        seen = [(t.keyspace, t.table) for t in self.tables]
        repeated = sorted({f"{k}.{t}" for k, t in seen if seen.count((k, t)) > 1})
        if repeated:
            raise ValueError(f"source.tables lists {', '.join(repeated)} more than once")
        return self


class SinkType(StrEnum):
    POSTGRES = "postgres"
    TIMESCALEDB = "timescaledb"
    CLICKHOUSE = "clickhouse"


class WriteMode(StrEnum):
    UPSERT = "upsert"
    """Keep the current state of each row (last write wins)."""
    APPEND = "append"
    """Add one row per change to a history table ``<table>_changes`` (docs/sinks.md, "Append mode")."""


class TimescaleSpec(_Model):
    """Hypertable settings for TimescaleDB sinks."""

    time_column: str | None = Field(default=None, min_length=1)
    """writeMode upsert: the column that partitions each hypertable; must be part of the primary key
    (required). writeMode append: refused (history tables are partitioned by each change's writetime)."""
    chunk_interval: str = "7 days"
    """Hypertable chunk interval: an interval such as 7 days for a timestamp or date time column (and
    for append's writetime), a whole number of its units for an integer one."""


class SinkSpec(_Model):
    """One destination."""

    name: Name
    """Unique name within the pipeline."""
    type: SinkType
    """postgres, timescaledb or clickhouse."""
    connection_secret: SecretRef
    """Secret key holding the connection URL (postgresql://... or clickhouse://... or chdb://...)."""
    target: str | None = None
    """Target schema (PostgreSQL) or database (ClickHouse); defaults to the keyspace name."""
    table_mapping: dict[str, str] = {}
    """Map 'keyspace.table' to a target table name (each key a table this sink receives; each name used once)."""
    tables: list[TableSelector] | None = Field(default=None, min_length=1, max_length=64)
    """The tables this sink receives, among those source.tables selects (same wildcards); unset: all
    of them. Lets one pipeline send time-series tables to TimescaleDB and everything to ClickHouse."""
    write_mode: WriteMode = WriteMode.UPSERT
    """upsert: each sink table holds the current state of each row (last write wins); append: a table
    <table>_changes gets one row per change (what it wrote or deleted, its writetime, its source
    position), idempotent under redelivery."""
    batch_size: int = Field(default=10_000, ge=1, le=100_000)
    """Most rows per batch (a batch is written when full or after flushIntervalMs). Each batch pays
    fixed costs (round trips, commits, one ClickHouse part per insert), so larger batches write
    faster: see the performance figures. The sinks of a pipeline receive the same batches: the
    smallest batchSize over them applies to all."""
    flush_interval_ms: int = Field(default=1000, ge=10, le=600_000)
    """Longest wait before a partial batch is written; the smallest over the pipeline's sinks applies to all."""
    tls: TLSSpec = TLSSpec()
    """TLS towards the sink. Enabled: PostgreSQL and TimescaleDB connect over TLS only (whatever the
    DSN's sslmode), ClickHouse over HTTPS; the server's certificate and name are verified against
    caSecret (else the system's CAs). Not for chdb:// (refused). Off: the DSN decides."""
    timescale: TimescaleSpec | None = None
    """Hypertable settings: type timescaledb only; required there with writeMode upsert (timeColumn)."""

    @model_validator(mode="after")
    def _mapping_names(self) -> SinkSpec:
        for key, name in self.table_mapping.items():
            keyspace, dot, table = key.partition(".")
            if not (keyspace and dot and table) or "." in table or any(c in key for c in "*?["):
                raise ValueError(f"sink {self.name}: tableMapping key {key!r} is not 'keyspace.table' (no wildcards)")
            if not name.strip():
                raise ValueError(f"sink {self.name}: tableMapping maps {key} to an empty name")
        # Where each lands: the target, else its own keyspace (tables of two keyspaces may share a name there).
        places = [(self.target or key.partition(".")[0], name) for key, name in self.table_mapping.items()]
        shared = sorted({f"{ns}.{name}" for ns, name in places if places.count((ns, name)) > 1})
        if shared:
            raise ValueError(f"sink {self.name}: tableMapping maps several tables onto {', '.join(shared)}")
        return self

    @model_validator(mode="after")
    def _timescale_settings(self) -> SinkSpec:
        if self.type is not SinkType.TIMESCALEDB:
            if self.timescale is not None:
                raise ValueError(f"sink {self.name}: timescale applies to type timescaledb only, not {self.type}")
            return self
        time_column = self.timescale.time_column if self.timescale is not None else None
        if self.write_mode is WriteMode.UPSERT and time_column is None:
            raise ValueError(f"sink {self.name}: type timescaledb needs timescale.timeColumn")
        if self.write_mode is WriteMode.APPEND and time_column is not None:
            raise ValueError(
                f"sink {self.name}: with writeMode append the history hypertables are partitioned by each "
                "change's writetime; remove timescale.timeColumn"
            )
        return self


class MaskStrategy(StrEnum):
    HASH = "hash"
    """HMAC-SHA256 with the pipeline's hash key; deterministic, allowed on key columns."""
    REDACT = "redact"
    """Replace with a constant."""
    NULL = "null"
    """Replace with null."""
    TRUNCATE = "truncate"
    """Keep the first ``length`` characters."""
    PARTIAL = "partial"
    """Keep the last ``length`` characters, mask the rest."""


class MaskRule(_Model):
    """How to mask one column before any sink or log sees it."""

    table: str = Field(min_length=1)
    """'keyspace.table' (wildcards allowed)."""
    column: str = Field(min_length=1)
    """Column name."""
    strategy: MaskStrategy
    """hash, redact, null, truncate or partial."""
    length: int | None = Field(default=None, ge=0)
    """For truncate and partial: characters kept."""
    replacement: str = "***"
    """For redact: the constant; for partial: the mask character(s)."""

    @model_validator(mode="after")
    def _length_when_needed(self) -> MaskRule:
        if self.strategy in (MaskStrategy.TRUNCATE, MaskStrategy.PARTIAL) and self.length is None:
            raise ValueError(f"masking {self.table}.{self.column}: strategy {self.strategy} needs length")
        return self


class ColumnSelection(_Model):
    """Column include/exclude and rename for matching tables."""

    table: str = Field(min_length=1)
    """'keyspace.table' (wildcards allowed)."""
    include: list[str] | None = None
    """Columns to keep (primary key columns are always kept)."""
    exclude: list[str] = []
    """Columns to drop."""
    rename: dict[str, str] = {}
    """Column name -> name in the sink."""


class ValidationPolicy(StrEnum):
    OFF = "off"
    WARN = "warn"
    """Log and report a condition for unmasked personal-data columns."""
    BLOCK = "block"
    """Refuse to start while personal-data columns have no masking rule."""


class TransformSpec(_Model):
    """What happens to rows between Cassandra and the sinks."""

    columns: list[ColumnSelection] = []
    """Column selection and renames."""
    masking: list[MaskRule] = []
    """Masking rules."""
    hash_key_secret: SecretRef | None = None
    """Secret key with the HMAC key for the hash strategy."""
    validation: ValidationPolicy = ValidationPolicy.WARN
    """What to do about personal-data columns without a masking rule."""

    @model_validator(mode="after")
    def _hash_needs_key(self) -> TransformSpec:
        if any(r.strategy is MaskStrategy.HASH for r in self.masking) and self.hash_key_secret is None:
            raise ValueError("masking strategy hash needs transforms.hashKeySecret")
        return self


class LogLevel(StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


class EnvVar(_Model):
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    value: str


class Resources(_Model):
    """Container resources: cpu, memory and ephemeral-storage quantities."""

    requests: dict[str, Quantity] = {}
    """What the scheduler reserves for the runtime, for example cpu: 250m, memory: 256Mi."""
    limits: dict[str, Quantity] = {}
    """What the runtime may use at most."""

    @model_validator(mode="after")
    def _known_names(self) -> Resources:
        for kind, values in (("requests", self.requests), ("limits", self.limits)):
            unknown = sorted(set(values) - set(RESOURCE_NAMES))
            if unknown:
                raise ValueError(
                    f"runtime.resources.{kind}: {', '.join(unknown)} is not one of {', '.join(RESOURCE_NAMES)}"
                )
        return self


class DeadLetterVolume(_Model):
    """A PersistentVolumeClaim per runtime for its dead letters."""

    size: Quantity = "1Gi"
    """Requested size."""
    storage_class_name: str | None = Field(default=None, pattern=r"^[a-z0-9]([-.a-z0-9]*[a-z0-9])?$", max_length=253)
    """StorageClass of the claim (unset: the cluster's default)."""


class DeadLetterSpec(_Model):
    """Where a runtime keeps the rows its sinks rejected, and how much of them."""

    max_size: ByteSize = "256Mi"
    """Largest dead-letter file per runtime (at least 1Mi); rejected rows that would pass it are not
    committed: the runtime stalls (Degraded, saying so) until the file is handled and moved away, or
    maxSize raised (one batch's letters always go into an empty file). Keeps dead letters from filling
    Cassandra's data volume; honoured by the standalone runtime too."""
    volume_claim: DeadLetterVolume | None = None
    """Kubernetes: a claim of its own per runtime, <runtime>-dead-letters, mounted at
    /var/lib/headrace/dead-letters, so dead letters never take space on Cassandra's data volume. The claim
    is kept when its runtime or the pipeline is deleted (delete it once the dead letters are handled).
    Unset: a folder beside cdc_raw on Cassandra's data volume (headrace-dead-letters/, bounded by maxSize),
    which needs no StorageClass."""

    @model_validator(mode="after")
    def _fits_the_claim(self) -> DeadLetterSpec:
        if quantity_bytes(self.max_size) < MIN_DEAD_LETTER_BYTES:
            raise ValueError(f"runtime.deadLetters.maxSize {self.max_size} is less than 1Mi")
        try:
            claim_bytes = quantity_bytes(self.volume_claim.size) if self.volume_claim is not None else None
        except ValueError as exc:
            raise ValueError(f"runtime.deadLetters.volumeClaim.size: {exc}") from None
        if self.volume_claim is not None and claim_bytes is not None and quantity_bytes(self.max_size) > claim_bytes:
            claim = self.volume_claim.size
            raise ValueError(f"runtime.deadLetters.maxSize {self.max_size} is more than its volumeClaim.size {claim}")
        return self


#: The runtime image of pipelines that set none, when the operator is not told another (HEADRACE_RUNTIME_IMAGE).
DEFAULT_RUNTIME_IMAGE = "ghcr.io/headrace/runtime:0.1.0"


class RuntimeSpec(_Model):
    """How the runtime Deployments run."""

    image: str | None = Field(default=None, pattern=IMAGE_PATTERN, max_length=512)
    """Runtime container image; unset: the operator's (its chart's image values), so an upgrade moves runtimes along."""
    resources: Resources = Resources()
    """Container resources (requests/limits)."""
    log_level: LogLevel = LogLevel.INFO
    """Log level."""
    env: list[EnvVar] = Field(default=[], max_length=64)
    """Extra environment variables (never secrets: use Secret references); names starting HEADRACE_
    are the operator's own and refused."""

    @model_validator(mode="after")
    def _env_not_the_operators(self) -> RuntimeSpec:
        taken = sorted(e.name for e in self.env if e.name.startswith("HEADRACE_"))
        if taken:
            raise ValueError(f"runtime.env: {', '.join(taken)}: names starting HEADRACE_ are set by the operator")
        return self

    max_lag_seconds: int = Field(default=60, ge=1)
    """Lag above which the pipeline turns Degraded."""
    image_pull_secrets: list[Annotated[str, Field(pattern=r"^[a-z0-9]([-.a-z0-9]*[a-z0-9])?$", max_length=253)]] = (
        Field(default=[], max_length=16)
    )
    """Names of Secrets in the pipeline's namespace to pull the runtime image with."""
    priority_class_name: str | None = Field(default=None, pattern=r"^[a-z0-9]([-.a-z0-9]*[a-z0-9])?$", max_length=253)
    """PriorityClass of the runtime pods (unset: the cluster's default). Placement needs no nodeSelector:
    each runtime is pinned to its Cassandra pod's node."""
    dead_letters: DeadLetterSpec = DeadLetterSpec()
    """How much dead letters may hold, and where they are kept on Kubernetes (the standalone runtime
    takes --dead-letter-dir)."""


class PipelineSpec(_Model):
    """spec of a CDCPipeline, and the body of a standalone runtime's YAML."""

    source: SourceSpec
    """Where changes come from."""
    sinks: list[SinkSpec] = Field(min_length=1)
    """Where they go."""
    transforms: TransformSpec = TransformSpec()
    """Selection, renames, masking."""
    runtime: RuntimeSpec = RuntimeSpec()
    """Runtime settings."""
    paused: bool = False
    """Scale the runtimes to zero."""

    @model_validator(mode="after")
    def _unique_sink_names(self) -> PipelineSpec:
        names = [s.name for s in self.sinks]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"sink names must be unique; repeated: {', '.join(duplicates)}")
        reset = self.source.offsets_reset
        unknown = sorted(set(reset.sinks) - set(names)) if reset is not None else []
        if unknown:
            raise ValueError(f"source.offsetsReset.sinks: no sink named {', '.join(unknown)}")
        return self

    @model_validator(mode="after")
    def _mapped_tables_selected(self) -> PipelineSpec:
        for sink in self.sinks:
            for key in sink.table_mapping:
                keyspace, _, table = key.partition(".")
                if not selects(self.source.tables, keyspace, table) or not selects(
                    sink.tables or self.source.tables, keyspace, table
                ):
                    raise ValueError(
                        f"sink {sink.name}: tableMapping names {key}, a table this sink does not receive "
                        "(source.tables and the sink's tables select it)"
                    )
        return self
