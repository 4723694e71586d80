"""Run every benchmark module, print one table, write JSON to bench/results/.

A benchmark module is ``bench/bench_<name>.py`` with ``run() -> list[dict]``:
each dict is one result row with at least ``benchmark``, ``metric``, ``value``
and ``unit`` (any other keys are kept in the JSON). ``python -m bench NAME``
runs only the modules whose name contains NAME.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def machine() -> dict[str, Any]:
    """Describe the machine the figures come from."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}


def main(argv: list[str]) -> int:
    wanted = argv[1:]
    modules = sorted(p.stem for p in HERE.glob("bench_*.py"))
    if wanted:
        modules = [m for m in modules if any(w in m for w in wanted)]
    rows: list[dict[str, Any]] = []
    for name in modules:
        started = time.perf_counter()
        module = importlib.import_module(f"bench.{name}")
        print(f"# {name} ...", flush=True)
        rows.extend(module.run())
        print(f"# {name} took {time.perf_counter() - started:.1f}s", flush=True)
    width = max((len(r["benchmark"]) for r in rows), default=10)
    print(f"\n{'benchmark':<{width}}  {'metric':<24} {'value':>14}  unit")
    for r in rows:
        value = r["value"]
        shown = f"{value:,.1f}" if isinstance(value, float) else f"{value:,}"
        print(f"{r['benchmark']:<{width}}  {r['metric']:<24} {shown:>14}  {r['unit']}")
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    path = out / f"bench-{stamp}.json"
    path.write_text(json.dumps({"machine": machine(), "results": rows}, indent=2, default=str))
    (out / "latest.json").write_text(path.read_text())
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
