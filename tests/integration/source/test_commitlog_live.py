"""The source against a real Cassandra 5.0, in both commitlog formats (v7/messaging 12, v8/messaging 13).

Each test writes through cassandra-driver, follows the node's cdc_raw with the
real schema registry, and compares the decoded events with what ``SELECT``
(values, ``writetime()``, ``ttl()``) returns for the same rows.
"""

from __future__ import annotations

import datetime
import decimal
import itertools
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from cassandra.util import Duration

from devservices.cassandra import CassandraNode
from pipeline_runtime.cql.schema import TableSchema
from pipeline_runtime.events import Bound, Cell, ChangeEvent, CollectionChange, Op
from pipeline_runtime.source.schema.driver import DriverSchemaSource
from pipeline_runtime.source.schema.registry import SchemaRegistry
from pipeline_runtime.source.tailer import CdcRawTailer

pytestmark = pytest.mark.cassandra

_counter = itertools.count()


@pytest.fixture
def keyspace(cassandra: CassandraNode) -> str:
    name = f"src_{cassandra.compat_mode.lower()}_{next(_counter)}_{uuid.uuid4().hex[:6]}"
    cassandra.session().execute(
        f"CREATE KEYSPACE {name} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}"
    )
    return name


def collect(node: CassandraNode, keyspace: str, done: Callable[[list[ChangeEvent]], bool]) -> list[ChangeEvent]:
    """Follow cdc_raw from the start until ``done`` holds for this keyspace's events (20 s at most)."""

    def selected(schema: TableSchema) -> bool:
        return schema.keyspace == keyspace

    registry = SchemaRegistry(DriverSchemaSource(node.session()), selector=selected)
    tailer = CdcRawTailer(node.cdc_raw_dir, "node", registry)
    events: list[ChangeEvent] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        batch = tailer.poll()
        if batch is None:
            if done(events):
                return events
            time.sleep(0.05)
            continue
        events.extend(batch.events)
    raise AssertionError(f"only {len(events)} events for {keyspace} after 20 s: {events[-3:]}")


def upserts(events: list[ChangeEvent], table: str) -> list[ChangeEvent]:
    return [e for e in events if e.table == table and e.op is Op.UPSERT]


def collection_value(change: CollectionChange, kind: str) -> Any:
    live = [e for e in change.elements if not e.deleted]
    if kind == "list":
        return [e.value for e in sorted(live, key=lambda e: (e.path.time, e.path.bytes))]
    if kind == "set":
        return sorted(e.path for e in live)
    return {e.path: e.value for e in live}


TYPES = (
    "k int PRIMARY KEY, a ascii, b bigint, bl blob, bo boolean, d date, de decimal, db double, du duration,"
    " f float, i inet, it int, si smallint, t text, tm time, ts timestamp, tu timeuuid, ti tinyint, u uuid,"
    " vi varint, ve vector<float, 3>, vt vector<text, 2>, fl frozen<list<int>>, fs frozen<set<text>>,"
    " fm frozen<map<text, int>>, tup tuple<int, text, boolean>, fu frozen<addr>,"
    " nested frozen<map<text, frozen<list<frozen<set<int>>>>>>, l list<text>, s set<int>, m map<int, text>,"
    " a_udt addr"
)


