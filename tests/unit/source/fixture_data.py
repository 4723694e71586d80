"""Access to the recorded segments in tests/fixtures/commitlog (made by scripts/record-fixtures.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from pipeline_runtime.cql.schema import TableSchema
from pipeline_runtime.events import ChangeEvent
from pipeline_runtime.source.schema.registry import SchemaRegistry, StaticSchemaSource
from pipeline_runtime.source.schema.rows import SchemaRows
from pipeline_runtime.source.tailer import CdcRawTailer, SourceBatch

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "commitlog"
RECORDINGS = ("v7", "v8", "v7-lz4")


def fx_tables(schema: TableSchema) -> bool:
    return schema.keyspace == "fx"


def registry(name: str, min_refresh_interval: float = 0.5) -> SchemaRegistry:
    rows = SchemaRows.from_json(json.loads((FIXTURES / name / "schema.json").read_text()))
    return SchemaRegistry(StaticSchemaSource(rows), selector=fx_tables, min_refresh_interval=min_refresh_interval)


def segment_path(name: str) -> Path:
    (path,) = sorted((FIXTURES / name).glob("CommitLog-*.log"))
    return path


def copy_recording(name: str, target: Path) -> Path:
    """A private copy of a recording (tests may damage or grow it)."""
    target.mkdir(parents=True, exist_ok=True)
    for path in (FIXTURES / name).iterdir():
        if path.name != "schema.json":
            shutil.copy(path, target / path.name)
    return target


def drain(tailer: CdcRawTailer) -> list[SourceBatch]:
    batches = []
    while (batch := tailer.poll()) is not None:
        batches.append(batch)
        if batch.completed_segment is not None:
            continue
    return batches


def events_of(name: str) -> list[ChangeEvent]:
    tailer = CdcRawTailer(FIXTURES / name, "node-1", registry(name))
    return [e for b in drain(tailer) for e in b.events]
