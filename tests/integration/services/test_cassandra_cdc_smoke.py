"""The local Cassandra is real: CDC tables produce hard-linked segments and idx files."""

from __future__ import annotations

import re
import struct
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from devservices.cassandra import CassandraNode

pytestmark = pytest.mark.cassandra

SEGMENT_NAME = re.compile(r"^CommitLog-(\d+)-(\d+)\.log$")


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"condition not met within {timeout}s")


def idx_offset(idx: Path) -> int:
    """The durable offset in a _cdc.idx file (first line), retrying a half-written file."""
    for _ in range(100):
        text = idx.read_text()
        first = text.split("\n", 1)[0].strip()
        if first:
            return int(first)
        time.sleep(0.01)
    raise AssertionError(f"{idx} stayed empty")


def segments_with_idx(node: CassandraNode) -> dict[Path, Path]:
    found = {}
    for log in node.cdc_raw_dir.glob("CommitLog-*.log"):
        idx = log.with_name(log.stem + "_cdc.idx")
        if idx.exists():
            found[log] = idx
    return found


@pytest.fixture
def cdc_table(cassandra: CassandraNode, request: pytest.FixtureRequest) -> str:
    session = cassandra.session()
    keyspace = "smoke_" + re.sub(r"\W+", "_", request.node.name).lower()[:40]
    replication = "{'class': 'SimpleStrategy', 'replication_factor': 1}"
    session.execute(f"CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = {replication}")
    session.execute(f"CREATE TABLE IF NOT EXISTS {keyspace}.events (id int PRIMARY KEY, body text) WITH cdc = true")
    return f"{keyspace}.events"


def test_cdc_writes_hard_link_segments_with_growing_idx(cassandra: CassandraNode, cdc_table: str) -> None:
    session = cassandra.session()
    insert = session.prepare(f"INSERT INTO {cdc_table} (id, body) VALUES (?, ?)")
    for i in range(50):
        session.execute(insert, (i, "x" * 200))
    wait_for(lambda: bool(segments_with_idx(cassandra)))

    newest_log, newest_idx = max(segments_with_idx(cassandra).items(), key=lambda item: item[0].name)
    match = SEGMENT_NAME.match(newest_log.name)
    assert match, newest_log.name
    version, segment_id = int(match.group(1)), int(match.group(2))
    assert version == cassandra.commitlog_version

    # The cdc_raw entry is a hard link of the live commitlog segment.
    live = cassandra.commitlog_dir / newest_log.name
    if live.exists():
        assert live.stat().st_ino == newest_log.stat().st_ino
        assert newest_log.stat().st_nlink >= 2

    # Header: int version, long id, big-endian, matching the file name.
    header = newest_log.read_bytes()[:12]
    assert struct.unpack(">iq", header) == (version, segment_id)

    before = idx_offset(newest_idx)
    assert before > 12
    for i in range(50, 100):
        session.execute(insert, (i, "y" * 200))

    def grew() -> bool:
        # Either this segment's idx advanced, or writes rolled over into a newer segment.
        current = segments_with_idx(cassandra)
        newer = [log for log in current if log.name > newest_log.name]
        return bool(newer) or idx_offset(newest_idx) > before

    wait_for(grew)


def test_non_cdc_table_writes_do_not_advance_cdc_idx(cassandra: CassandraNode, cdc_table: str) -> None:
    """Only CDC tables mark a segment for cdc_raw: the idx tracks CDC writes."""
    session = cassandra.session()
    keyspace = cdc_table.split(".", maxsplit=1)[0]
    session.execute(f"CREATE TABLE IF NOT EXISTS {keyspace}.plain (id int PRIMARY KEY, body text)")
    session.execute(f"INSERT INTO {cdc_table} (id, body) VALUES (1, 'a')")
    wait_for(lambda: bool(segments_with_idx(cassandra)))
    rows = list(session.execute(f"SELECT cdc FROM system_schema.tables WHERE keyspace_name = '{keyspace}'"))
    assert sorted(bool(r.cdc) for r in rows) == [False, True]
