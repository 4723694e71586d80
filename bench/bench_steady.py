"""Steady state: write-to-visible latency per sink while Cassandra takes a steady write rate.

A local Cassandra 5.0 node (CDC on, periodic commitlog sync every 50 ms, as
the test node runs) takes single-row inserts into the end-to-end benchmark's
10-column table at a fixed rate (``RATES`` per second, each for
``HEADRACE_BENCH_STEADY_SECONDS``, default 60), then as fast as 64 writes in
flight allow. ``headrace run`` (a process, as users run it, both sinks: a
durable PostgreSQL and chdb; batch 10,000, ``flushIntervalMs`` 200) tails the
node's ``cdc_raw`` the whole time.

A write is *acknowledged* when Cassandra answers it and *visible* in a sink
when that sink's ``headrace_events_written_total`` covers it (the counter
moves only after the sink committed the batch; scraped every 20 ms). Writes
reach the commitlog in about the order they are acknowledged, so the k-th
acknowledgement is paired with the moment a sink's counter reached k. Per
rate and sink: p50, p99 and the largest latency, the rate Cassandra took,
and whether the runtime kept up (every write visible within 10 s of the
last one). The goal (issue 16): p99 at most the commitlog sync period plus
1 s at 5,000 writes/s.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

from bench import bench_e2e
from devservices.cassandra import CassandraNode
from devservices.postgres import running_postgres

RATES = (1_000, 5_000)
SECONDS = float(os.environ.get("HEADRACE_BENCH_STEADY_SECONDS", "60"))
#: Cassandra's periodic commitlog sync on the benchmark's node (devservices' cassandra.yaml).
SYNC_PERIOD_S = 0.05
FLUSH_MS = 200
POLL_S = 0.02
KEPT_UP_WITHIN_S = 10.0
SINKS = ("pg", "ch")


class Visibility:
    """Scrapes the runtime's written counters every ``POLL_S``: when each sink reached each count."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.samples: list[tuple[float, dict[str, float]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Visibility:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError):
                self.samples.append((time.monotonic(), bench_e2e.written_counts(self.port)))
            self._stop.wait(POLL_S)

    def latest(self, sink: str) -> float:
        return self.samples[-1][1].get(sink, 0.0) if self.samples else 0.0

    def reached(self, sink: str, counts: list[float]) -> list[float]:
        """When ``sink``'s counter first reached each of ``counts`` (ascending), while it did."""
        out: list[float] = []
        samples = iter(list(self.samples))
        sample = next(samples, None)
        for count in counts:
            while sample is not None and sample[1].get(sink, 0.0) < count:
                sample = next(samples, None)
            if sample is None:
                break
            out.append(sample[0])
        return out


def _row(i: int) -> tuple[Any, ...]:
    return (
        i // 4, i % 4, f"name {i}", i * 7, i / 3, dt.datetime(2024, 1, 1) + dt.timedelta(seconds=i % 86_400),
        i % 2 == 0, uuid.UUID(int=i + 1), f"note {i % 97}", i % 1000,
    )  # fmt: skip


