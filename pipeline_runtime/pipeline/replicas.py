"""Replica dedup: at RF>1 each change is written about once, by the runtime of its primary replica.

Every replica's commitlog holds every change, so without this each of RF runtimes writes it
(``source.replicaDedup: off``). With it on, a runtime writes only the changes whose partition
token its own node is primary replica for, and *holds* the others: they are not written, and
its checkpoint does not move past them, so their segments stay on disk. The runtime of each
primary publishes a watermark through the sinks' checkpoint tables, beside the checkpoints:

- ``through``: every change of its ranges made durable on its node before this time is in every
  sink (now minus its lag), and
- ``since``: when the period it vouches for began (its runtime's start, or the last time it saw
  its own node return): changes before that may have reached its node late (hints) or never.

A held change made durable here at time ``t`` is then:

- **covered**, and dropped, once ``since + margin <= t <= through - margin`` for its owner;
- **taken over**, and written here, when the owner's watermark has not moved for ``takeover``
  seconds of this runtime's clock (its runtime or node is gone, or it never had one), or when
  ``t`` is before the owner's ``since`` (the owner may have missed it);
- otherwise held a while longer.

``margin`` covers the clocks of two nodes and the commitlog sync period (a change is durable on
each replica at its own next sync). Writing a change twice is always safe (the sinks merge by
writetime); the rule only has to make sure that nothing is dropped unless its owner wrote it. An owner
that lags but moves on is waited for, never taken over: taking over would add every replica's
writes to sinks that are already the bottleneck.
The argument, the failover window and the clock assumptions: docs/replicas.md.
"""

from __future__ import annotations

import bisect
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from pipeline_runtime.cql.schema import TableSchema
from pipeline_runtime.events import ChangeEvent, Position
from pipeline_runtime.source.commitlog.values import PROTOCOL_VERSION, driver_type

#: Checkpoint key under which the runtime of a Cassandra node (its host id) publishes its watermark.
WATERMARK_PREFIX = "replica-watermark:"
#: Most changes held in memory; past it the oldest are written (safe, only less deduplicated).
MAX_HELD = 200_000

Tokenizer = Callable[[TableSchema, ChangeEvent], "int | None"]


@dataclass(frozen=True)
class Watermark:
    """What the runtime of one node vouches for (seconds since the epoch, its node's clock)."""

    through: float
    since: float

    def position(self) -> Position:
        """As a checkpoint position: ordered by ``through`` (a checkpoint never moves backwards)."""
        return Position(int(self.through * 1000), int(self.since * 1000))

    @classmethod
    def from_position(cls, position: Position) -> Watermark:
        return cls(position.segment_id / 1000, position.offset / 1000)


def watermark_key(host_id: str) -> str:
    return WATERMARK_PREFIX + host_id


def watermarks(marks: Mapping[str, Mapping[str, Position]]) -> dict[str, Watermark]:
    """Per node (host id), the watermark every sink holds: the oldest over the sinks (a sink
    that has none yet gives none)."""
    per_sink = [
        {key[len(WATERMARK_PREFIX) :]: p for key, p in positions.items() if key.startswith(WATERMARK_PREFIX)}
        for positions in marks.values()
    ]
    if not per_sink:
        return {}
    hosts = set.intersection(*(set(p) for p in per_sink))
    return {host: Watermark.from_position(min(p[host] for p in per_sink)) for host in hosts}


class RingView(Protocol):
    """The token ring as this runtime sees it (the driver's metadata in the runtime, fixed in tests)."""

    @property
    def local(self) -> str:
        """Host id of this runtime's own node."""

    @property
    def local_up(self) -> bool:
        """Whether the driver holds this runtime's own node as up."""

    def nodes(self) -> set[str]:
        """Host ids of every node of the ring."""

    def owner(self, keyspace: str, token: int) -> str | None:
        """Host id of the primary replica of ``token`` in ``keyspace`` (None: not known at the moment)."""


@dataclass(frozen=True)
class Ring:
    """A fixed ring: each node's tokens by host id; the primary replica of a token is the node of
    the first ring token at or after it (SimpleStrategy, one datacenter)."""

    tokens: tuple[int, ...]
    owners: tuple[str, ...]
    local: str
    local_up: bool = True

    @classmethod
    def of(cls, pairs: Sequence[tuple[int, str]], local: str) -> Ring:
        ordered = sorted(pairs)
        return cls(tuple(t for t, _ in ordered), tuple(o for _, o in ordered), local)

    def nodes(self) -> set[str]:
        return set(self.owners)

    def owner(self, keyspace: str, token: int) -> str | None:
        index = bisect.bisect_left(self.tokens, token)
        return self.owners[index % len(self.owners)]


def murmur3_token(schema: TableSchema, event: ChangeEvent) -> int | None:
    """The partition's Murmur3 token, from its key values as the driver serializes them (None: cannot)."""
    from cassandra.metadata import Murmur3Token  # noqa: PLC0415

    columns = schema.partition_key
    try:
        parts = [
            driver_type(c.type, schema.keyspace).serialize(event.partition_key[c.name], PROTOCOL_VERSION)
            for c in columns
        ]
    except Exception:  # an unusual value the driver cannot serialize: written, as without dedup
        return None
    return int(Murmur3Token.hash_fn(routing_key(parts)))


