"""Masked values never reach a sink table, a dead letter or a log line; bad rows are dead-lettered."""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path

import pytest
from cassandra.util import Date

from pipeline_runtime.config.model import ColumnSelection, MaskRule, MaskStrategy, SecretRef, TransformSpec
from pipeline_runtime.cql.schema import ColumnKind, TableSchema
from pipeline_runtime.events import (
    Cell,
    ChangeEvent,
    CollectionChange,
    ElementCell,
    Liveness,
    Op,
    Position,
    SourcePosition,
)
from pipeline_runtime.sinks.base import Batch, Checkpoint
from pipeline_runtime.sinks.deadletter import JsonlDeadLetters
from pipeline_runtime.sinks.retry import Backoff
from pipeline_runtime.sinks.writer import BatchWriter
from pipeline_runtime.transforms import Transformer, read_hash_key
from tests.integration.sinks.conftest import Harness
from tests.integration.sinks.workload import column

RAW = {
    "user_id": "user-8c1f3a",
    "email": "alice.secret@example.org",
    "phone": "+44 7700 900123",
    "ssn": "078-05-1120",
    "notes": "Secret diagnosis: confidential",
    "alt_email": "alice.backup@example.net",
}


def users_schema() -> TableSchema:
    return TableSchema(
        "ks",
        "users",
        uuid.uuid4(),
        (
            column("user_id", "text", ColumnKind.PARTITION_KEY, 0),
            column("email", "text"),
            column("phone", "text"),
            column("ssn", "text"),
            column("notes", "text"),
            column("emails", "set<text>"),
            column("joined", "date"),
            column("internal", "text"),
        ),
    )


def spec() -> TransformSpec:
    rules = [
        MaskRule(table="ks.users", column="user_id", strategy=MaskStrategy.HASH),
        MaskRule(table="ks.users", column="email", strategy=MaskStrategy.PARTIAL, length=4),
        MaskRule(table="ks.users", column="phone", strategy=MaskStrategy.REDACT),
        MaskRule(table="ks.users", column="ssn", strategy=MaskStrategy.NULL),
        MaskRule(table="ks.users", column="notes", strategy=MaskStrategy.TRUNCATE, length=6),
        MaskRule(table="ks.users", column="emails", strategy=MaskStrategy.HASH),
    ]
    return TransformSpec(
        masking=rules,
        columns=[ColumnSelection(table="ks.*", exclude=["internal"], rename={"notes": "note_prefix"})],
        hash_key_secret=SecretRef(name="headrace-hash", key="key"),
    )


def event(offset: int, joined: Date) -> ChangeEvent:
    ts = 1_000 + offset
    cells = {
        "email": Cell(RAW["email"], ts),
        "phone": Cell(RAW["phone"], ts),
        "ssn": Cell(RAW["ssn"], ts),
        "notes": Cell(RAW["notes"], ts),
        "internal": Cell("internal-only-value", ts),
        "joined": Cell(joined, ts),
        "emails": CollectionChange(
            None, (ElementCell(RAW["alt_email"], None, ts), ElementCell(RAW["email"], None, ts))
        ),
    }
    user = {"user_id": RAW["user_id"] + str(offset)}
    return ChangeEvent(
        Op.UPSERT, "ks", "users", user, SourcePosition("n", Position(3, offset)), {}, cells, Liveness(ts)
    )


# The users table has no timestamp or integer key column a hypertable could partition by; the
# TimescaleDB sink writes exactly as the PostgreSQL one does (its own kind runs the other suites).
@pytest.mark.parametrize("harness", ["postgres", "clickhouse", "clickhouse-python"], indirect=True)
async def test_masked_values_appear_nowhere(
    harness: Harness, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("HEADRACE_TEST_HASH_KEY", "k" * 32)
    transformer = Transformer(spec(), read_hash_key(env="HEADRACE_TEST_HASH_KEY"))
    schema = transformer.schema(users_schema())
    assert schema.by_name["user_id"].kind is ColumnKind.PARTITION_KEY
    assert "internal" not in schema.by_name
    assert "note_prefix" in schema.by_name

    sink = harness.make()
    await sink.open()
    await sink.ensure_table(schema)
    letters_file = tmp_path / "dead.jsonl"
    writer = BatchWriter(sink, JsonlDeadLetters(letters_file), Backoff(initial=0.01, attempts=2))
    # Event 2's date is beyond every sink's date range: a row-level rejection.
    raw_events = [event(1, Date(19000)), event(2, Date(2**31 - 1)), event(3, Date(19001))]
    events = [transformer.event(e) for e in raw_events]
    rejected = await writer.write(Batch(events, Checkpoint("mask", "n", Position(3, 3))))
    await sink.close()

    assert len(rejected) == 1
    rows = await harness.rows(schema)
    assert len(rows) == 2
    for row in rows:
        assert row["phone"] == "***"
        assert row["ssn"] is None
        assert row["note_prefix"] == "Secret"
        assert row["email"].endswith(".org") and set(row["email"][:-4]) == {"*"}
        assert len(row["user_id"]) == 64  # HMAC-SHA256 hex

    letters = [json.loads(line) for line in letters_file.read_text().splitlines()]
    assert [(d["segment_id"], d["offset"], d["table"]) for d in letters] == [(3, 2, "users")]
    assert letters[0]["reason"]

    stored = await harness.stored_text()
    places = {"sink tables": stored, "dead letters": letters_file.read_text(), "logs": caplog.text}
    assert "dead-lettered" in caplog.text
    for where, text in places.items():
        for name, value in RAW.items():
            assert value not in text, f"raw {name} found in {where}"
        assert "internal-only-value" not in text, f"excluded column found in {where}"
