"""``headrace offsets``: list and reset a pipeline's committed positions in its sinks.

Each sink keeps one row per pipeline and key in its checkpoint table (``headrace.checkpoints``):

- a node's name: the commitlog position below which every change of that node is in the sink;
  a runtime restarts from the lowest over its sinks (``checkpoint.positions``);
- ``snapshot:...``: how far a snapshot read (docs/snapshot.md);
- ``replica-watermark:<host id>``: what a node's runtime vouches for with ``replicaDedup`` (docs/replicas.md).

A reset sets one node's commitlog position exactly, in every sink or the named ones, also backwards (the
runtime reads again from there: what is still in ``cdc_raw`` is replayed, and writes are idempotent) or
forwards (what lies between is never written to that sink). It is refused while a runtime reads the node's
``cdc_raw``: the command takes the runtime's own claim (``cdc_raw/.headrace.lock``) for the time it writes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path

from pipeline_runtime.app import build_sink
from pipeline_runtime.config.loader import LoadedPipeline
from pipeline_runtime.errors import ConfigError
from pipeline_runtime.events import Position
from pipeline_runtime.pipeline.replicas import WATERMARK_PREFIX
from pipeline_runtime.secrets import SecretStore
from pipeline_runtime.sinks.base import PositionReset, Sink
from pipeline_runtime.source.claim import CdcRawClaim

log = logging.getLogger(__name__)

SNAPSHOT_PREFIX = "snapshot:"


@dataclass(frozen=True)
class Offset:
    """One row of one sink's checkpoint table."""

    sink: str
    key: str
    position: Position

    @property
    def kind(self) -> str:
        if self.key.startswith(SNAPSHOT_PREFIX):
            return "snapshot"
        if self.key.startswith(WATERMARK_PREFIX):
            return "replica watermark"
        return "commitlog"


@dataclass(frozen=True)
class Reset:
    """What a reset changed in one sink."""

    sink: str
    before: Position | None
    after: Position | None


def parse_position(text: str) -> Position:
    """``SEGMENT:OFFSET`` (a segment id as in ``CommitLog-8-<id>.log``, a byte offset in it)."""
    segment, sep, offset = text.partition(":")
    try:
        if not sep:
            raise ValueError
        position = Position(int(segment), int(offset))
    except ValueError:
        raise ConfigError(f"position {text!r}: expected SEGMENT:OFFSET, e.g. 1733312345678:0") from None
    if position.segment_id < 0 or position.offset < 0:
        raise ConfigError(f"position {text!r}: segment and offset are not negative")
    return position


@contextlib.asynccontextmanager
async def opened(
    pipeline: LoadedPipeline, secrets_dir: Path, names: Iterable[str] | None = None
) -> AsyncIterator[list[Sink]]:
    """The pipeline's sinks (or the named ones), opened as the runtime opens them, closed after."""
    wanted = set(names) if names else None
    specs = [s for s in pipeline.spec.sinks if wanted is None or s.name in wanted]
    unknown = sorted((wanted or set()) - {s.name for s in pipeline.spec.sinks})
    if unknown:
        raise ConfigError(f"no sink named {', '.join(unknown)} in pipeline {pipeline.name}")
    secrets = SecretStore(secrets_dir)
    sinks: list[Sink] = []
    try:
        for spec in specs:
            sink = build_sink(spec, secrets, concurrent_writers=lambda: False)
            sinks.append(sink)
            await sink.open()
        yield sinks
    finally:
        for sink in sinks:
            await sink.close()


async def list_offsets(pipeline: LoadedPipeline, secrets_dir: Path) -> list[Offset]:
    """Every committed position of the pipeline, per sink, ordered by sink and key."""
    async with opened(pipeline, secrets_dir) as sinks:
        return [
            Offset(sink.name, key, position)
            for sink in sinks
            for key, position in sorted((await sink.committed_positions(pipeline.name)).items())
        ]


async def reset_offsets(
    pipeline: LoadedPipeline,
    secrets_dir: Path,
    node: str,
    position: Position | None,
    *,
    cdc_raw: Path,
    sinks: Iterable[str] | None = None,
) -> list[Reset]:
    """Set ``node``'s position in the sinks (None: remove it, the runtime reads all of ``cdc_raw``)."""
    claim = CdcRawClaim(cdc_raw, pipeline.name, node)
    if not claim.take():  # raises CdcRawClaimedError, naming the runtime that holds it
        raise ConfigError(
            f"cdc_raw {cdc_raw} does not exist: pass --cdc-raw of node {node}, so that the reset can make "
            "sure no runtime reads it meanwhile"
        )
    try:
        async with opened(pipeline, secrets_dir, sinks) as targets:
            changes = []
            for sink in targets:
                if not isinstance(sink, PositionReset):
                    raise ConfigError(f"sink {sink.name}: its positions cannot be reset")
                before = (await sink.committed_positions(pipeline.name)).get(node)
                await sink.reset_position(pipeline.name, node, position)
                changes.append(Reset(sink.name, before, position))
            return changes
    finally:
        claim.release()


def reset_marker(cdc_raw: Path, pipeline: str) -> Path:
    """Where a runtime keeps the last ``source.offsetsReset.request`` it applied (on the node's own volume)."""
    return cdc_raw / f".headrace-offsets-reset-{pipeline}"


async def apply_requested_reset(pipeline: LoadedPipeline, secrets_dir: Path, node: str, cdc_raw: Path) -> list[Reset]:
    """Apply ``source.offsetsReset`` for ``node`` once per request, before the runtime starts reading.

    The request applied last is kept in ``reset_marker``, written after every sink is reset: a runtime
    that stops in between applies it again at its next start, which only reads again what it had read
    (a reset sets a fixed position, and writes are idempotent).
    """
    asked = pipeline.spec.source.offsets_reset
    if asked is None or (asked.nodes and node not in asked.nodes):
        return []
    marker = reset_marker(cdc_raw, pipeline.name)
    with contextlib.suppress(FileNotFoundError, ValueError):
        if json.loads(marker.read_text()).get("request") == asked.request:
            return []
    position = None if asked.to == "earliest" else parse_position(asked.to)
    changes = await reset_offsets(pipeline, secrets_dir, node, position, cdc_raw=cdc_raw, sinks=asked.sinks or None)
    written = marker.with_suffix(".tmp")
    with written.open("w") as out:
        json.dump({"request": asked.request, "to": asked.to}, out)
        out.flush()
        os.fsync(out.fileno())
    written.replace(marker)
    log.warning(
        "offsets reset as requested",
        extra={
            "request": asked.request,
            "to": asked.to,
            "sinks": {c.sink: f"{c.before} -> {c.after or 'earliest'}" for c in changes},
        },
    )
    return changes