def routing_key(parts: Sequence[bytes]) -> bytes:
    """A partition key's bytes: the one component, or each length-prefixed and followed by a zero byte."""
    if len(parts) == 1:
        return parts[0]
    return b"".join(len(p).to_bytes(2, "big") + p + b"\x00" for p in parts)


@dataclass
class _Held:
    event: ChangeEvent
    owner: str
    durable_at: float
    #: Where reading must start again to see this change (the end of the entry before it).
    resume_at: Position


@dataclass
class ReplicaRouter:
    """Decides, change by change, whether this runtime writes it now, holds it, or drops it as covered."""

    ring: Callable[[], RingView | None]
    schema: Callable[[str, str], TableSchema]
    margin: float
    takeover: float
    tokenizer: Tokenizer = murmur3_token
    clock: Callable[[], float] = time.time
    #: Set at start and whenever this runtime saw its own node down or back (``Watermark.since``).
    since: float = field(default_factory=time.time)
    held: deque[_Held] = field(default_factory=deque)
    marks: dict[str, Watermark] = field(default_factory=dict)
    #: When (this runtime's clock) each owner's watermark was last seen to change: its liveness.
    moved: dict[str, float] = field(default_factory=dict)
    #: Changes by what became of them: written (owned), taken_over, held, covered.
    counts: Counter[str] = field(default_factory=Counter)
    _ring: RingView | None = None

    def refresh(self, marks: Mapping[str, Watermark]) -> None:
        """Take the latest ring and the owners' published watermarks."""
        self._ring = ring = self.ring()
        now = self.clock()
        for owner, mark in marks.items():
            if self.marks.get(owner) != mark:
                self.moved[owner] = now
        self.marks = dict(marks)
        if ring is not None and not ring.local_up:
            self.since = self.clock()  # its own node is down: what it vouches for starts again on return

    @property
    def local(self) -> str | None:
        return self._ring.local if self._ring is not None else None

    def route(self, events: Sequence[ChangeEvent], durable_at: float, resume_at: Position) -> list[ChangeEvent]:
        """The changes of one commitlog entry this runtime writes now; the others are held."""
        ring = self._ring
        now = self.clock()
        if ring is None:
            # No ring known (yet): behave as without dedup, and so may the others meanwhile.
            self.counts["taken_over"] += len(events)
            return list(events)
        out = []
        owners: dict[tuple[str, str, str], str | None] = {}  # the events of one entry are mostly of one partition
        for event in events:
            partition = (event.keyspace, event.table, repr(event.partition_key))
            if partition in owners:
                owner = owners[partition]
            else:
                token = self.tokenizer(self.schema(event.keyspace, event.table), event)
                owner = owners[partition] = ring.local if token is None else ring.owner(event.keyspace, token)
            if owner is None:
                # No known owner: writing it is always safe, and the others may do the same meanwhile.
                self.counts["taken_over"] += 1
                out.append(event)
            elif owner == ring.local:
                self.counts["written"] += 1
                out.append(event)
            elif self._stale(owner, now):
                self.counts["taken_over"] += 1
                out.append(event)
            else:
                self.counts["held"] += 1
                self.held.append(_Held(event, owner, durable_at, resume_at))
        while len(self.held) > MAX_HELD:
            self.counts["taken_over"] += 1
            out.append(self.held.popleft().event)
        return out

    def resolve(self) -> list[ChangeEvent]:
        """Drop the held changes their owners now cover; return those this runtime must write after all."""
        if not self.held:
            return []
        now = self.clock()
        keep: deque[_Held] = deque()
        out = []
        for item in self.held:
            verdict = self.verdict(item.owner, item.durable_at, now)
            if verdict == "covered":
                self.counts["covered"] += 1
            elif verdict == "take":
                self.counts["taken_over"] += 1
                out.append(item.event)
            else:
                keep.append(item)
        self.held = keep
        return out

    def verdict(self, owner: str, t: float, now: float) -> str:
        """``covered``, ``take`` or ``hold`` for a change of ``owner``'s ranges made durable here at ``t``."""
        mark = self.marks.get(owner)
        if mark is None:
            return "take" if now - t >= self.takeover else "hold"
        if self._stale(owner, now):
            return "take"  # its runtime stopped vouching: write its ranges here
        if t < mark.since + self.margin:
            return "take"  # before the period it vouches for: it may have missed it
        if t + self.margin <= mark.through:
            return "covered"
        return "hold"

    def _stale(self, owner: str, now: float) -> bool:
        moved = self.moved.get(owner)
        return owner in self.marks and moved is not None and now - moved >= self.takeover

    def own_watermark(self, lag: float) -> tuple[str, Watermark] | None:
        """This runtime's watermark to publish (None while its node is down or unknown)."""
        ring = self._ring
        if ring is None or not ring.local_up:
            return None
        return ring.local, Watermark(self.clock() - lag, self.since)

    def hold_from(self) -> Position | None:
        """The checkpoint may not pass this: where the oldest held change must be read again."""
        return self.held[0].resume_at if self.held else None

    def status(self, now: float | None = None) -> dict[str, str]:
        """Per node of the ring: ``writing`` (this runtime's own), ``standby`` or ``taking over``."""
        ring = self._ring
        if ring is None:
            return {}
        now = self.clock() if now is None else now
        out = {}
        for owner in sorted(ring.nodes()):
            if owner == ring.local:
                out[owner] = "writing"
            else:
                out[owner] = "taking over" if self._stale(owner, now) else "standby"
        return out
