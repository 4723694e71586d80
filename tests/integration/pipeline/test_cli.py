"""``headrace`` as a user runs it: a standalone process from a YAML file, against real servers."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from devservices.cassandra import CassandraNode
from devservices.postgres import PostgresServer
from devservices.process import free_port
from pipeline_runtime.app import build_sink
from pipeline_runtime.config.loader import load_pipeline
from pipeline_runtime.events import Position
from pipeline_runtime.offsets import Reset, apply_requested_reset, reset_marker
from pipeline_runtime.secrets import SecretStore
from pipeline_runtime.sinks.base import Batch, Checkpoint
from pipeline_runtime.source.claim import CdcRawClaim, CdcRawClaimedError

REPLICATION = "{'class': 'SimpleStrategy', 'replication_factor': 1}"
PASSWORD = "pw-" + uuid.uuid4().hex  # trust auth ignores it; it must never show up in a log line


def headrace(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline_runtime", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        **kwargs,
    )


def pipeline_file(tmp: Path, keyspace: str, port: int, dsn: str | None) -> tuple[Path, Path]:
    secrets = tmp / "secrets"
    if dsn is not None:
        (secrets / "pg").mkdir(parents=True)
        (secrets / "pg" / "dsn").write_text(dsn)
    config = {
        "source": {
            "cassandra": {"contactPoint": "127.0.0.1", "port": port},
            "tables": [{"keyspace": keyspace}],
            # live changes only: the metrics below count CDC events, which a snapshot would add to
            "snapshot": {"mode": "never"},
        },
        "sinks": [
            {"name": "pg", "type": "postgres", "connectionSecret": {"name": "pg", "key": "dsn"}, "flushIntervalMs": 100}
        ],
    }
    path = tmp / "local.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, secrets


def test_validate_says_what_is_missing_and_what_is_fine(tmp_path: Path) -> None:
    config, secrets = pipeline_file(tmp_path, "shop", 9042, None)
    cdc_raw = tmp_path / "cdc_raw"
    missing = headrace("validate", "--config", str(config), "--secrets-dir", str(secrets), "--cdc-raw", str(cdc_raw))
    assert missing.returncode == 2
    assert "sink pg: secret pg/dsn is not available" in missing.stderr
    assert f"cdc_raw directory {cdc_raw} does not exist" in missing.stderr

    (secrets / "pg").mkdir(parents=True)
    (secrets / "pg" / "dsn").write_text("postgresql://u@h/db")
    cdc_raw.mkdir()
    ok = headrace("validate", "--config", str(config), "--secrets-dir", str(secrets), "--cdc-raw", str(cdc_raw))
    assert ok.returncode == 0, ok.stderr
    assert "pipeline local: 1 sink(s), configuration is valid" in ok.stdout

    config.write_text(yaml.safe_dump({"source": {"cassandra": {}, "tables": []}, "sinks": []}))
    invalid = headrace("validate", "--config", str(config), "--cdc-raw", str(cdc_raw))
    assert invalid.returncode == 2
    assert "spec.source.tables: List should have at least 1 item" in invalid.stderr
    assert "spec.sinks: List should have at least 1 item" in invalid.stderr


@pytest.mark.postgres
def test_validate_check_connections_opens_each_sink_and_says_which_failed(postgres_dsn: str, tmp_path: Path) -> None:
    config, secrets = pipeline_file(tmp_path, "shop", 9042, postgres_dsn)
    document = yaml.safe_load(config.read_text())
    dead = f"postgresql://postgres@127.0.0.1:{free_port('127.0.0.1')}/nowhere"
    (secrets / "dead").mkdir()
    (secrets / "dead" / "dsn").write_text(dead)
    document["sinks"].append(
        {"name": "dead", "type": "postgres", "connectionSecret": {"name": "dead", "key": "dsn"}, "writeMode": "append"}
    )
    config.write_text(yaml.safe_dump(document))
    cdc_raw = tmp_path / "cdc_raw"
    cdc_raw.mkdir()
    args = ["validate", "--config", str(config), "--secrets-dir", str(secrets), "--cdc-raw", str(cdc_raw)]
    result = headrace(*args, "--check-connections")
    assert result.returncode == 2, result
    assert "sink pg (postgres, upsert): ok" in result.stdout
    assert "sink dead (postgres, append): sink dead: connection to PostgreSQL failed" in result.stderr
    assert headrace(*args).returncode == 0  # without the flag nothing is opened


@pytest.mark.cassandra
@pytest.mark.postgres
def test_standalone_run_replicates_reports_and_stops_cleanly(
    cassandra_v7: CassandraNode, postgres: PostgresServer, tmp_path: Path
) -> None:
    keyspace = f"cli_{uuid.uuid4().hex[:8]}"
    session = cassandra_v7.session()
    session.execute(f"CREATE KEYSPACE {keyspace} WITH replication = {REPLICATION}")
    session.execute(f"CREATE TABLE {keyspace}.events (id int PRIMARY KEY, body text) WITH cdc = true")
    database = postgres.create_database(keyspace)
    dsn = database.replace("postgres@", f"postgres:{PASSWORD}@")
    config, secrets = pipeline_file(tmp_path, keyspace, cassandra_v7.port, dsn)
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipeline_runtime",
            "run",
            "--config",
            str(config),
            "--secrets-dir",
            str(secrets),
            "--cdc-raw",
            str(cassandra_v7.cdc_raw_dir),
            "--node",
            "cli-node",
            "--http-host",
            "127.0.0.1",
            "--http-port",
            str(port),
            "--dead-letter-dir",
            str(tmp_path / "dead"),
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for i in range(20):
            session.execute(f"INSERT INTO {keyspace}.events (id, body) VALUES ({i}, 'body {i}')")
        deadline = time.monotonic() + 60
        rows = ""
        while time.monotonic() < deadline:
            try:
                rows = postgres.psql(f"SELECT count(*) FROM {keyspace}.events", database=keyspace).strip()
            except Exception:
                rows = ""
            if rows == "20":
                break
            time.sleep(0.3)
        assert rows == "20"
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        labels = f'node="cli-node",op="upsert",pipeline="local",sink="pg",table="{keyspace}.events"'
        assert f"headrace_events_written_total{{{labels}}} 20.0" in metrics
        assert urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5).read() == b"ready\n"
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert lines, stderr
    assert all(line["pipeline"] == "local" and line["node"] == "cli-node" for line in lines)
    assert any(line["msg"] == "replicating" for line in lines)
    assert PASSWORD not in stderr


@pytest.mark.cassandra
def test_decode_prints_the_events_of_a_segment(cassandra_v7: CassandraNode) -> None:
    keyspace = f"dec_{uuid.uuid4().hex[:8]}"
    session = cassandra_v7.session()
    session.execute(f"CREATE KEYSPACE {keyspace} WITH replication = {REPLICATION}")
    session.execute(f"CREATE TABLE {keyspace}.notes (id int PRIMARY KEY, body text) WITH cdc = true")
    session.execute(f"INSERT INTO {keyspace}.notes (id, body) VALUES (7, 'seven')")
    session.execute(f"DELETE FROM {keyspace}.notes WHERE id = 8")
    time.sleep(0.5)  # one periodic commitlog sync
    segments = sorted(str(p) for p in cassandra_v7.cdc_raw_dir.glob("CommitLog-*.log"))
    result = headrace("decode", *segments, "--contact-point", "127.0.0.1", "--port", str(cassandra_v7.port))
    assert result.returncode == 0, result.stderr
    mine = [json.loads(line) for line in result.stdout.splitlines() if f'"keyspace": "{keyspace}"' in line]
    # Without clustering columns a row delete is a partition deletion in Cassandra's own terms.
    assert [(e["op"], e["partition_key"]) for e in mine] == [("upsert", {"id": 7}), ("delete_partition", {"id": 8})]
    assert mine[0]["cells"]["body"]["value"] == "seven"
    assert mine[0]["source"]["node"] == "local"


@pytest.mark.postgres
async def test_offsets_are_listed_and_reset_in_every_sink_only_while_no_runtime_reads(
    postgres_dsn: str, clickhouse_http_dsn: str, tmp_path: Path
) -> None:
    """`headrace offsets`: both sinks (PostgreSQL, and ClickHouse over HTTP from another process)."""
    config, secrets = pipeline_file(tmp_path, "shop", 9042, postgres_dsn)
    document = yaml.safe_load(config.read_text())
    (secrets / "ch").mkdir()
    (secrets / "ch" / "dsn").write_text(clickhouse_http_dsn)
    document["sinks"].append({"name": "ch", "type": "clickhouse", "connectionSecret": {"name": "ch", "key": "dsn"}})
    config.write_text(yaml.safe_dump(document))
    pipeline = load_pipeline(config)
    node = f"node-{uuid.uuid4().hex[:6]}"
    store = SecretStore(secrets)
    for spec in pipeline.spec.sinks:
        sink = build_sink(spec, store, concurrent_writers=lambda: False)
        await sink.open()
        try:
            await sink.write(Batch([], Checkpoint("local", node, Position(100, 50))))
            await sink.write(Batch([], Checkpoint("local", f"replica-watermark:{node}", Position(7, 3))))
        finally:
            await sink.close()
    cdc_raw = tmp_path / "cdc_raw"
    cdc_raw.mkdir()
    common = ["--config", str(config), "--secrets-dir", str(secrets), "--cdc-raw", str(cdc_raw), "--node", node]

    def listed() -> dict[tuple[str, str], str]:
        result = headrace("offsets", "list", *common, "--json")
        assert result.returncode == 0, result.stderr
        rows = [json.loads(line) for line in result.stdout.splitlines()]
        return {(r["sink"], r["key"]): f"{r['segment']}:{r['offset']} {r['kind']}" for r in rows if node in r["key"]}

    assert listed() == {
        ("ch", node): "100:50 commitlog",
        ("ch", f"replica-watermark:{node}"): "7:3 replica watermark",
        ("pg", node): "100:50 commitlog",
        ("pg", f"replica-watermark:{node}"): "7:3 replica watermark",
    }
    text = headrace("offsets", "list", *common)
    assert f"pg\t{node}\t100:50\tcommitlog" in text.stdout.splitlines()

    dry = headrace("offsets", "reset", *common, "--to", "90:0")
    assert dry.returncode == 1 and "add --yes" in dry.stdout
    assert listed()[("pg", node)] == "100:50 commitlog"

    back = headrace("offsets", "reset", *common, "--to", "90:0", "--yes")  # backwards: commits never do that
    assert back.returncode == 0, back.stderr
    assert set(back.stdout.splitlines()) == {f"pg\t{node}\t100:50 -> 90:0", f"ch\t{node}\t100:50 -> 90:0"}
    assert {k: v for k, v in listed().items() if k[1] == node} == {
        ("pg", node): "90:0 commitlog",
        ("ch", node): "90:0 commitlog",
    }
    again = headrace("offsets", "reset", *common, "--to", "100:50", "--sink", "ch", "--yes")  # a position stored before
    assert again.returncode == 0, again.stderr
    assert listed()[("ch", node)] == "100:50 commitlog" and listed()[("pg", node)] == "90:0 commitlog"
    earliest = headrace("offsets", "reset", *common, "--earliest", "--sink", "ch", "--yes")
    assert earliest.returncode == 0, earliest.stderr
    assert ("ch", node) not in listed() and listed()[("pg", node)] == "90:0 commitlog"

    claim = CdcRawClaim(cdc_raw, "local", node)
    assert claim.take()  # a runtime reads this cdc_raw
    try:
        refused = headrace("offsets", "reset", *common, "--to", "1:0", "--yes")
    finally:
        claim.release()
    assert refused.returncode == 1 and "read by another runtime" in refused.stderr, refused.stderr
    assert listed()[("pg", node)] == "90:0 commitlog"
    unknown = headrace("offsets", "reset", *common, "--to", "1:0", "--sink", "nope", "--yes")
    assert unknown.returncode == 2 and "no sink named nope" in unknown.stderr
    bad = headrace("offsets", "reset", *common, "--to", "12", "--yes")
    assert bad.returncode == 2 and "expected SEGMENT:OFFSET" in bad.stderr


@pytest.mark.postgres
async def test_a_requested_reset_is_applied_once_per_request_as_the_runtime_starts(
    postgres_dsn: str, tmp_path: Path
) -> None:
    """`source.offsetsReset` (the operator sets it from the headrace.io/reset-offsets annotation)."""
    config, secrets = pipeline_file(tmp_path, "shop", 9042, postgres_dsn)
    document = yaml.safe_load(config.read_text())
    node = f"node-{uuid.uuid4().hex[:6]}"
    cdc_raw = tmp_path / "cdc_raw"
    cdc_raw.mkdir()
    store = SecretStore(secrets)

    async def position() -> Position | None:
        sink = build_sink(load_pipeline(config).spec.sinks[0], store, concurrent_writers=lambda: False)
        await sink.open()
        try:
            return (await sink.committed_positions("local")).get(node)
        finally:
            await sink.close()

    async def commit(at: Position) -> None:
        sink = build_sink(load_pipeline(config).spec.sinks[0], store, concurrent_writers=lambda: False)
        await sink.open()
        try:
            await sink.write(Batch([], Checkpoint("local", node, at)))
        finally:
            await sink.close()

    async def start(reset: dict[str, Any] | None) -> list[Reset]:
        document["source"]["offsetsReset"] = reset
        config.write_text(yaml.safe_dump(document))
        return await apply_requested_reset(load_pipeline(config), secrets, node, cdc_raw)

    await commit(Position(100, 50))
    assert await start(None) == []
    assert await position() == Position(100, 50)
    # Another node's request leaves this one alone.
    assert await start({"request": "r1", "to": "90:0", "nodes": ["elsewhere"]}) == []
    assert await position() == Position(100, 50)
    assert await start({"request": "r1", "to": "90:0"}) == [Reset("pg", Position(100, 50), Position(90, 0))]
    assert await position() == Position(90, 0)
    # The runtime goes on and commits; a restart with the same request does not reset again.
    await commit(Position(120, 0))
    assert await start({"request": "r1", "to": "90:0"}) == []
    assert await position() == Position(120, 0)
    # A new request applies: earliest removes the position (the runtime reads all of cdc_raw).
    assert await start({"request": "earliest@2", "to": "earliest"}) == [Reset("pg", Position(120, 0), None)]
    assert await position() is None
    assert json.loads(reset_marker(cdc_raw, "local").read_text()) == {"request": "earliest@2", "to": "earliest"}
    # Refused while another runtime reads this cdc_raw, and nothing is marked applied.
    claim = CdcRawClaim(cdc_raw, "local", node)
    assert claim.take()
    try:
        with pytest.raises(CdcRawClaimedError):
            await start({"request": "r3", "to": "1:0"})
    finally:
        claim.release()
    assert json.loads(reset_marker(cdc_raw, "local").read_text())["request"] == "earliest@2"
