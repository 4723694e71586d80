"""``make demo``: Headrace end to end on one machine, no Kubernetes.

Starts a real single-node Cassandra 5.0 with CDC on, a real PostgreSQL and the
ClickHouse engine (chdb); creates a ``shop`` keyspace; starts the runtime from
a YAML pipeline file (the same model as the CDCPipeline CRD, see
``examples/pipeline.yaml``). The tables already hold orders written before
the pipeline existed (``--preload``), which the runtime's initial snapshot
reads while a workload of inserts, updates and deletes runs; the demo shows
rows arriving in both sinks with the snapshot's progress, lag and
throughput, then checks
that each sink table equals Cassandra's ``SELECT *`` after the pipeline's
masking, row for row and column by column (``devservices.sinkview``), printing
the first differing rows and exiting non-zero when one does not.

    python -m examples.demo [--seconds 20] [--rate 400] [--preload 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import shutil
import sys
import tempfile
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import yaml

from devservices.cassandra import running_cassandra
from devservices.clickhouse import chdb_client, chdb_dsn
from devservices.postgres import running_postgres
from devservices.sinkview import compare_pipeline
from pipeline_runtime.app import Runtime, RuntimeOptions
from pipeline_runtime.config.loader import load_pipeline
from pipeline_runtime.memory import tune_garbage_collector
from pipeline_runtime.secrets import SecretStore

HERE = Path(__file__).resolve().parent
REPLICATION = "{'class': 'SimpleStrategy', 'replication_factor': 1}"
SCHEMA = [
    f"CREATE KEYSPACE shop WITH replication = {REPLICATION}",
    "CREATE TABLE shop.orders (customer text, order_id int, item text, quantity int, price decimal, "
    "tags set<text>, placed_at timestamp, PRIMARY KEY (customer, order_id))",
    "CREATE TABLE shop.customers (id int PRIMARY KEY, name text, email text, phone text)",
]
#: CDC is turned on after the preload: those rows are history the commitlog no longer offers.
CDC_ON = ["ALTER TABLE shop.orders WITH cdc = true", "ALTER TABLE shop.customers WITH cdc = true"]
#: Preloaded orders go to customers the workload does not write (``p0`` ...), 40 orders each.
PRELOAD_PER_CUSTOMER = 40


def preload(session: Any, rows: int) -> float:
    """Orders written before the pipeline exists, with old writetimes; returns the seconds it took."""
    from cassandra.concurrent import execute_concurrent_with_args  # noqa: PLC0415

    insert = session.prepare(
        "INSERT INTO shop.orders (customer, order_id, item, quantity, price, tags, placed_at) "
        "VALUES (?, ?, ?, ?, ?, ?, '2024-01-01') USING TIMESTAMP 1704067200000000"
    )
    started = time.monotonic()
    args = [
        (f"p{i // PRELOAD_PER_CUSTOMER}", i % PRELOAD_PER_CUSTOMER, f"item-{i % 97}", 1 + i % 5,
         Decimal(100 + i % 9900) / 100, {f"t{i % 4}"})
        for i in range(rows)
    ]  # fmt: skip
    execute_concurrent_with_args(session, insert, args, concurrency=64, raise_on_first_error=True)
    return time.monotonic() - started


def say(message: str) -> None:
    print(message, flush=True)


class Workload(threading.Thread):
    """Writes orders and customers at a steady rate, with some updates and deletes."""

    def __init__(self, session: Any, seconds: float, rate: int) -> None:
        super().__init__(daemon=True)
        self.session = session
        self.seconds = seconds
        self.rate = rate
        self.writes = 0
        self.error: Exception | None = None

    def run(self) -> None:
        try:
            self._run()
        except Exception as exc:  # shown by the main thread
            self.error = exc

    def _run(self) -> None:
        s = self.session
        order = s.prepare(
            "INSERT INTO shop.orders (customer, order_id, item, quantity, price, tags, placed_at) "
            "VALUES (?, ?, ?, ?, ?, ?, toTimestamp(now()))"
        )
        customer = s.prepare("INSERT INTO shop.customers (id, name, email, phone) VALUES (?, ?, ?, ?)")
        update = s.prepare("UPDATE shop.orders SET quantity = ? WHERE customer = ? AND order_id = ?")
        delete = s.prepare("DELETE FROM shop.orders WHERE customer = ? AND order_id = ?")
        rng = random.Random(7)
        started = time.monotonic()
        n = 0
        while time.monotonic() - started < self.seconds:
            c = n % 50
            if n % 10 == 0:
                s.execute(customer, (c, f"Customer {c}", f"customer{c}@example.com", f"+44 7700 9{c:05d}"))
            elif n % 7 == 0 and n > 20:
                s.execute(update, (rng.randint(1, 9), f"c{c}", rng.randint(0, n // 50)))
            elif n % 13 == 0 and n > 20:
                s.execute(delete, (f"c{c}", rng.randint(0, n // 50)))
            else:
                price = rng.randint(100, 99999) / 100
                s.execute(order, (f"c{c}", n // 50, f"item-{n % 97}", rng.randint(1, 5), price, {f"t{n % 4}"}))
            n += 1
            self.writes = n
            ahead = n / self.rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)


async def count_pg(dsn: str, table: str) -> int:
    connection = await asyncpg.connect(dsn)
    try:
        return int(await connection.fetchval(f"SELECT count(*) FROM {table}"))
    except asyncpg.UndefinedTableError:
        return 0
    finally:
        await connection.close()


def count_ch(client: Any, table: str) -> int:
    try:
        return int(client.query(f"SELECT count() FROM {table}").result_rows[0][0])
    except Exception:  # table not created yet
        return 0


def write_pipeline(workdir: Path, cassandra_port: int, pg_dsn: str, ch_dsn: str) -> Path:
    """The example pipeline with this run's addresses, plus its secrets folder."""
    config = yaml.safe_load((HERE / "pipeline.yaml").read_text())
    config["spec"]["source"]["cassandra"]["port"] = cassandra_port
    secrets = workdir / "secrets"
    for name, key, value in (
        ("shop-postgres", "dsn", pg_dsn),
        ("shop-clickhouse", "dsn", ch_dsn),
        ("shop-masking", "hmac-key", "demo-key-change-me"),
    ):
        (secrets / name).mkdir(parents=True, exist_ok=True)
        (secrets / name / key).write_text(value)
    path = workdir / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def snapshot_progress(runtime: Runtime) -> str:
    """The node's snapshot in a few characters: rows read, or done."""
    tables = runtime.node_status().snapshot.values()
    if not tables:
        return "-"
    rows = sum(t.rows_read for t in tables)
    return "done" if all(t.state == "done" for t in tables) else f"{rows} rows"


