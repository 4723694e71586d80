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
            "--no-report-status",
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
