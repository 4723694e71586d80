"""End to end: a backlog in cdc_raw drained by ``headrace run`` into PostgreSQL, ClickHouse, and both.

A local Cassandra 5.0 node (CDC on) takes ``ROWS`` single-row inserts into a
10-column table (bigint and int keys; text, bigint, double, timestamp,
boolean, uuid, text and int values), one mutation each. Its ``cdc_raw`` is
then copied aside, and for each sink set a fresh copy is drained by the
runtime as users run it: ``python -m pipeline_runtime run`` as a process,
batch size ``BATCH``, into a durable PostgreSQL database of its own and a
chdb folder of its own. Cassandra is idle during the drains.

Per drain: rows/s from the runtime's "replicating" log line (sinks open, the
start position read) to the moment every sink's
``headrace_events_written_total`` reached ``ROWS`` (scraped every 0.1 s);
the runtime's CPU seconds per 1,000 rows over the same span (user + system,
from ``/proc``; with ClickHouse the in-process chdb engine's work is in it);
its peak RSS (``VmHWM``). Afterwards each sink is read back: the row count
and a column sum must equal what was inserted.

The same run measures each sink on its own through ``Sink.write`` at the same
batch size (``bench_sinks.measure``) and prints the drain rate as a ratio to
it (for both sinks: to the slower one), so the figure carries over between
machines. ``HEADRACE_BENCH_E2E_ROWS`` sets the backlog (default 1,000,000).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import yaml

from bench import bench_sinks
from devservices.cassandra import CassandraNode, default_heap_mib, running_cassandra
from devservices.clickhouse import engine_path
from devservices.postgres import PostgresServer, running_postgres
from devservices.process import free_port
from pipeline_runtime.sinks.base import TableNaming
from pipeline_runtime.sinks.clickhouse import ClickHouseSink
from pipeline_runtime.sinks.postgres import PostgresSink

ROWS = int(os.environ.get("HEADRACE_BENCH_E2E_ROWS", "1000000"))
BATCH = 10_000
KEYSPACE = "bench"
TABLE = (
    "CREATE TABLE bench.t (k bigint, ck int, name text, n bigint, x double, at timestamp, flag boolean,"
    " id uuid, note text, c int, PRIMARY KEY (k, ck)) WITH cdc = true"
)
#: A drain that has not finished after this long failed.
DRAIN_TIMEOUT = 1800.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def load(node: CassandraNode) -> float:
    """Insert ``ROWS`` rows, one mutation each; returns the seconds it took."""
    import datetime as dt  # noqa: PLC0415
    import uuid  # noqa: PLC0415

    from cassandra.concurrent import execute_concurrent_with_args  # noqa: PLC0415

    session = node.session()
    session.execute(
        f"CREATE KEYSPACE {KEYSPACE} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}"
    )
    session.execute(TABLE)
    insert = session.prepare(
        "INSERT INTO bench.t (k, ck, name, n, x, at, flag, id, note, c) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )
    epoch = dt.datetime(2024, 1, 1)
    started = time.monotonic()
    chunk = 20_000
    for first in range(0, ROWS, chunk):
        args = [
            (i // 4, i % 4, f"name {i}", i * 7, i / 3, epoch + dt.timedelta(seconds=i), i % 2 == 0,
             uuid.UUID(int=i + 1), f"note {i % 97}", i % 1000)
            for i in range(first, min(first + chunk, ROWS))
        ]  # fmt: skip
        execute_concurrent_with_args(session, insert, args, concurrency=64, raise_on_first_error=True)
    seconds = time.monotonic() - started
    node.stop_driver()
    return seconds


def expected_sum() -> int:
    return sum(i * 7 for i in range(ROWS))


def settle_and_copy(cdc_raw: Path, into: Path, quiet: float = 2.0) -> int:
    """Copy cdc_raw once Cassandra stopped changing it (synced, idle); returns the bytes copied.

    Each idx is copied before its log, so a copy never promises bytes its log lacks.
    """

    def state() -> list[tuple[str, int, float]]:
        return sorted((p.name, p.stat().st_size, p.stat().st_mtime) for p in cdc_raw.iterdir())

    last, since = state(), time.monotonic()
    while time.monotonic() - since < quiet:
        time.sleep(0.25)
        now = state()
        if now != last:
            last, since = now, time.monotonic()
    into.mkdir(parents=True)
    for index in sorted(cdc_raw.glob("*_cdc.idx")):
        shutil.copy2(index, into / index.name)
    for log in sorted(cdc_raw.glob("*.log")):
        shutil.copy2(log, into / log.name)
    return sum(p.stat().st_size for p in into.iterdir())


@dataclass
class Drain:
    """What one drain measured."""

    sinks: tuple[str, ...]
    startup: float
    seconds: float
    cpu_seconds: float
    peak_rss_mib: float

    @property
    def rate(self) -> float:
        return ROWS / self.seconds


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def written_counts(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    totals: dict[str, float] = {}
    for match in re.finditer(r"^headrace_events_written_total\{([^}]*)\} (\S+)$", text, re.MULTILINE):
        sink = re.search(r'sink="([^"]*)"', match.group(1))
        if sink:
            totals[sink.group(1)] = totals.get(sink.group(1), 0.0) + float(match.group(2))
    return totals


def pipeline_yaml(folder: Path, node: CassandraNode, sinks: dict[str, str]) -> Path:
    entries = []
    for name, dsn in sinks.items():
        (folder / "secrets" / name).mkdir(parents=True)
        (folder / "secrets" / name / "dsn").write_text(dsn)
        entry: dict[str, Any] = {
            "name": name,
            "type": "clickhouse" if dsn.startswith(("chdb", "http")) else "postgres",
            "connectionSecret": {"name": name, "key": "dsn"},
            "batchSize": BATCH,
        }
        entries.append(entry)
    config = {
        "apiVersion": "headrace.io/v1alpha1",
        "kind": "CDCPipeline",
        "metadata": {"name": "bench", "namespace": "bench"},
        "spec": {
            "source": {
                "cassandra": {"contactPoint": node.host, "port": node.port},
                "tables": [{"keyspace": KEYSPACE, "table": "t"}],
                "snapshot": {"mode": "never"},
            },
            "sinks": entries,
        },
    }
    path = folder / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def start_runtime(config: Path, cdc_raw: Path, folder: Path) -> tuple[subprocess.Popen[bytes], int, Path]:
    """``headrace run`` as users run it, logging to ``folder/runtime.log``: the process, its HTTP port, the log."""
    port = free_port()
    command = [
        sys.executable, "-m", "pipeline_runtime", "run", "--config", str(config), "--node", "node-0",
        "--cdc-raw", str(cdc_raw), "--secrets-dir", str(folder / "secrets"),
        "--dead-letter-dir", str(folder / "dead"), "--http-host", "127.0.0.1", "--http-port", str(port),
    ]  # fmt: skip
    log_path = folder / "runtime.log"
    with log_path.open("w") as log_file:
        process = subprocess.Popen(command, stderr=log_file, stdout=subprocess.DEVNULL)
    return process, port, log_path


def drain(node: CassandraNode, pristine: Path, folder: Path, sinks: dict[str, str]) -> Drain:
    """Run the runtime over a fresh copy of the backlog until every sink wrote ``ROWS`` events."""
    cdc_raw = folder / "cdc_raw"
    shutil.copytree(pristine, cdc_raw)
    config = pipeline_yaml(folder, node, sinks)
    launched = time.monotonic()
    process, port, log_path = start_runtime(config, cdc_raw, folder)
    try:
        deadline = launched + DRAIN_TIMEOUT
        began = cpu_began = None
        while True:
            if process.poll() is not None:
                raise AssertionError(f"the runtime exited {process.returncode}: {log_path.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"the drain into {sorted(sinks)} did not end in {DRAIN_TIMEOUT:.0f} s")
            if began is None:
                if '"msg": "replicating"' in log_path.read_text():
                    began, cpu_began = time.monotonic(), _cpu_seconds(process.pid)
            else:
                with contextlib.suppress(OSError):
                    written = written_counts(port)
                    if all(written.get(name, 0.0) >= ROWS for name in sinks):
                        ended, cpu_ended = time.monotonic(), _cpu_seconds(process.pid)
                        break
            time.sleep(0.1)
        assert began is not None and cpu_began is not None
        result = Drain(
            tuple(sinks),
            startup=began - launched,
            seconds=ended - began,
            cpu_seconds=cpu_ended - cpu_began,
            peak_rss_mib=_peak_rss_mib(process.pid),
        )
    finally:
        process.terminate()
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return result


async def postgres_landed(dsn: str) -> tuple[int, int]:
    connection = await asyncpg.connect(dsn)
    try:
        row = await connection.fetchrow(f'SELECT count(*), sum(n) FROM "{KEYSPACE}"."t"')
    finally:
        await connection.close()
    assert row is not None
    return int(row[0]), int(row[1] or 0)


def clickhouse_landed(folder: Path) -> tuple[int, int]:
    """Count and sum in a chdb folder, read in a process of its own (chdb holds one folder per process)."""
    script = (
        "import json, sys; from devservices.clickhouse import chdb_client; from pathlib import Path; "
        "client = chdb_client(Path(sys.argv[1])); "
        f"print(json.dumps(client.query('SELECT count(), sum(n) FROM `{KEYSPACE}`.`t`').result_rows[0]))"
    )
    done = subprocess.run([sys.executable, "-c", script, str(folder)], capture_output=True, text=True, check=True)
    count, total = json.loads(done.stdout.strip().splitlines()[-1])
    return int(count), int(total or 0)


def _check(sink: str, count: int, total: int) -> None:
    if (count, total) != (ROWS, expected_sum()):
        raise AssertionError(f"{sink}: {count} rows, sum(n) {total}; Cassandra took {ROWS} rows, sum {expected_sum()}")


def sink_rates(postgres: PostgresServer) -> dict[str, float]:
    """Each sink on its own through ``Sink.write`` at ``BATCH`` (the sinks benchmark's case), in this run."""
    dsn = postgres.create_database("e2e_sink_alone")
    pg = asyncio.run(bench_sinks.measure(PostgresSink("pg", dsn, TableNaming()), BATCH))
    sink = ClickHouseSink("ch", f"chdb://{engine_path()}", TableNaming(target="bench_e2e_alone"))
    ch = asyncio.run(bench_sinks.measure(sink, BATCH))
    return {"pg": pg, "ch": ch}


def cdc_node(workdir: Path) -> contextlib.AbstractContextManager[CassandraNode]:
    """The benchmarks' CDC node: 32 MiB segments (Cassandra's default), room for a large backlog in
    cdc_raw, and the heap Cassandra gives itself on this machine."""
    return running_cassandra(
        workdir, "NONE", commitlog_segment_mib=32, cdc_total_space_mib=4096, heap_mib=default_heap_mib()
    )


def run() -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="headrace-bench-e2e-")))
        work.chmod(0o777)
        node = stack.enter_context(cdc_node(work / "cassandra"))
        load_seconds = load(node)
        backlog = settle_and_copy(node.cdc_raw_dir, work / "pristine")
        results.append(
            {
                "benchmark": "e2e.load",
                "metric": "rows_per_second",
                "value": round(ROWS / load_seconds, 1),
                "unit": "rows/s",
                "note": f"{ROWS:,} single-row inserts, {backlog / 2**20:,.0f} MiB of cdc_raw; for reference",
            }
        )
        (work / "pg").mkdir()
        (work / "pg").chmod(0o777)
        postgres = stack.enter_context(running_postgres(work / "pg", durable=True))
        alone = sink_rates(postgres)
        for name, rate in alone.items():
            results.append(
                {
                    "benchmark": f"e2e.sink_alone.{name}",
                    "metric": "rows_per_second",
                    "value": round(rate, 1),
                    "unit": "rows/s",
                    "note": f"Sink.write at batch {BATCH:,}, this run (bench_sinks' case)",
                }
            )
        cases = {"postgres": ("pg",), "clickhouse": ("ch",), "both": ("pg", "ch")}
        for case, names in cases.items():
            folder = work / f"drain-{case}"
            folder.mkdir()
            dsns = {}
            if "pg" in names:
                dsns["pg"] = postgres.create_database(f"e2e_{case}")
            if "ch" in names:
                dsns["ch"] = f"chdb://{folder / 'chdb'}"
            measured = drain(node, work / "pristine", folder, dsns)
            if "pg" in names:
                _check(f"{case}: postgres", *asyncio.run(postgres_landed(dsns["pg"])))
            if "ch" in names:
                _check(f"{case}: clickhouse", *clickhouse_landed(folder / "chdb"))
            baseline = min(alone[n] for n in names)
            results.append(
                {
                    "benchmark": f"e2e.drain.{case}",
                    "metric": "rows_per_second",
                    "value": round(measured.rate, 1),
                    "unit": "rows/s",
                    "note": (
                        f"{measured.rate / baseline:.2f}x the {'slower ' if len(names) > 1 else ''}sink alone; "
                        f"{measured.cpu_seconds / ROWS * 1e6:.0f} µs CPU/row, peak RSS {measured.peak_rss_mib:.0f} MiB"
                    ),
                    "rows": ROWS,
                    "batch_size": BATCH,
                    "seconds": round(measured.seconds, 2),
                    "startup_seconds": round(measured.startup, 2),
                    "cpu_seconds": round(measured.cpu_seconds, 2),
                    "cpu_us_per_row": round(measured.cpu_seconds / ROWS * 1e6, 1),
                    "peak_rss_mib": round(measured.peak_rss_mib, 1),
                    "ratio_to_sink_alone": round(measured.rate / baseline, 3),
                }
                | ({"server": "postgres", "settings": postgres.server_settings()} if "pg" in names else {})
            )
    return results