async def demo(workdir: Path, seconds: float, rate: int, preloaded: int) -> int:
    started = time.monotonic()
    say("starting PostgreSQL ...")
    with running_postgres(workdir / "postgres") as pg:
        say(f"  PostgreSQL {pg.dsn()} (up in {pg.startup_seconds:.1f}s)")
        pg_dsn = pg.create_database("shop")
        ch_dsn = chdb_dsn(workdir / "chdb")
        say("starting Cassandra 5.0 with CDC on ...")
        with running_cassandra(workdir / "cassandra") as node:
            say(f"  Cassandra {node.host}:{node.port}, cdc_raw {node.cdc_raw_dir} (up in {node.startup_seconds:.1f}s)")
            session = node.session()
            for statement in SCHEMA:
                session.execute(statement)
            if preloaded:
                took = preload(session, preloaded)
                say(f"  {preloaded} orders written before the pipeline exists ({took:.1f}s): the snapshot reads them")
            for statement in CDC_ON:
                session.execute(statement)
            config = write_pipeline(workdir, node.port, pg_dsn, ch_dsn)
            say(f"pipeline config: {config} (from examples/pipeline.yaml)")
            pipeline = load_pipeline(config)
            options = RuntimeOptions(
                node="demo-node-0",
                cdc_raw=node.cdc_raw_dir,
                secrets_dir=workdir / "secrets",
                http_host="127.0.0.1",
                http_port=0,
                dead_letter_dir=workdir / "dead-letters",
            )
            runtime = Runtime(pipeline, options)
            stop = asyncio.Event()
            runner = asyncio.create_task(runtime.run(stop))
            ch = chdb_client(workdir / "chdb")
            workload = Workload(session, seconds, rate)
            workload.start()
            say(f"\nworkload: {rate} writes/s for {seconds:.0f}s  (metrics: http://127.0.0.1:<port>/metrics)\n")
            say(
                f"{'t':>4}  {'cassandra writes':>16}  {'snapshot':>11}  {'pg orders':>9}  {'ch orders':>9}"
                f"  {'lag s':>6}  {'events/s':>9}"
            )
            tick = time.monotonic()
            while workload.is_alive() or time.monotonic() - tick < 3:
                await asyncio.sleep(1)
                status = runtime.node_status()
                say(
                    f"{time.monotonic() - started:4.0f}  {workload.writes:16d}  {snapshot_progress(runtime):>11}  "
                    f"{await count_pg(pg_dsn, 'shop.orders'):9d}  {count_ch(ch, 'shop.orders'):9d}  "
                    f"{status.lag_seconds or 0:6.2f}  {status.events_per_second:9.0f}"
                )
                if workload.is_alive():
                    tick = time.monotonic()
                if runner.done():
                    break
            if workload.error is not None:
                raise workload.error
            result = await _check(runtime, session, SecretStore(workdir / "secrets"), ch)
            stop.set()
            await runner
            return result


