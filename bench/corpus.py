"""A commitlog corpus recorded from a real mixed workload against a real Cassandra 5.0 (devservices).

The decode benchmark reads these segments. ``ensure_corpus()`` returns the
cached recording, or records it when missing: one Cassandra start per variant
(commitlog v7 = ``storage_compatibility_mode: CASSANDRA_4``, v8 = ``NONE``,
each plain and LZ4-compressed), the same seeded workload each time, and the
cdc_raw segments (cut at their durable offset), their ``_cdc.idx`` and the
``system_schema`` rows copied to
``$HEADRACE_CACHE/bench-corpus/<version-key>/<variant>/`` with a
``manifest.json`` (statement counts by kind, entries, bytes, how it was made).
The version key names the Cassandra version, the corpus size and a hash of
the workload's definition and code, so a changed workload records a new corpus. Nothing here is in git.

The workload (``Workload``) writes five tables in the ``bench`` keyspace:
four with CDC on and one without (decoded, since updates carry no length, but
not turned into events), through prepared statements, 64 in flight:

- ``users``: full-row inserts with a non-frozen UDT, a map, a set and a tuple;
  partial updates; set adds/removes, map puts/deletes, UDT field updates;
  cell deletes; inserts with a TTL;
- ``orders``: clustered by timeuuid (descending) with a static column; inserts,
  status updates, static updates, row, range and partition deletes; logged
  batches touching ``orders`` and ``users`` (which also write ``system.batches``);
- ``readings``: a time series keyed by (sensor, day) with TTLs, blobs and
  range deletes;
- ``sessions``: frozen collections, TTL inserts and TTL updates;
- ``audit`` (no CDC): plain inserts.

Usage: ``python -m bench.corpus [--force]`` records (or shows) the corpus.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import inspect
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from devservices.cassandra import DEFAULT_VERSION, running_cassandra
from devservices.process import cache_dir
from pipeline_runtime.source.cdc_index import read_index
from pipeline_runtime.source.commitlog.descriptor import parse_segment_name
from pipeline_runtime.source.schema.driver import DriverSchemaSource

#: Statements per variant; ``HEADRACE_BENCH_STATEMENTS`` overrides (a new size is a new corpus).
STATEMENTS = int(os.environ.get("HEADRACE_BENCH_STATEMENTS", "30000"))
SEED = 20260101
CONCURRENCY = 64


@dataclass(frozen=True)
class Variant:
    name: str
    compat_mode: str
    compression: str | None

    @property
    def commitlog_version(self) -> int:
        return 7 if self.compat_mode == "CASSANDRA_4" else 8


VARIANTS = (
    Variant("v7", "CASSANDRA_4", None),
    Variant("v8", "NONE", None),
    Variant("v7-lz4", "CASSANDRA_4", "LZ4Compressor"),
    Variant("v8-lz4", "NONE", "LZ4Compressor"),
)

REPLICATION = "{'class': 'SimpleStrategy', 'replication_factor': 1}"
SCHEMA = [
    f"CREATE KEYSPACE bench WITH replication = {REPLICATION}",
    "CREATE TYPE bench.address (street text, city text, zip int, verified boolean)",
    "CREATE TABLE bench.users (id uuid PRIMARY KEY, name text, email text, age int, score double,"
    " created timestamp, addr address, phones map<text, text>, tags set<text>, loc tuple<double, double>,"
    " avatar blob) WITH cdc = true",
    "CREATE TABLE bench.orders (customer text, order_id timeuuid, status text, total decimal, items list<text>,"
    " qty int, note text, tier text static, since date static, PRIMARY KEY (customer, order_id))"
    " WITH CLUSTERING ORDER BY (order_id DESC) AND cdc = true",
    "CREATE TABLE bench.readings (sensor int, day date, at timestamp, value double, quality tinyint,"
    " flags smallint, raw blob, PRIMARY KEY ((sensor, day), at)) WITH cdc = true",
    "CREATE TABLE bench.sessions (sid text PRIMARY KEY, user_id uuid, data frozen<map<text, text>>,"
    " roles frozen<set<text>>, hits bigint, last_seen timestamp) WITH cdc = true",
    "CREATE TABLE bench.audit (id timeuuid PRIMARY KEY, actor text, action text)",
]

#: Each statement kind with its share of the workload.
MIX = {
    "users.insert": 10,
    "users.insert_ttl": 2,
    "users.update_partial": 8,
    "users.set_add_remove": 4,
    "users.map_put_delete": 4,
    "users.udt_field": 3,
    "users.cell_delete": 2,
    "orders.insert": 18,
    "orders.update_status": 8,
    "orders.static": 2,
    "orders.row_delete": 3,
    "orders.range_delete": 1,
    "orders.partition_delete": 1,
    "orders.logged_batch": 2,
    "readings.insert_ttl": 20,
    "readings.range_delete": 1,
    "sessions.insert_ttl": 5,
    "sessions.update_ttl": 3,
    "audit.insert": 3,
}

STATEMENTS_CQL = {
    "users.insert": "INSERT INTO bench.users (id, name, email, age, score, created, addr, phones, tags, loc, avatar)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    "users.insert_ttl": "INSERT INTO bench.users (id, name, email, age) VALUES (?, ?, ?, ?) USING TTL 86400",
    "users.update_partial": "UPDATE bench.users SET name = ?, score = ? WHERE id = ?",
    "users.set_add": "UPDATE bench.users SET tags = tags + ? WHERE id = ?",
    "users.set_remove": "UPDATE bench.users SET tags = tags - ? WHERE id = ?",
    "users.map_put": "UPDATE bench.users SET phones[?] = ? WHERE id = ?",
    "users.map_delete": "DELETE phones[?] FROM bench.users WHERE id = ?",
    "users.udt_field": "UPDATE bench.users SET addr.city = ?, addr.verified = ? WHERE id = ?",
    "users.cell_delete": "DELETE email, avatar FROM bench.users WHERE id = ?",
    "orders.insert": "INSERT INTO bench.orders (customer, order_id, status, total, items, qty, note)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)",
    "orders.update_status": "UPDATE bench.orders SET status = ?, qty = ? WHERE customer = ? AND order_id = ?",
    "orders.static": "UPDATE bench.orders SET tier = ?, since = ? WHERE customer = ?",
    "orders.row_delete": "DELETE FROM bench.orders WHERE customer = ? AND order_id = ?",
    "orders.range_delete": "DELETE FROM bench.orders WHERE customer = ? AND order_id < ?",
    "orders.partition_delete": "DELETE FROM bench.orders WHERE customer = ?",
    "readings.insert_ttl": "INSERT INTO bench.readings (sensor, day, at, value, quality, flags, raw)"
    " VALUES (?, ?, ?, ?, ?, ?, ?) USING TTL ?",
    "readings.range_delete": "DELETE FROM bench.readings WHERE sensor = ? AND day = ? AND at >= ? AND at < ?",
    "sessions.insert_ttl": "INSERT INTO bench.sessions (sid, user_id, data, roles, hits, last_seen)"
    " VALUES (?, ?, ?, ?, ?, ?) USING TTL ?",
    "sessions.update_ttl": "UPDATE bench.sessions USING TTL ? SET hits = ?, last_seen = ? WHERE sid = ?",
    "audit.insert": "INSERT INTO bench.audit (id, actor, action) VALUES (now(), ?, ?)",
}

BATCH = (
    "BEGIN BATCH"
    " INSERT INTO bench.orders (customer, order_id, status, total, items, qty) VALUES (?, ?, 'new', ?, ?, ?);"
    " UPDATE bench.orders SET tier = ? WHERE customer = ?;"
    " UPDATE bench.users SET score = ? WHERE id = ?;"
    " APPLY BATCH"
)


def _workload_hash() -> str:
    """Changes when the schema, the statements, the mix or the workload's code change."""
    definition = json.dumps([SCHEMA, MIX, STATEMENTS_CQL, BATCH, SEED, [v.__dict__ for v in VARIANTS]])
    return hashlib.sha256((definition + inspect.getsource(Workload)).encode()).hexdigest()[:12]


