"""Decode whole segment files into plain records: ``headrace decode``, for looking inside cdc_raw.

Unlike the tailer this reads each file to its end-of-data marker, without
waiting for ``_cdc.idx``: it is a tool for a human, not the data path.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipeline_runtime.events import ChangeEvent, Position, SourcePosition
from pipeline_runtime.source.commitlog.fast import mutation_decoder
from pipeline_runtime.source.commitlog.segment import SegmentReader
from pipeline_runtime.source.schema.driver import DriverSchemaSource
from pipeline_runtime.source.schema.registry import SchemaRegistry


def event_record(event: ChangeEvent) -> dict[str, Any]:
    """An event as a JSON-friendly dict (values stay Python objects; ``json.dumps(default=str)`` prints them)."""
    record = dataclasses.asdict(event)
    record["source"] = {"node": event.source.node, "position": str(event.source.position)}
    return record


def dump_segments(paths: list[Path], session: Any, node: str) -> Iterator[dict[str, Any]]:
    """Every event of CDC-enabled tables in ``paths``, in file order."""
    registry = SchemaRegistry(DriverSchemaSource(session))
    for path in paths:
        reader = SegmentReader(path)
        header = reader.read_header()
        decoder = mutation_decoder(registry.plan, header.messaging_version)
        for entry in reader.read():
            source = SourcePosition(node, Position(entry.segment_id, entry.end))
            for event in decoder.decode(entry.body, source):
                yield event_record(event)
