"""Cassandra's own ``CommitLogReader`` over a corpus variant, offline, in one warm JVM (``bench/java``).

The reader deserializes a mutation only for a table its schema knows by id, so
a node is started once per variant, the corpus's tables are created in it with
the ids they had when the corpus was recorded (``WITH id = ...``, from the
variant's ``schema.json``), and the node is stopped: its data folder then holds
that schema. ``CommitLogReaderBench`` loads it (``toolInitialization``, then
``Schema.loadFromDisk``, as Cassandra's offline tools do) and reads the
variant's segments ``passes`` times, reporting per pass the mutations read and
the JVM process's CPU seconds (every thread: JIT and GC count, as the Python
figures count their whole process).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from bench.corpus import SCHEMA, Variant
from devservices.cassandra import DEFAULT_VERSION, cassandra_home, java_binary, running_cassandra
from devservices.process import cache_dir

SOURCE = Path(__file__).resolve().parent / "java" / "CommitLogReaderBench.java"
MAIN = "CommitLogReaderBench"


def compiled(version: str = DEFAULT_VERSION) -> Path:
    """The harness's class folder, compiled against the cached Cassandra jars (kept by source hash)."""
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:16]
    folder = cache_dir() / "bench-java" / f"{version}-{digest}"
    if (folder / f"{MAIN}.class").exists():
        return folder
    javac = shutil.which("javac")
    if javac is None:
        raise RuntimeError(
            "javac is needed to compile bench/java/CommitLogReaderBench.java: Debian package openjdk-17-jdk-headless"
        )
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    lib = cassandra_home(version) / "lib"
    subprocess.run([javac, "-cp", f"{lib}/*", "-d", str(partial), str(SOURCE)], check=True, capture_output=True)
    partial.rename(folder)
    return folder


def with_recorded_id(statement: str, ids: dict[str, str]) -> str:
    """A corpus CREATE TABLE with the table id the corpus recorded, so the segments' table ids resolve."""
    match = re.match(r"CREATE TABLE bench\.(\w+)", statement)
    if match is None:
        return statement
    table_id = ids[match.group(1)]
    joiner = " AND " if " WITH " in statement else " WITH "
    return f"{statement}{joiner}id = {table_id}"


def read_variant(folder: Path, variant: Variant, segments: list[Path], passes: int) -> dict[str, Any]:
    """Run the harness over ``segments`` of the variant in ``folder``; its JSON result."""
    schema = json.loads((folder / "schema.json").read_text())
    ids = {t["table_name"]: t["id"] for t in schema["tables"] if t["keyspace_name"] == "bench"}
    classes = compiled()
    with tempfile.TemporaryDirectory(prefix="headrace-bench-reader-") as tmp:
        workdir = Path(tmp)
        with running_cassandra(
            workdir, variant.compat_mode, commitlog_compression=variant.compression, commitlog_segment_mib=32
        ) as node:
            session = node.session()
            for statement in SCHEMA:
                session.execute(with_recorded_id(statement, ids))
            options = node.jvm_options(workdir / "conf", None)
        # The node is stopped: its data folder holds the schema, nothing else writes to it.
        lib = cassandra_home(node.version) / "lib"
        command = [
            java_binary(),
            *options,
            "-cp",
            f"{classes}:{workdir / 'conf'}:{lib}/*",
            MAIN,
            str(passes),
            *map(str, segments),
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=900)
        if done.returncode != 0:
            raise RuntimeError(f"CommitLogReaderBench failed ({done.returncode}): {done.stderr[-2000:]}")
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return result
