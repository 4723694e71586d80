#!/usr/bin/env python3
"""Record small real commitlog segments for the source's unit tests.

Starts a real Cassandra 5.0 (devservices) three times: compatibility mode
CASSANDRA_4 (descriptor v7, messaging 12), NONE (v8, messaging 13), and
CASSANDRA_4 with LZ4 commitlog compression. Each run creates the ``fx``
keyspace, runs the workload below with fixed ``USING TIMESTAMP`` values
(so unit tests can assert exact writetimes), waits for ``_cdc.idx`` to cover
it, and copies into ``tests/fixtures/commitlog/<name>/``:

- every cdc_raw segment cut at its durable offset plus an 8-byte zero end
  marker (the rest of a preallocated segment is zeros),
- its ``_cdc.idx``,
- ``schema.json``: the system_schema rows every table in the segments needs.

Usage: ``.venv/bin/python scripts/record-fixtures.py [name ...]``
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from devservices.cassandra import CassandraNode  # noqa: E402
from pipeline_runtime.source.cdc_index import read_index  # noqa: E402
from pipeline_runtime.source.commitlog.descriptor import parse_segment_name  # noqa: E402
from pipeline_runtime.source.schema.driver import DriverSchemaSource  # noqa: E402

FIXTURES = REPO / "tests" / "fixtures" / "commitlog"
RUNS = {"v7": ("CASSANDRA_4", False), "v8": ("NONE", False), "v7-lz4": ("CASSANDRA_4", True)}

SCHEMA = [
    "CREATE KEYSPACE fx WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
    "CREATE TYPE fx.addr (street text, zip int)",
    "CREATE TABLE fx.types (k int PRIMARY KEY, a ascii, b bigint, bl blob, bo boolean, d date, de decimal,"
    " db double, du duration, f float, i inet, it int, si smallint, t text, tm time, ts timestamp, tu timeuuid,"
    " ti tinyint, u uuid, vi varint, ve vector<float, 3>, vt vector<text, 2>, fl frozen<list<int>>,"
    " fs frozen<set<text>>, fm frozen<map<text, int>>, tup tuple<int, text>, fu frozen<addr>,"
    " nested frozen<map<text, list<int>>>) WITH cdc = true",
    "CREATE TABLE fx.ops (pk1 int, pk2 text, ck1 int, ck2 text, v text, n int, s text static, l list<int>,"
    " st set<text>, m map<text, int>, a addr, PRIMARY KEY ((pk1, pk2), ck1, ck2))"
    " WITH CLUSTERING ORDER BY (ck1 ASC, ck2 DESC) AND cdc = true",
    "CREATE TABLE fx.plain (k int PRIMARY KEY, v text)",
    "CREATE TABLE fx.cnt (k int PRIMARY KEY, c counter) WITH cdc = true",
]

#: (statement, comment). Timestamps are fixed: 1_000_000 + step, in microseconds.
WORKLOAD = [
    "INSERT INTO fx.types (k, a, b, bl, bo, d, de, db, du, f, i, it, si, t, tm, ts, tu, ti, u, vi, ve, vt, fl, fs,"
    " fm, tup, fu, nested) VALUES (1, 'asc', -9000000000, 0xcafe, true, '2024-02-29', 12.345, 2.5, 1h2m3s,"
    " 1.5, '10.0.0.1', -7, 300, 'héllo', '13:14:15.123456789', '2024-01-02 03:04:05.678+0000',"
    " 50554d6e-29bb-11e5-b345-feff819cdc9f, -5, 123e4567-e89b-12d3-a456-426614174000,"
    " 123456789012345678901234567890, [1.0, 2.0, 3.5], ['x', 'yz'], [3, 1, 2], {'b', 'a'}, {'k': 1},"
    " (7, 'seven'), {street: 'Main', zip: 12345}, {'q': [1, 2]}) USING TIMESTAMP 1000001",
    "INSERT INTO fx.types (k, it, t) VALUES (2, 0, '') USING TIMESTAMP 1000002",
    "INSERT INTO fx.ops (pk1, pk2, ck1, ck2, v, n, s, l, st, m, a) VALUES (1, 'p', 1, 'a', 'v1', 1, 'static1',"
    " [1, 2], {'x'}, {'k1': 1}, {street: 'S', zip: 1}) USING TIMESTAMP 1000003",
    "UPDATE fx.ops USING TIMESTAMP 1000004 SET v = 'v2' WHERE pk1 = 1 AND pk2 = 'p' AND ck1 = 1 AND ck2 = 'a'",
    "UPDATE fx.ops USING TIMESTAMP 1000005 SET v = null WHERE pk1 = 1 AND pk2 = 'p' AND ck1 = 1 AND ck2 = 'a'",
    "INSERT INTO fx.ops (pk1, pk2, ck1, ck2, v) VALUES (1, 'p', 2, 'b', 'ttl') USING TIMESTAMP 1000006 AND TTL 3600",
    "UPDATE fx.ops USING TIMESTAMP 1000007 AND TTL 60 SET n = 5 WHERE pk1 = 1 AND pk2 = 'p' AND ck1 = 2 AND ck2 = 'b'",
    "DELETE FROM fx.ops USING TIMESTAMP 1000008 WHERE pk1 = 1 AND pk2 = 'p' AND ck1 = 2 AND ck2 = 'b'",
    "DELETE FROM fx.ops USING TIMESTAMP 1000009 WHERE pk1 = 1 AND pk2 = 'p' AND ck1 > 1 AND ck1 <= 5",
    "DELETE FROM fx.ops USING TIMESTAMP 1000010 WHERE pk1 = 1 AND pk2 = 'p' AND ck1 >= 7",
    "DELETE FROM fx.ops USING TIMESTAMP 1000011 WHERE pk1 = 1 AND pk2 = 'p' AND ck1 = 3",
    "DELETE FROM fx.ops USING TIMESTAMP 1000012 WHERE pk1 = 2 AND pk2 = 'q'",
    "UPDATE fx.ops USING TIMESTAMP 1000013 SET s = 'static2' WHERE pk1 = 1 AND pk2 = 'p'",
    "UPDATE fx.ops USING TIMESTAMP 1000014 SET l = l + [3], st = st + {'y'}, m['k2'] = 2, a.street = 'T'"
    " WHERE pk1 = 1 AND pk2 = 'p' AND ck1 = 1 AND ck2 = 'a'",
    "UPDATE fx.ops USING TIMESTAMP 1000015 SET l = [0] + l, st = st - {'x'} WHERE pk1 = 1 AND pk2 = 'p'"
    " AND ck1 = 1 AND ck2 = 'a'",
    "DELETE m['k1'] FROM fx.ops USING TIMESTAMP 1000016 WHERE pk1 = 1 AND pk2 = 'p' AND ck1 = 1 AND ck2 = 'a'",
    "UPDATE fx.ops USING TIMESTAMP 1000017 SET l = [5, 6], a = {street: 'U', zip: 2} WHERE pk1 = 1"
    " AND pk2 = 'p' AND ck1 = 1 AND ck2 = 'a'",
    "DELETE n FROM fx.ops USING TIMESTAMP 1000018 WHERE pk1 = 1 AND pk2 = 'p' AND ck1 = 1 AND ck2 = 'a'",
    "BEGIN BATCH USING TIMESTAMP 1000019"
    " INSERT INTO fx.ops (pk1, pk2, ck1, ck2, v) VALUES (3, 'b', 1, 'z', 'batched');"
    " INSERT INTO fx.plain (k, v) VALUES (3, 'not cdc');"
    " APPLY BATCH",
    "UPDATE fx.cnt SET c = c + 5 WHERE k = 1",
    "INSERT INTO fx.ops (pk1, pk2, ck1, ck2, v) VALUES (4, 'lwt', 1, 'a', 'lwt') IF NOT EXISTS",
]


def wait_for_durable(cdc_raw: Path, timeout: float = 20.0) -> None:
    """Wait until idx offsets stop moving (periodic sync every 50 ms)."""
    deadline = time.monotonic() + timeout
    last: dict[str, int] = {}
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = {}
        for idx in cdc_raw.glob("*_cdc.idx"):
            state = read_index(idx)
            if state is not None:
                now[idx.name] = state.offset
        if now and now == last:
            return
        last = now
    raise SystemExit(f"cdc_raw idx offsets did not settle in {timeout}s")


def record(name: str, compat_mode: str, compressed: bool) -> None:
    target = FIXTURES / name
    with tempfile.TemporaryDirectory(prefix=f"headrace-fixture-{name}-") as tmp:
        compression = "LZ4Compressor" if compressed else None
        node = CassandraNode(workdir=Path(tmp), compat_mode=compat_mode, commitlog_compression=compression)
        try:
            node.start()
            session = node.session()
            for statement in SCHEMA + WORKLOAD:
                session.execute(statement)
            wait_for_durable(node.cdc_raw_dir)
            rows = DriverSchemaSource(session).load()
            if target.exists():
                shutil.rmtree(target)
            target.mkdir(parents=True)
            for idx in sorted(node.cdc_raw_dir.glob("*_cdc.idx")):
                segment = parse_segment_name(idx.name)
                assert segment is not None
                state = read_index(idx)
                assert state is not None
                data = (node.cdc_raw_dir / segment.log_name).read_bytes()
                if not compressed:
                    data = data[: state.offset] + bytes(8)
                (target / segment.log_name).write_bytes(data)
                (target / idx.name).write_text(str(state.offset) + ("\nCOMPLETED" if state.completed else ""))
            (target / "schema.json").write_text(json.dumps(rows.to_json(), sort_keys=True, separators=(",", ":")))
            print(f"{name}: {sorted(p.name for p in target.iterdir())}")
        finally:
            node.stop()


def main(argv: list[str]) -> int:
    names = argv[1:] or list(RUNS)
    for name in names:
        compat_mode, compressed = RUNS[name]
        record(name, compat_mode, compressed)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
