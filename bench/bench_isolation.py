"""Isolation: one sink stopped for 30 s while the other keeps its write-to-visible latency.

The steady-state set-up (``bench_steady``: a local Cassandra 5.0 node with CDC, ``headrace run`` as a
process, a durable PostgreSQL, batch 10,000, ``flushIntervalMs`` 200), with ClickHouse served over
HTTP by the ClickHouse front (the chdb engine in a server process of its own) so that it can be
stopped: Cassandra takes ``RATE`` single-row writes per second for ``bench_steady.SECONDS``;
``OUTAGE_AT_S`` seconds in, the ClickHouse server is stopped for ``OUTAGE_S`` seconds, then started
again.

Printed per sink: p99 write-to-visible latency over the writes acknowledged while ClickHouse was
down (for PostgreSQL the goal of issue 16 holds there too: the commitlog sync period plus 1 s) and
over the whole run, and for ClickHouse how long after its server came back every write was in it
(its lane re-read ``cdc_raw`` from its own checkpoint).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench import bench_steady
from devservices.clickhouse_http import running_clickhouse_front

RATE = 5_000
OUTAGE_AT_S = 15.0
OUTAGE_S = 30.0
#: After the last write, how long ClickHouse may take to hold every write (it re-reads its backlog).
CATCH_UP_S = 120.0


def run() -> list[dict[str, Any]]:
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="headrace-bench-isolation-")))
        work.chmod(0o777)
        front = stack.enter_context(running_clickhouse_front(work / "clickhouse"))
        port, writer = bench_steady.start(stack, work, "isolation", front.dsn)
        window: dict[str, float] = {}

        def outage() -> None:
            time.sleep(OUTAGE_AT_S)
            window["down"] = time.monotonic()
            front.stop()
            time.sleep(OUTAGE_S)
            front.start()
            window["up"] = time.monotonic()

        with bench_steady.Visibility(port) as seen:
            breaker = threading.Thread(target=outage, daemon=True)
            breaker.start()
            measured = bench_steady.phase(writer, seen, RATE, catch_up=CATCH_UP_S)
            breaker.join()
        if writer.errors:
            raise AssertionError(f"{writer.errors} writes failed")
        results = _results(measured, window)
        shutil.rmtree(work / "clickhouse", ignore_errors=True)
    return results


def _results(measured: dict[str, Any], window: dict[str, float]) -> list[dict[str, Any]]:
    down, up = window["down"], window["up"]
    goal = bench_steady.SYNC_PERIOD_S + 1.0
    took_rate = measured["acked"] / measured["took"]
    out = []
    for sink in bench_steady.SINKS:
        pairs: list[tuple[float, float]] = measured[f"{sink}_pairs"]
        during = [max(0.0, shown - acked) for acked, shown in pairs if down <= acked <= up]
        overall = measured[sink]
        row: dict[str, Any] = {
            "benchmark": f"isolation.{sink}",
            "rate": RATE,
            "outage_seconds": OUTAGE_S,
            "written_per_second": round(took_rate, 1),
            "visible": overall["visible"],
            "acked": measured["acked"],
            "kept_up": overall["kept_up"],
            "p99_overall": overall["p99"],
            "goal_seconds": goal,
        }
        if sink == "pg":
            p99 = bench_steady._percentile(during, 0.99) if during else None
            row |= {"metric": "p99_while_ch_down", "value": round(p99, 3) if p99 is not None else None, "unit": "s"}
            row["note"] = (
                f"{len(during):,} writes while ClickHouse was down; p50 "
                f"{bench_steady._percentile(during, 0.5):.2f} s; whole run p99 {overall['p99']:.2f} s"
                if during
                else "no write became visible while ClickHouse was down"
            )
        else:
            # The backlog at the restart: every write acknowledged before it, visible at last.
            backlog = [shown for acked, shown in pairs if acked <= up]
            acked_before = sum(1 for acked in measured["acks"] if acked <= up)
            caught_up = max(backlog) - up if backlog and len(backlog) == acked_before else None
            row |= {
                "metric": "all_visible_after_restart",
                "value": round(caught_up, 1) if caught_up is not None else None,
                "unit": "s",
            }
            row["note"] = (
                f"every write in ClickHouse {caught_up:.1f} s after its server came back"
                if caught_up is not None
                else f"fell behind ({overall['visible']:,} of {measured['acked']:,} visible)"
            )
        out.append(row)
    return out