def test_every_type_decodes_to_what_the_driver_reads(cassandra: CassandraNode, keyspace: str) -> None:
    session = cassandra.session(keyspace)
    session.execute("CREATE TYPE addr (street text, zip int, tags frozen<set<text>>)")
    session.execute(f"CREATE TABLE types ({TYPES}) WITH cdc = true")
    insert = session.prepare(
        "INSERT INTO types (k, a, b, bl, bo, d, de, db, du, f, i, it, si, t, tm, ts, tu, ti, u, vi, ve, vt, fl, fs,"
        " fm, tup, fu, nested, l, s, m, a_udt) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,"
        " ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )
    addr = session.cluster.metadata.keyspaces[keyspace].user_types["addr"]
    assert addr is not None
    rows = [
        (
            1,
            "ascii",
            -(2**63),
            b"\x00\xff",
            True,
            datetime.date(1970, 1, 1),
            decimal.Decimal("-1.5E-30"),
            -0.0,
            Duration(-1, -2, -3),
            3.25,
            "::1",
            2**31 - 1,
            -(2**15),
            "ünïcode ✓",
            datetime.time(23, 59, 59, 999999),
            datetime.datetime(1969, 12, 31, 23, 59, 59, 1000),
            uuid.uuid1(),
            127,
            uuid.uuid4(),
            -(10**40),
            [0.5, -1.0, 2.0],
            ["", "long" * 100],
            [1, 3],
            {"z", "a"},
            {"x": -1},
            (1, "a", False),
            None,
            {"k": [{1, 2}, set()]},
            ["x", "y", "x"],
            {3, 1, 2},
            {1: "one", 2: ""},
            None,
        ),
        (2,) + (None,) * 31,
    ]
    for row in rows:
        session.execute(insert, row)
    session.execute("UPDATE types SET fu = {street: 'S', zip: 9, tags: {'t'}}, a_udt = {street: 'U'} WHERE k = 1")
    events = collect(cassandra, keyspace, lambda ev: len(upserts(ev, "types")) >= 3)
    expected = {r.k: r for r in session.execute("SELECT * FROM types")}
    merged: dict[int, dict[str, Any]] = {}
    for event in upserts(events, "types"):
        merged.setdefault(event.partition_key["k"], {}).update(event.cells)
    assert set(merged) == {1, 2}
    kinds = {"l": "list", "s": "set", "m": "map"}
    for k, cells in merged.items():
        row = expected[k]._asdict()
        for name, change in cells.items():
            if isinstance(change, Cell):
                assert change.value == row[name], (k, name)
            elif row[name] is None:
                # null (or empty) collection: the event only deletes what was there
                assert change.deletion is not None and not [e for e in change.elements if not e.deleted], (k, name)
            elif name == "a_udt":
                fields = {e.path: e.value for e in change.elements}
                assert (fields.get("street"), fields.get("zip"), fields.get("tags")) == tuple(row[name]), k
            else:
                got = collection_value(change, kinds[name])
                want = row[name]
                want = sorted(want) if kinds[name] == "set" else dict(want) if kinds[name] == "map" else list(want)
                assert got == want, (k, name)
        # Columns written as null in the INSERT are tombstones; every other column is present.
        missing = {n for n, v in row.items() if v is not None and n != "k"} - set(cells)
        assert not missing, (k, missing)


def test_operation_matrix(cassandra: CassandraNode, keyspace: str) -> None:
    session = cassandra.session(keyspace)
    session.execute(
        "CREATE TABLE ops (p1 int, p2 text, c1 int, c2 text, v text, n int, s text static, l list<int>,"
        " st set<text>, m map<text, int>, PRIMARY KEY ((p1, p2), c1, c2))"
        " WITH CLUSTERING ORDER BY (c1 DESC, c2 ASC) AND cdc = true"
    )
    session.execute("CREATE TABLE plain (k int PRIMARY KEY, v text)")
    key = "p1 = 1 AND p2 = 'x'"
    statements = [
        "INSERT INTO ops (p1, p2, c1, c2, v, n, s, l, st, m)"
        " VALUES (1, 'x', 1, 'a', 'v', 1, 's', [1], {'a'}, {'a': 1})",
        f"UPDATE ops SET v = 'w' WHERE {key} AND c1 = 1 AND c2 = 'a'",
        f"UPDATE ops SET n = null WHERE {key} AND c1 = 1 AND c2 = 'a'",
        "INSERT INTO ops (p1, p2, c1, c2, v) VALUES (1, 'x', 2, 'b', 't') USING TTL 1000",
        f"UPDATE ops USING TTL 500 SET n = 7 WHERE {key} AND c1 = 2 AND c2 = 'b'",
        f"DELETE FROM ops WHERE {key} AND c1 = 2 AND c2 = 'b'",
        f"DELETE FROM ops WHERE {key} AND c1 > 3 AND c1 < 9",
        f"DELETE FROM ops WHERE {key} AND c1 <= 0",
        f"DELETE FROM ops WHERE {key} AND c1 = 5 AND c2 >= 'k'",
        f"UPDATE ops SET s = 's2' WHERE {key}",
        f"UPDATE ops SET l = l + [2], st = st - {{'a'}}, m['b'] = 2 WHERE {key} AND c1 = 1 AND c2 = 'a'",
        f"UPDATE ops SET l = [0] + l WHERE {key} AND c1 = 1 AND c2 = 'a'",
        f"UPDATE ops SET m = {{'z': 26}} WHERE {key} AND c1 = 1 AND c2 = 'a'",
        "BEGIN BATCH INSERT INTO ops (p1, p2, c1, c2, v) VALUES (2, 'y', 1, 'a', 'b');"
        " INSERT INTO plain (k, v) VALUES (1, 'p'); APPLY BATCH",
        "INSERT INTO ops (p1, p2, c1, c2, v) VALUES (3, 'lwt', 1, 'a', 'l') IF NOT EXISTS",
        "DELETE FROM ops WHERE p1 = 9 AND p2 = 'gone'",
    ]
    for statement in statements:
        session.execute(statement)
    events = collect(cassandra, keyspace, lambda ev: any(e.op is Op.DELETE_PARTITION and e.table == "ops" for e in ev))
    ops = [e for e in events if e.table == "ops"]

    first = ops[0]
    assert first.static and first.cells["s"] == Cell("s", first.cells["s"].timestamp)  # type: ignore[union-attr]
    insert = ops[1]
    assert insert.clustering_key == {"c1": 1, "c2": "a"} and insert.liveness is not None
    row = session.execute(f"SELECT writetime(v) AS wt FROM ops WHERE {key} AND c1 = 2 AND c2 = 'b'").one()
    assert row is None  # deleted later in the matrix
    update_v = next(e for e in ops if e.cells.get("v") == Cell("w", e.max_timestamp))
    assert update_v.liveness is None
    null_n = next(e for e in ops if isinstance(e.cells.get("n"), Cell) and e.cells["n"].deleted)  # type: ignore[union-attr]
    assert null_n.clustering_key == {"c1": 1, "c2": "a"}
    ttl_row = next(e for e in ops if e.liveness is not None and e.liveness.ttl == 1000)
    assert ttl_row.liveness is not None and ttl_row.liveness.expires_at is not None
    assert abs(ttl_row.liveness.expires_at - (ttl_row.liveness.timestamp // 1_000_000 + 1000)) <= 2
    ttl_cell = next(e.cells["n"] for e in ops if isinstance(e.cells.get("n"), Cell) and e.cells["n"].ttl == 500)  # type: ignore[union-attr]
    assert isinstance(ttl_cell, Cell) and ttl_cell.value == 7
    (row_delete,) = [e for e in ops if e.op is Op.DELETE_ROW]
    assert row_delete.clustering_key == {"c1": 2, "c2": "b"}
    ranges = [(e.range_start, e.range_end) for e in ops if e.op is Op.DELETE_RANGE]
    # c1 is DESC: Cassandra stores bounds in clustering order, so "c1 > 3 AND c1 < 9" starts at 9.
    assert ranges == [
        (Bound((9,), False), Bound((3,), False)),
        (Bound((0,), True), None),
        (Bound((5, "k"), True), Bound((5,), True)),
    ]
    static2 = next(e for e in ops if e.static and e.cells.get("s") == Cell("s2", e.max_timestamp))
    assert static2.clustering_key == {}
    collections = [e for e in ops if "l" in e.cells or "m" in e.cells]
    appended = collections[1]
    assert isinstance(appended.cells["l"], CollectionChange)
    assert [x.value for x in appended.cells["l"].elements] == [2]
    assert appended.cells["st"].elements[0].deleted  # type: ignore[union-attr]
    prepended = collections[2].cells["l"]
    assert isinstance(prepended, CollectionChange) and [x.value for x in prepended.elements] == [0]
    overwritten = collections[3].cells["m"]
    assert isinstance(overwritten, CollectionChange) and overwritten.deletion is not None
    assert {x.path: x.value for x in overwritten.elements} == {"z": 26}
    batch_time = next(e for e in ops if e.partition_key == {"p1": 2, "p2": "y"}).max_timestamp
    assert any(e.table == "plain" and e.max_timestamp == batch_time for e in events)
    lwt = next(e for e in ops if e.partition_key == {"p1": 3, "p2": "lwt"})
    assert lwt.cells["v"] == Cell("l", lwt.max_timestamp)
    final = session.execute(f"SELECT l, m, writetime(s) AS ws FROM ops WHERE {key} AND c1 = 1 AND c2 = 'a'").one()
    assert final.l == [0, 1, 2] and dict(final.m) == {"z": 26}
    assert final.ws == static2.max_timestamp
