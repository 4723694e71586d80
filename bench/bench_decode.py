"""Commitlog decoding speed over a recorded real corpus: segment reading + mutation decoding, one process.

The corpus (``bench/corpus.py``) is a seeded mixed workload recorded from a
real Cassandra 5.0 in four variants: commitlog v7 (``CASSANDRA_4``) and v8
(``NONE``), each plain and LZ4-compressed; five tables (four with CDC),
inserts, partial updates, row/range/partition/cell deletes, TTLs, statics,
collections, UDTs, tuples and logged batches. It is cached under
``$HEADRACE_CACHE/bench-corpus/`` and recorded when missing (about a minute
per variant).

For each variant and each decoder (the pure-Python reference and the
compiled core ``headrace_native``), the segments are read and decoded into
change events in a child process (so its peak RSS is its own), from:

- **warm** files: read just before each pass, so they are in the page cache;
- **cold** files: before each pass every file is fsynced and dropped from the
  page cache with ``posix_fadvise(POSIX_FADV_DONTNEED)`` (``fincore`` confirms
  how much stayed resident; it is recorded in the JSON).

Each figure is the median of several passes, taken in ``ROUNDS`` interleaved
rounds of every case (so a slow phase of the shared machine hits every case
alike); the printed note gives the range, every pass is in the JSON.

``mutations/s`` and ``MB/s`` divide by the CPU time of the decoding process
(one core; other work on the shared machine disturbs it far less than the
wall clock, which also counts waiting for a core); ``mutations/s, wall
clock`` divides by elapsed time, which is where cold files show (waiting for
the disk). MB/s counts the segment bytes on disk
(LZ4 segments: compressed bytes). ``read_only`` is segment reading and CRC
checks without decoding (warm). ``vs pure Python`` is the compiled core's rate
over the reference's on the same files in the same run. ``records`` is what
``headrace decode`` does per mutation (warm): the compiled decoder, then each
event as a JSON line (``source.dump.event_record``, encoded, not printed).
``cassandra_reader`` is Cassandra 5.0's own ``CommitLogReader`` over the same
segments in one warm JVM (``bench/cassandra_reader.py``): the median of its
later passes (after the JIT has compiled the reading path), per CPU second of
the JVM process, and the compiled core's warm rate as a ratio to it.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.cassandra_reader import read_variant
from bench.corpus import VARIANTS, ensure_corpus
from pipeline_runtime.events import Position, SourcePosition
from pipeline_runtime.source.cdc_index import read_index
from pipeline_runtime.source.commitlog.fast import Decoder, mutation_decoder, native_available
from pipeline_runtime.source.commitlog.mutation import MutationDecoder
from pipeline_runtime.source.commitlog.segment import SegmentReader
from pipeline_runtime.source.dump import event_record
from pipeline_runtime.source.schema.registry import SchemaRegistry, StaticSchemaSource
from pipeline_runtime.source.schema.rows import SchemaRows

ROOT = Path(__file__).resolve().parents[1]
#: Passes per child process (the corpus takes ~0.3 s natively, ~1.5 s in Python), and rounds of
#: every case one after the other; the median of all passes is reported, the range in the JSON.
PASSES = {"read": 2, "native": 2, "python": 1, "records": 1}
ROUNDS = 3
#: Passes of Cassandra's reader in its JVM; the later half is its steady state.
JAVA_PASSES = 12
#: Page-cache states measured per decoder (one pass of each per round in one child process).
CACHES = {"read": ["warm"], "native": ["warm", "cold"], "python": ["warm", "cold"], "records": ["warm"]}


def segments(folder: Path) -> list[tuple[Path, int]]:
    """The corpus segments of one variant with their durable offsets."""
    out = []
    for path in sorted(folder.glob("CommitLog-*.log")):
        state = read_index(path.with_name(path.name.removesuffix(".log") + "_cdc.idx"))
        assert state is not None, path
        out.append((path, state.offset))
    return out


def decode_pass(folder: Path, decoder_name: str, registry: SchemaRegistry) -> dict[str, Any]:
    """Read (and unless ``decoder_name`` is ``read``, decode) every segment of one variant once."""
    decoders: dict[int, Decoder] = {}
    entries = events = 0
    encode = json.JSONEncoder(default=str).encode
    printed = 0
    wall = time.perf_counter()
    cpu = time.process_time()
    for path, durable in segments(folder):
        reader = SegmentReader(path)
        version = reader.read_header().messaging_version
        decoder = decoders.get(version)
        if decoder is None and decoder_name != "read":
            if decoder_name == "python":
                decoder = MutationDecoder(registry.plan, version)
            else:
                decoder = mutation_decoder(registry.plan, version)
                assert not isinstance(decoder, MutationDecoder), "the native decoder fell back to the reference"
            decoders[version] = decoder
        for entry in reader.read(durable):
            if decoder is not None:
                position = SourcePosition("bench", Position(entry.segment_id, entry.end))
                decoded = decoder.decode(entry.body, position)
                events += len(decoded)
                if decoder_name == "records":  # headrace decode's lines
                    printed += sum(len(encode(event_record(event))) + 1 for event in decoded)
            entries += 1
    return {
        "mutations": entries,
        "events": events,
        "printed_chars": printed,
        "wall_seconds": time.perf_counter() - wall,
        "cpu_seconds": time.process_time() - cpu,
    }


def decode_corpus(folder: Path, decoder_name: str, caches: list[str], passes: int) -> dict[str, Any]:
    """``passes`` rounds over one variant, each with one pass per cache state; runs in its own process."""
    rows = SchemaRows.from_json(json.loads((folder / "schema.json").read_text()))
    registry = SchemaRegistry(StaticSchemaSource(rows))
    if decoder_name in ("native", "records") and not native_available():
        raise RuntimeError("headrace_native is not built")
    paths = [p for p, _ in segments(folder)]
    runs = []
    for _ in range(passes):
        for cache in caches:
            if cache == "cold":
                drop(paths)
            else:
                warm(paths)
            resident = resident_bytes(paths)
            runs.append(
                decode_pass(folder, decoder_name, registry) | {"cache": cache, "resident_bytes_before": resident}
            )
    return {"passes": runs, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def in_child(folder: Path, decoder_name: str, caches: list[str], passes: int) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    command = [sys.executable, "-m", "bench.bench_decode", decoder_name, str(folder), ",".join(caches), str(passes)]
    done = subprocess.run(command, check=True, capture_output=True, text=True, env=env, cwd=ROOT)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def warm(paths: list[Path]) -> None:
    """Read every file once, so it sits in the page cache."""
    for path in paths:
        with path.open("rb") as handle:
            while handle.read(1 << 20):
                pass


def drop(paths: list[Path]) -> None:
    """Write back and drop every file from the page cache."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def resident_bytes(paths: list[Path]) -> int | None:
    """Bytes of ``paths`` in the page cache (util-linux ``fincore``), None when it is missing."""
    if shutil.which("fincore") is None:
        return None
    done = subprocess.run(
        ["fincore", "--bytes", "--noheadings", "--raw", "--output", "RES", *map(str, paths)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        return None
    return sum(int(line) for line in done.stdout.split())


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _range(values: list[float], digits: int = 0) -> str:
    return f"{min(values):,.{digits}f}-{max(values):,.{digits}f} over {len(values)}"


def run() -> list[dict[str, Any]]:
    root = ensure_corpus()
    decoders = ["python", "native", "records"] if native_available() else ["python"]
    if not native_available():
        print("# headrace_native is not built: only the pure-Python decoder is measured", flush=True)
    results: list[dict[str, Any]] = []
    peak_rss: dict[str, float] = {}
    for variant in VARIANTS:
        folder = root / variant.name
        manifest = json.loads((folder / "manifest.json").read_text())
        paths = [p for p, _ in segments(folder)]
        disk_bytes = sum(p.stat().st_size for p in paths)
        common = {
            "variant": variant.name,
            "commitlog_version": variant.commitlog_version,
            "compression": variant.compression,
            "statements": manifest["statements"],
            "segments": len(paths),
            "disk_bytes": disk_bytes,
            "logical_bytes": sum(s["durable_offset"] for s in manifest["segments"]),
            "corpus": str(folder),
        }
        cases = [(name, cache) for name in ["read", *decoders] for cache in CACHES[name]]
        passes: dict[tuple[str, str], list[dict[str, Any]]] = {case: [] for case in cases}
        for _ in range(ROUNDS):  # interleaved, so a slow phase of the machine hits every case alike
            for name in ["read", *decoders]:
                measured = in_child(folder, name, CACHES[name], PASSES[name])
                for run in measured["passes"]:
                    passes[(name, run["cache"])].append(run)
                peak_rss[name] = max(peak_rss.get(name, 0.0), measured["peak_rss_mib"])
        rates: dict[tuple[str, str], float] = {}
        for (name, cache), runs in passes.items():
            cpu = [r["mutations"] / r["cpu_seconds"] for r in runs]
            wall = [r["mutations"] / r["wall_seconds"] for r in runs]
            mb = [disk_bytes / r["cpu_seconds"] / 1e6 for r in runs]
            rate = rates[(name, cache)] = _median(cpu)
            extra = common | {"cache": cache, "passes": runs}
            if name == "read":
                label = f"decode.read_only[{variant.name}]"
                results.append(_row(label, "mutations/s", rate) | extra | {"note": _range(cpu)})
                continue
            label = f"decode.{name}[{variant.name},{cache}]"
            results.append(_row(label, "mutations/s", rate) | extra | {"note": _range(cpu)})
            results.append(_row(label, "MB/s", _median(mb), "MB/s") | extra | {"note": _range(mb, 1)})
            results.append(_row(label, "mutations/s, wall clock", _median(wall)) | extra | {"note": _range(wall)})
        if "native" in decoders:
            java = read_variant(folder, variant, paths, JAVA_PASSES)["passes"]
            steady = java[len(java) // 2 :]
            java_rate = _median([r["mutations"] / r["cpu_seconds"] for r in steady])
            note = _range([r["mutations"] / r["cpu_seconds"] for r in steady]) + " later passes, warm JVM"
            label = f"decode.cassandra_reader[{variant.name}]"
            results.append(_row(label, "mutations/s", java_rate) | common | {"passes": java, "note": note})
            ratio = rates[("native", "warm")] / java_rate
            label = f"decode.native[{variant.name},warm]"
            results.append(_row(label, "vs Cassandra's CommitLogReader", ratio, "x") | common)
            for cache in ("warm", "cold"):
                ratio = rates[("native", cache)] / rates[("python", cache)]
                label = f"decode.native[{variant.name},{cache}]"
                results.append(_row(label, "vs pure Python", ratio, "x") | common | {"cache": cache})
    for name, rss in peak_rss.items():
        if name != "read":
            results.append(_row(f"decode.{name}", "peak RSS (max)", rss, "MiB"))
    return results


def _row(benchmark: str, metric: str, value: float, unit: str = "1/s") -> dict[str, Any]:
    return {"benchmark": benchmark, "metric": metric, "value": round(value, 2), "unit": unit}


if __name__ == "__main__":
    if len(sys.argv) == 5:
        print(json.dumps(decode_corpus(Path(sys.argv[2]), sys.argv[1], sys.argv[3].split(","), int(sys.argv[4]))))
    else:
        for result in run():
            print(result)
