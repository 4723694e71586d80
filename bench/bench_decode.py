"""Commitlog decoding speed: segment reading + mutation decoding into change events, one core.

The corpus is built from a real mutation recorded by Cassandra 5.0
(``tests/fixtures/commitlog/v8``, the ``fx.ops`` INSERT: a composite
partition key, two clustering columns, text/int/static columns, a list, a
set, a map and a non-frozen UDT: 11 columns), repeated into 32 MiB segments
with valid sync markers and CRCs, as Cassandra lays them out. Reported:
mutations/s and MB/s for the reader alone and for reader + decoder, for the
pure-Python reference and the compiled core (``headrace_native``, when built)
side by side, each decoding in a child process so its peak RSS is its own.
"""

from __future__ import annotations

import json
import os
import resource
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

from pipeline_runtime.events import Position, SourcePosition
from pipeline_runtime.source.commitlog.descriptor import crc_of_ints
from pipeline_runtime.source.commitlog.fast import Decoder, mutation_decoder, native_available
from pipeline_runtime.source.commitlog.mutation import MutationDecoder
from pipeline_runtime.source.commitlog.segment import SegmentReader
from tests.unit.source.fixture_data import registry, segment_path

#: Corpus size; ``HEADRACE_BENCH_MUTATIONS=5600000`` makes a ~1 GiB backlog (native decoder only).
MUTATIONS = int(os.environ.get("HEADRACE_BENCH_MUTATIONS", "200000"))
PURE_PYTHON_LIMIT = 1_000_000
ROOT = Path(__file__).resolve().parents[1]
SEGMENT_SIZE = 32 * 1024 * 1024
SECTION_SIZE = 64 * 1024
RECORDING = "v8"


def sample_body() -> bytes:
    """The recorded body of the ``fx.ops`` INSERT at timestamp 1000003."""
    plans = registry(RECORDING)
    decoder = MutationDecoder(plans.plan, 13)
    for entry in SegmentReader(segment_path(RECORDING)).read():
        events = decoder.decode(entry.body, SourcePosition("n", Position(0, 0)))
        if any(e.table == "ops" and e.max_timestamp == 1000003 and e.clustering_key for e in events):
            return entry.body
    raise RuntimeError("sample mutation not found in the recording")


def write_segments(folder: Path, body: bytes, count: int) -> list[Path]:
    """Segments of ``count`` entries of ``body`` in Cassandra's layout (uncompressed, v8)."""
    entry = struct.pack(">i", len(body))
    size_crc = zlib.crc32(entry)
    entry += struct.pack(">I", size_crc) + body + struct.pack(">I", zlib.crc32(body, size_crc))
    per_section = max(1, (SECTION_SIZE - 8) // len(entry))
    paths: list[Path] = []
    written = 0
    segment_id = 1_700_000_000_000
    while written < count:
        params = b"{}"
        header = struct.pack(">iqH", 8, segment_id, len(params)) + params
        header += struct.pack(">I", zlib.crc32(params, crc_of_ints(8, segment_id, segment_id >> 32, len(params))))
        out = bytearray(header)
        while written < count and len(out) + 8 + per_section * len(entry) + 8 <= SEGMENT_SIZE:
            n = min(per_section, count - written)
            marker_at = len(out)
            next_marker = marker_at + 8 + n * len(entry)
            out += struct.pack(">iI", next_marker, crc_of_ints(segment_id, segment_id >> 32, marker_at))
            out += entry * n
            written += n
        out += bytes(8)
        path = folder / f"CommitLog-8-{segment_id}.log"
        path.write_bytes(bytes(out))
        paths.append(path)
        segment_id += 1
    return paths


def decode_corpus(folder: Path, decoder_name: str) -> dict[str, Any]:
    """Read and decode every segment in ``folder`` with one decoder; runs in its own process (clean peak RSS)."""
    if decoder_name == "python":
        decoder: Decoder = MutationDecoder(registry(RECORDING).plan, 13)
    else:
        decoder = mutation_decoder(registry(RECORDING).plan, 13)
        if isinstance(decoder, MutationDecoder):
            raise RuntimeError("headrace_native is not built")
    paths = sorted(folder.glob("CommitLog-*.log"))
    entries = events = 0
    started = time.process_time()
    for path in paths:
        for entry in SegmentReader(path).read():
            events += len(decoder.decode(entry.body, SourcePosition("n", Position(entry.segment_id, entry.end))))
            entries += 1
    seconds = time.process_time() - started
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"mutations": entries, "events": events, "seconds": seconds, "peak_rss_mib": rss}


def in_child(folder: Path, decoder_name: str) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    command = [sys.executable, "-m", "bench.bench_decode", decoder_name, str(folder)]
    done = subprocess.run(command, check=True, capture_output=True, text=True, env=env, cwd=ROOT)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run() -> list[dict[str, Any]]:
    body = sample_body()
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="headrace-bench-") as tmp:
        paths = write_segments(Path(tmp), body, MUTATIONS)
        total_bytes = sum(p.stat().st_size for p in paths)

        started = time.process_time()
        entries = sum(1 for p in paths for _ in SegmentReader(p).read())
        read_seconds = time.process_time() - started
        common = {"mutations": entries, "body_bytes": len(body), "corpus_bytes": total_bytes}
        results.append(
            {"benchmark": "decode.read_only", "metric": "mutations/s", "value": entries / read_seconds, "unit": "1/s"}
            | common
        )
        decoders = ["python", "native"] if native_available() else ["python"]
        for name in decoders:
            if name == "python" and MUTATIONS > PURE_PYTHON_LIMIT:
                continue  # a backlog run: the reference would take minutes and adds nothing
            measured = in_child(Path(tmp), name)
            rate = measured["mutations"] / measured["seconds"]
            row = common | {"events": measured["events"]}
            results.append({"benchmark": f"decode.{name}", "metric": "mutations/s", "value": rate, "unit": "1/s"} | row)
            mb_per_s = total_bytes / measured["seconds"] / 1e6
            results.append({"benchmark": f"decode.{name}", "metric": "MB/s", "value": mb_per_s, "unit": "MB/s"} | row)
            rss = measured["peak_rss_mib"]
            results.append({"benchmark": f"decode.{name}", "metric": "peak RSS", "value": rss, "unit": "MiB"} | row)
        if not native_available():
            print("# headrace_native is not built: only the pure-Python decoder was measured", flush=True)
    return results


if __name__ == "__main__":
    if len(sys.argv) == 3:
        print(json.dumps(decode_corpus(Path(sys.argv[2]), sys.argv[1])))
    else:
        for row in run():
            print(row)