def version_key(statements: int = STATEMENTS, cassandra: str = DEFAULT_VERSION) -> str:
    """Names one corpus: Cassandra version, workload size and the workload's hash."""
    return f"cassandra-{cassandra}-n{statements}-{_workload_hash()}"


def corpus_root(statements: int = STATEMENTS) -> Path:
    return cache_dir() / "bench-corpus" / version_key(statements)


class Workload:
    """The seeded statement stream: (kind, statement, parameters)."""

    def __init__(self, session: Any, seed: int = SEED) -> None:
        self.rng = random.Random(seed)
        self.prepared = {kind: session.prepare(cql) for kind, cql in STATEMENTS_CQL.items()}
        self.batch = session.prepare(BATCH)
        self.users: list[uuid.UUID] = []
        self.orders: dict[str, list[uuid.UUID]] = {}
        self.sessions: list[str] = []
        self.clock = 1_700_000_000_000_000  # microseconds, for timeuuids and timestamps
        self.kinds = list(MIX)
        self.weights = list(MIX.values())

    def _uuid1(self) -> uuid.UUID:
        """A version-1 UUID (timeuuid) from the workload's own clock and random node bits."""
        self.clock += self.rng.randint(1, 5000)
        ticks = self.clock * 10 + 0x01B21DD213814000
        node = self.rng.getrandbits(48) | 0x010000000000
        return uuid.UUID(
            fields=(ticks & 0xFFFFFFFF, (ticks >> 32) & 0xFFFF, ((ticks >> 48) & 0x0FFF) | 0x1000, 0x80, 0, node)
        )

    def _when(self) -> dt.datetime:
        return dt.datetime(2025, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=self.rng.randint(0, 30_000_000))

    def _user(self) -> uuid.UUID:
        if not self.users or self.rng.random() < 0.3:
            self.users.append(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        return self.rng.choice(self.users[-2000:])

    def _customer(self) -> str:
        return f"customer-{self.rng.randint(0, 1999):05d}"

    def statements(self, count: int) -> Iterator[tuple[str, Any, tuple[Any, ...]]]:
        for _ in range(count):
            (kind,) = self.rng.choices(self.kinds, self.weights)
            yield self._statement(kind)

    def _statement(self, kind: str) -> tuple[str, Any, tuple[Any, ...]]:
        rng = self.rng
        p = self.prepared
        if kind == "users.insert":
            user = self._user()
            addr = (
                f"{rng.randint(1, 999)} Main St",
                rng.choice(["Oslo", "Lyon", "Porto", "Turin"]),
                rng.randint(1000, 99999),
                rng.random() < 0.5,
            )
            phones = {f"p{i}": f"+47 {rng.randint(10_000_000, 99_999_999)}" for i in range(rng.randint(0, 3))}
            tags = {f"tag{rng.randint(0, 50)}" for _ in range(rng.randint(0, 4))}
            avatar = rng.randbytes(rng.randint(0, 256))
            params: tuple[Any, ...] = (
                user,
                f"User {user.hex[:8]}",
                f"{user.hex[:10]}@example.com",
                rng.randint(18, 90),
                rng.random() * 100,
                self._when(),
                addr,
                phones,
                tags,
                (rng.uniform(-90, 90), rng.uniform(-180, 180)),
                avatar,
            )
            return kind, p[kind], params
        if kind == "users.insert_ttl":
            user = self._user()
            return kind, p[kind], (user, f"Guest {user.hex[:6]}", f"{user.hex[:6]}@guest.example", rng.randint(18, 90))
        if kind == "users.update_partial":
            return kind, p[kind], (f"Renamed {rng.randint(0, 10**6)}", rng.random() * 100, self._user())
        if kind == "users.set_add_remove":
            which = "users.set_add" if rng.random() < 0.6 else "users.set_remove"
            return kind, p[which], ({f"tag{rng.randint(0, 50)}"}, self._user())
        if kind == "users.map_put_delete":
            if rng.random() < 0.6:
                return (
                    kind,
                    p["users.map_put"],
                    (f"p{rng.randint(0, 4)}", f"+47 {rng.randint(10**7, 10**8 - 1)}", self._user()),
                )
            return kind, p["users.map_delete"], (f"p{rng.randint(0, 4)}", self._user())
        if kind == "users.udt_field":
            return kind, p[kind], (rng.choice(["Bergen", "Nice", "Braga"]), rng.random() < 0.5, self._user())
        if kind == "users.cell_delete":
            return kind, p[kind], (self._user(),)
        if kind == "orders.insert":
            customer = self._customer()
            order = self._uuid1()
            self.orders.setdefault(customer, []).append(order)
            items = [f"sku-{rng.randint(0, 9999)}" for _ in range(rng.randint(1, 5))]
            total = Decimal(rng.randint(100, 1_000_000)) / 100
            note = rng.choice([None, "gift", "express delivery, leave at the door"])
            return kind, p[kind], (customer, order, "new", total, items, rng.randint(1, 9), note)
        if kind in ("orders.update_status", "orders.row_delete", "orders.range_delete"):
            customer = self._customer()
            known = self.orders.get(customer)
            order = rng.choice(known) if known else self._uuid1()
            if kind == "orders.update_status":
                return kind, p[kind], (rng.choice(["paid", "shipped", "returned"]), rng.randint(1, 9), customer, order)
            return kind, p[kind], (customer, order)
        if kind == "orders.static":
            since = dt.date(2020, 1, 1) + dt.timedelta(days=rng.randint(0, 2000))
            return kind, p[kind], (rng.choice(["gold", "silver", "bronze"]), since, self._customer())
        if kind == "orders.partition_delete":
            customer = self._customer()
            self.orders.pop(customer, None)
            return kind, p[kind], (customer,)
        if kind == "orders.logged_batch":
            customer = self._customer()
            order = self._uuid1()
            self.orders.setdefault(customer, []).append(order)
            params = (
                customer,
                order,
                Decimal(rng.randint(100, 99999)) / 100,
                ["sku-1"],
                1,
                "gold",
                customer,
                rng.random(),
                self._user(),
            )
            return kind, self.batch, params
        if kind == "readings.insert_ttl":
            sensor = rng.randint(0, 499)
            at = self._when()
            raw = rng.randbytes(rng.randint(0, 64))
            params = (
                sensor,
                at.date(),
                at,
                rng.gauss(20, 5),
                rng.randint(0, 100),
                rng.randint(0, 3000),
                raw,
                rng.choice([3600, 86400, 604800]),
            )
            return kind, p[kind], params
        if kind == "readings.range_delete":
            at = self._when()
            return kind, p[kind], (rng.randint(0, 499), at.date(), at, at + dt.timedelta(hours=1))
        if kind == "sessions.insert_ttl":
            token = f"tok-{rng.getrandbits(64):016x}"
            self.sessions.append(token)
            data = {"ua": "Mozilla/5.0", "ip": f"10.0.{rng.randint(0, 255)}.{rng.randint(0, 255)}"}
            roles = set(rng.sample(["reader", "writer", "admin"], rng.randint(1, 3)))
            return kind, p[kind], (token, self._user(), data, roles, 0, self._when(), 1800)
        if kind == "sessions.update_ttl":
            token = rng.choice(self.sessions) if self.sessions else "tok-none"
            return kind, p[kind], (1800, rng.randint(1, 10**6), self._when(), token)
        if kind == "audit.insert":
            return kind, p[kind], (f"actor-{rng.randint(0, 99)}", rng.choice(["login", "logout", "export"]))
        raise AssertionError(kind)


def _run(session: Any, statements: int) -> Counter[str]:
    """Execute the workload, ``CONCURRENCY`` requests in flight; counts by kind."""
    from cassandra.concurrent import execute_concurrent  # noqa: PLC0415

    workload = Workload(session)
    counts: Counter[str] = Counter()
    chunk = 5000
    done = 0
    while done < statements:
        batch = list(workload.statements(min(chunk, statements - done)))
        counts.update(kind for kind, _, _ in batch)
        results = execute_concurrent(
            session, [(s, params) for _, s, params in batch], concurrency=CONCURRENCY, raise_on_first_error=True
        )
        assert all(ok for ok, _ in results)
        done += len(batch)
    return counts


def _wait_for_durable(cdc_raw: Path, timeout: float = 60.0) -> None:
    """Wait until the idx offsets stop moving (periodic sync every 50 ms)."""
    deadline = time.monotonic() + timeout
    last: dict[str, int] = {}
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = {}
        for idx in cdc_raw.glob("*_cdc.idx"):
            state = read_index(idx)
            if state is not None:
                now[idx.name] = state.offset
        if now and now == last:
            return
        last = now
    raise RuntimeError(f"cdc_raw idx offsets did not settle in {timeout}s")


def record_variant(variant: Variant, target: Path, statements: int = STATEMENTS) -> dict[str, Any]:
    """Record one variant into ``target`` (replaced) and return its manifest."""
    started = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix=f"headrace-corpus-{variant.name}-") as tmp,
        running_cassandra(
            Path(tmp),
            variant.compat_mode,
            commitlog_compression=variant.compression,
            commitlog_segment_mib=32,  # Cassandra's default segment size
        ) as node,
    ):
        session = node.session()
        for statement in SCHEMA:
            session.execute(statement)
        write_started = time.monotonic()
        counts = _run(session, statements)
        write_seconds = time.monotonic() - write_started
        _wait_for_durable(node.cdc_raw_dir)
        rows = DriverSchemaSource(session).load()
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        segments: list[dict[str, Any]] = []
        for idx in sorted(node.cdc_raw_dir.glob("*_cdc.idx")):
            segment = parse_segment_name(idx.name)
            assert segment is not None
            state = read_index(idx)
            assert state is not None
            data = (node.cdc_raw_dir / segment.log_name).read_bytes()
            if variant.compression is None:
                data = data[: state.offset] + bytes(8)  # the rest of a preallocated segment is zeros
            (partial / segment.log_name).write_bytes(data)
            (partial / idx.name).write_text(str(state.offset) + ("\nCOMPLETED" if state.completed else ""))
            segments.append({"name": segment.log_name, "bytes": len(data), "durable_offset": state.offset})
        (partial / "schema.json").write_text(json.dumps(rows.to_json(), sort_keys=True, separators=(",", ":")))
        manifest = {
            "variant": variant.name,
            "cassandra": node.version,
            "storage_compatibility_mode": variant.compat_mode,
            "commitlog_version": variant.commitlog_version,
            "commitlog_compression": variant.compression,
            "commitlog_segment_size_mib": 32,
            "statements": statements,
            "statements_by_kind": dict(sorted(counts.items())),
            "segments": segments,
            "bytes": sum(s["bytes"] for s in segments),
            "write_seconds": round(write_seconds, 1),
            "record_seconds": round(time.monotonic() - started, 1),
            "seed": SEED,
            "headrace_commit": _commit(),
            "recorded_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        (partial / "manifest.json").write_text(json.dumps(manifest, indent=2))
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)
        return manifest


def _commit() -> str:
    done = subprocess.run(
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=False, cwd=Path(__file__).parent
    )
    return done.stdout.strip() or "unknown"


def ensure_corpus(statements: int = STATEMENTS, *, force: bool = False) -> Path:
    """The corpus folder (one subfolder per variant), recording what is missing."""
    root = corpus_root(statements)
    for variant in VARIANTS:
        target = root / variant.name
        if force or not (target / "manifest.json").exists():
            print(f"# recording the {variant.name} corpus into {target} (Cassandra {DEFAULT_VERSION}) ...", flush=True)
            manifest = record_variant(variant, target, statements)
            print(
                f"#   {manifest['statements']} statements, {len(manifest['segments'])} segments, "
                f"{manifest['bytes'] / 1e6:.1f} MB in {manifest['record_seconds']}s",
                flush=True,
            )
    return root


if __name__ == "__main__":
    path = ensure_corpus(force="--force" in sys.argv)
    for variant in VARIANTS:
        print(json.dumps(json.loads((path / variant.name / "manifest.json").read_text()), indent=2))
