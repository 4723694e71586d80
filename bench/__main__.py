"""Run every benchmark module, print one table, write JSON to bench/results/.

A benchmark module is ``bench/bench_<name>.py`` with ``run() -> list[dict]``:
each dict is one result row with at least ``benchmark``, ``metric``, ``value``
and ``unit``, optionally a short ``note`` printed beside the value (any other
keys are kept in the JSON). A row's ``settings`` (with ``server``) name the
server configuration it ran against; the JSON collects them under ``servers``,
beside the commit, the machine (CPU, cores, memory, kernel, load) and Python.
``python -m bench NAME`` runs only the modules whose name contains NAME.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def machine() -> dict[str, Any]:
    """Describe the machine the figures come from: CPU, cores, memory, kernel, load."""
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in _read("/proc/cpuinfo").splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown",
    )
    memory_kib = next(
        (int(line.split()[1]) for line in _read("/proc/meminfo").splitlines() if line.startswith("MemTotal:")), 0
    )
    uname = platform.uname()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "memory_gib": round(memory_kib / 1024 / 1024, 1),
        "kernel": f"{uname.system} {uname.release} {uname.machine}",
        "platform": platform.platform(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def commit() -> dict[str, Any]:
    """The commit measured, and whether the work tree differed from it."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], capture_output=True, text=True, check=False, cwd=HERE.parent)
        return done.stdout.rstrip()

    changed = git("status", "--porcelain", "--untracked-files=no")
    head = git("rev-parse", "HEAD").strip() or "unknown"
    return {"commit": head, "dirty": bool(changed), "changed": changed.splitlines()}


def servers(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The server settings the benchmark rows name (one entry per distinct server and settings)."""
    out: dict[str, Any] = {}
    for row in rows:
        settings = row.get("settings")
        if settings is None:
            continue
        name = row.get("server", "server")
        mode = "unsafe" if "unsafe" in row["benchmark"] else "durable"
        out.setdefault(f"{name} ({mode})" if name == "postgres" else name, settings)
    return out


def _shown(value: float | int) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    return f"{value:,}"


def main(argv: list[str]) -> int:
    wanted = argv[1:]
    modules = sorted(p.stem for p in HERE.glob("bench_*.py"))
    if wanted:
        modules = [m for m in modules if any(w in m for w in wanted)]
    rows: list[dict[str, Any]] = []
    began = time.perf_counter()
    context: dict[str, Any] = {"commit": commit(), "machine": machine(), "python": sys.version.split()[0]}
    timings: dict[str, float] = {}
    for name in modules:
        started = time.perf_counter()
        module = importlib.import_module(f"bench.{name}")
        print(f"# {name} ...", flush=True)
        rows.extend(module.run())
        timings[name] = round(time.perf_counter() - started, 1)
        print(f"# {name} took {timings[name]:.1f}s", flush=True)
    width = max((len(r["benchmark"]) for r in rows), default=10)
    print(f"\n{'benchmark':<{width}}  {'metric':<24} {'value':>14}  unit")
    for r in rows:
        note = f"  ({r['note']})" if r.get("note") else ""
        print(f"{r['benchmark']:<{width}}  {r['metric']:<24} {_shown(r['value']):>14}  {r['unit']:<6}{note}")
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    path = out / f"bench-{stamp}.json"
    total = round(time.perf_counter() - began, 1)
    context["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    document: dict[str, Any] = context | {
        "servers": servers(rows),
        "seconds": {"total": total, **timings},
        "results": rows,
    }
    path.write_text(json.dumps(document, indent=2, default=str))
    (out / "latest.json").write_text(path.read_text())
    m = context["machine"]
    print(
        f"\n{m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB, {m['kernel']}, Python {context['python']}, "
        f"commit {context['commit']['commit'][:12]}{' + local changes' if context['commit']['dirty'] else ''}; "
        f"{total:.0f}s"
    )
    for server, settings in document["servers"].items():
        print(f"{server}: {', '.join(f'{k}={v}' for k, v in settings.items())}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
