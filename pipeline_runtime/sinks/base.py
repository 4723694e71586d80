"""The one interface every sink implements, and what flows through it.

The pipeline wiring drives a sink through this lifecycle::

    sink = PostgresSink(...)            # or TimescaleSink, ClickHouseSink
    await sink.open()                   # connect; create the checkpoint table
    await sink.ensure_table(schema)     # create or evolve the target table(s)
    await sink.write(batch)             # events + checkpoint, all or nothing
    await sink.committed_positions(pipeline)   # {node: Position} to restart from
    sink.health()                       # rows written, last commit time, state
    await sink.close()

``write`` is exactly-once in effect: the events' effect and the checkpoint
become visible together (PostgreSQL: one transaction) or the data write is
idempotent and the checkpoint follows it (ClickHouse). Writing the same batch
twice, or the same events in any other order or grouping, leaves the same
rows, because every sink resolves each cell by Cassandra's own rule (last
write wins by writetime, a tombstone beats an older-or-equal write).

Schemas and events given to a sink are already transformed (selection,
renames, masking): a sink never sees a raw masked value.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from pipeline_runtime.cql.schema import TableSchema
from pipeline_runtime.errors import ConfigError
from pipeline_runtime.events import ChangeEvent, Position


class SinkState(enum.StrEnum):
    """Lifecycle of a sink; transitions only forward, except DEGRADED <-> OPEN."""

    NEW = "new"
    OPEN = "open"
    DEGRADED = "degraded"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """How far one runtime (pipeline, node) has written into a sink."""

    pipeline: str
    node: str
    position: Position


@dataclass(frozen=True, slots=True)
class Batch:
    """Events to write and, optionally, the checkpoint they complete.

    ``checkpoint`` is None for the partial writes of a bisection: those are
    idempotent, so committing them without moving the checkpoint is safe.
    """

    events: Sequence[ChangeEvent]
    checkpoint: Checkpoint | None = None


@dataclass(slots=True)
class SinkHealth:
    """What the runtime reports for a sink in the pipeline's status."""

    name: str
    state: SinkState = SinkState.NEW
    rows_written: int = 0
    batches_committed: int = 0
    last_commit: dt.datetime | None = None
    last_error: str | None = None
    retries: int = 0

    @property
    def healthy(self) -> bool:
        return self.state is SinkState.OPEN

    def committed(self, rows: int) -> None:
        """Record a successful commit of ``rows`` rows."""
        self.rows_written += rows
        self.batches_committed += 1
        self.last_commit = dt.datetime.now(dt.UTC)
        self.state = SinkState.OPEN
        self.last_error = None


@runtime_checkable
class Sink(Protocol):
    """A destination with exactly-once effect (see the module docstring)."""

    name: str

    async def open(self) -> None:
        """Connect and prepare the checkpoint storage; raise ``SinkError`` types."""

    async def close(self) -> None:
        """Release connections; idempotent."""

    async def ensure_table(self, schema: TableSchema) -> None:
        """Create the target table for ``schema`` or add its new columns.

        Raises ``SchemaDriftError`` for a dropped or retyped column: those are
        never applied silently.
        """

    async def write(self, batch: Batch) -> None:
        """Apply the batch's events and commit its checkpoint with them."""

    async def committed_positions(self, pipeline: str) -> dict[str, Position]:
        """The committed position per node of ``pipeline`` in this sink."""

    def health(self) -> SinkHealth:
        """Counters and state for status reports and /readyz."""


@runtime_checkable
class PositionReset(Protocol):
    """A sink whose committed positions can be set by hand (``headrace offsets reset``)."""

    async def reset_position(self, pipeline: str, node: str, position: Position | None) -> None:
        """Set ``node``'s committed position to exactly ``position``, also backwards (None: remove it, so the
        runtime reads all of cdc_raw again). Only while no runtime of the pipeline writes for that node."""


@dataclass(frozen=True, slots=True)
class TableNaming:
    """Where a Cassandra table lands in a sink: namespace (schema/database) and name."""

    target: str | None = None
    mapping: dict[str, str] = field(default_factory=dict)
    #: (namespace, name) -> the Cassandra table placed there by ``place``.
    placed: dict[tuple[str, str], str] = field(default_factory=dict, compare=False, repr=False)

    def namespace(self, keyspace: str) -> str:
        return self.target or keyspace

    def table(self, keyspace: str, table: str) -> str:
        return self.mapping.get(f"{keyspace}.{table}", table)

    def place(self, keyspace: str, table: str, sink: str) -> tuple[str, str]:
        """(namespace, name) of a table ``sink`` is about to make; ConfigError when another table has it."""
        where = self.namespace(keyspace), self.table(keyspace, table)
        qualified = f"{keyspace}.{table}"
        other = self.placed.setdefault(where, qualified)
        if other != qualified:
            raise ConfigError(
                f"sink {sink}: tables {other} and {qualified} would both land in {where[0]}.{where[1]}: "
                "give one of them another name with tableMapping (or the sinks their own tables)"
            )
        return where


def by_table(events: Sequence[ChangeEvent]) -> dict[str, list[ChangeEvent]]:
    """A batch's events per ``keyspace.table``, in batch order within each table."""
    out: dict[str, list[ChangeEvent]] = {}
    for event in events:
        out.setdefault(event.qualified_table, []).append(event)
    return out