class Writer:
    """Single-row inserts at ``rate`` per second (None: as fast as ``in_flight`` allows); ack times kept."""

    def __init__(self, node: CassandraNode) -> None:
        self.session = node.session()
        self.insert = self.session.prepare(
            f"INSERT INTO {bench_e2e.KEYSPACE}.t (k, ck, name, n, x, at, flag, id, note, c) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        )
        self.next_id = 0
        self.acks: list[float] = []
        self.errors = 0
        self._lock = threading.Lock()
        self._room = threading.Semaphore(64)

    def _done(self, _: object) -> None:
        with self._lock:
            self.acks.append(time.monotonic())
        self._room.release()

    def _failed(self, _: object) -> None:
        with self._lock:
            self.errors += 1
        self._room.release()

    def run(self, rate: float | None, seconds: float) -> int:
        """Write for ``seconds``; returns how many writes were sent."""
        started = time.monotonic()
        sent = 0
        while (now := time.monotonic()) - started < seconds:
            due = int((now - started) * rate) + 1 if rate is not None else sent + 1
            while sent < due:
                self._room.acquire()
                future = self.session.execute_async(self.insert, _row(self.next_id))
                future.add_callbacks(self._done, self._failed)
                self.next_id += 1
                sent += 1
            if rate is not None:
                time.sleep(0.002)
        for _ in range(64):  # every write answered
            self._room.acquire()
        for _ in range(64):
            self._room.release()
        return sent


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def phase(
    writer: Writer, seen: Visibility, rate: float | None, *, catch_up: float = KEPT_UP_WITHIN_S
) -> dict[str, Any]:
    """One rate for ``SECONDS``: the latency of every write of the phase, per sink (``catch_up``: how
    long after the last write every write may take to become visible for the sink to have kept up)."""
    first = len(writer.acks)
    settled = time.monotonic() + KEPT_UP_WITHIN_S  # the writes before this phase visible first
    while time.monotonic() < settled and any(seen.latest(s) < first for s in SINKS):
        time.sleep(0.05)
    base = dict.fromkeys(SINKS, float(first))  # the only table: counter k + first is this phase's k-th write
    started = time.monotonic()
    sent = writer.run(rate, SECONDS)
    took = time.monotonic() - started
    acks = sorted(writer.acks[first:])
    deadline = time.monotonic() + catch_up
    while time.monotonic() < deadline and any(seen.latest(s) < base[s] + len(acks) for s in SINKS):
        time.sleep(0.1)
    out: dict[str, Any] = {"rate": rate, "sent": sent, "acked": len(acks), "took": took, "acks": acks}
    for sink in SINKS:
        visible = seen.reached(sink, [base[sink] + k for k in range(1, len(acks) + 1)])
        latencies = [max(0.0, shown - acked) for shown, acked in zip(visible, acks, strict=False)]
        out[sink] = {
            "kept_up": len(latencies) == len(acks),
            "p50": _percentile(latencies, 0.5) if latencies else None,
            "p99": _percentile(latencies, 0.99) if latencies else None,
            "max": max(latencies) if latencies else None,
            "visible": len(latencies),
            "mean": statistics.fmean(latencies) if latencies else None,
        }
        out[f"{sink}_pairs"] = list(zip(acks, visible, strict=False))  # (acknowledged, visible) per write
    return out


def pipeline_yaml(folder: Path, node: CassandraNode, sinks: dict[str, str]) -> Path:
    path = bench_e2e.pipeline_yaml(folder, node, sinks)
    config = yaml.safe_load(path.read_text())
    for sink in config["spec"]["sinks"]:
        sink["flushIntervalMs"] = FLUSH_MS
    path.write_text(yaml.safe_dump(config))
    return path


def start(stack: contextlib.ExitStack, work: Path, database: str, ch_dsn: str | None = None) -> tuple[int, Writer]:
    """A node with the benchmark's table, durable PostgreSQL and ``headrace run`` tailing them, warmed up.

    ClickHouse is ``ch_dsn`` (a server) or, without one, the in-process engine under the runtime's
    folder. Returns the runtime's metrics port and a writer; everything stops with ``stack``.
    """
    node = stack.enter_context(bench_e2e.cdc_node(work / "cassandra"))
    session = node.session()
    session.execute(
        f"CREATE KEYSPACE {bench_e2e.KEYSPACE} WITH replication = "
        "{'class': 'SimpleStrategy', 'replication_factor': 1}"
    )
    session.execute(bench_e2e.TABLE)
    (work / "pg").mkdir()
    (work / "pg").chmod(0o777)
    postgres = stack.enter_context(running_postgres(work / "pg", durable=True))
    folder = work / "runtime"
    folder.mkdir()
    dsns = {"pg": postgres.create_database(database), "ch": ch_dsn or f"chdb://{folder / 'chdb'}"}
    config = pipeline_yaml(folder, node, dsns)
    process, port, log_path = bench_e2e.start_runtime(config, node.cdc_raw_dir, folder)
    stack.callback(_stop, process)
    deadline = time.monotonic() + 120
    while '"msg": "replicating"' not in log_path.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"the runtime did not start: {log_path.read_text()[-2000:]}")
        time.sleep(0.1)
    writer = Writer(node)
    writer.run(500, 5)  # warm-up: tables made, first batches written
    return port, writer


def run() -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="headrace-bench-steady-")))
        work.chmod(0o777)
        port, writer = start(stack, work, "steady")
        with Visibility(port) as seen:
            for rate in (*RATES, None):
                measured = phase(writer, seen, rate)
                name = f"{rate:,}/s" if rate is not None else "unpaced, 64 in flight"
                took_rate = measured["acked"] / measured["took"]
                for sink in SINKS:
                    figures = measured[sink]
                    results.append(_result(name, sink, figures, took_rate, measured))
        if writer.errors:
            raise AssertionError(f"{writer.errors} writes failed")
        shutil.rmtree(work / "runtime" / "chdb", ignore_errors=True)
    return results


def _result(name: str, sink: str, figures: dict[str, Any], took_rate: float, phase: dict[str, Any]) -> dict[str, Any]:
    p99 = figures["p99"]
    goal = SYNC_PERIOD_S + 1.0
    note = (
        f"p50 {figures['p50']:.2f} s, max {figures['max']:.2f} s; Cassandra took {took_rate:,.0f} writes/s; "
        + ("kept up" if figures["kept_up"] else f"fell behind ({figures['visible']:,} of {phase['acked']:,} visible)")
        if p99 is not None
        else "nothing became visible"
    )
    return {
        "benchmark": f"steady.{sink}.{name}",
        "metric": "p99_write_to_visible_seconds",
        "value": round(p99, 3) if p99 is not None else None,
        "unit": "s",
        "note": note,
        "goal_seconds": goal,
        "seconds": SECONDS,
        "flush_interval_ms": FLUSH_MS,
        "commitlog_sync_period_s": SYNC_PERIOD_S,
        "written_per_second": round(took_rate, 1),
    } | {k: (round(v, 4) if isinstance(v, float) else v) for k, v in figures.items()}


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