async def _check(runtime: Runtime, session: Any, secrets: SecretStore, ch: Any) -> int:
    """Wait for both sinks to equal Cassandra row for row (after masking); show the differences if not."""
    pipeline = runtime.pipeline
    deadline = time.monotonic() + 60
    while True:
        results, lines = await compare_pipeline(pipeline.spec, secrets, session, ch)
        if all(r.equal for r in results) or time.monotonic() > deadline:
            break
        await asyncio.sleep(1.0)
    say("\ncomparing every row and column with Cassandra's SELECT * after the pipeline's masking:")
    for r in results:
        verdict = "equal" if r.equal else "DIFFERENT"
        say(f"  {r.table:<16} {r.sink:<10} {r.actual:6d} rows, Cassandra {r.expected:6d}: {verdict}")
    sample = ch.query("SELECT id, name, email, phone FROM shop.customers ORDER BY id LIMIT 3").result_rows
    say("customers as ClickHouse holds them (email hashed with HMAC-SHA256, phone partially masked):")
    for row in sample:
        say(f"  {row}")
    progress = runtime.runner.progress if runtime.runner else None
    if progress is not None:
        say(f"committed position {progress.committed}; {progress.events_committed} events committed")
    if lines:
        say("\nMISMATCH: the sinks did not converge to Cassandra's state within 60 s (first differing rows):")
        for line in lines:
            say(line)
        return 1
    say("both sinks equal Cassandra, row for row ✔")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--rate", type=int, default=400, help="Cassandra writes per second")
    parser.add_argument("--preload", type=int, default=20_000, help="orders in Cassandra before the pipeline starts")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("cassandra").setLevel(logging.ERROR)
    workdir = Path(tempfile.mkdtemp(prefix="headrace-demo-"))
    workdir.chmod(0o711)  # PostgreSQL runs as its own user when we are root: it must reach its folder
    say(f"Headrace demo — working folder {workdir}")
    tune_garbage_collector()  # the runtime runs in this process: tuned as `headrace run` is
    try:
        return asyncio.run(demo(workdir, args.seconds, args.rate, args.preload))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
